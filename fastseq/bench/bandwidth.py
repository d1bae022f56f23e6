"""The bandwidth bound of a batch-1 case, measured in the same rounds as the case.

At B = 1 each step's recurrent product is a matrix-vector product: it reads the whole of
W_hh (G·H × H float32) to do 2·G·H² FLOPs, far too few to hide the reads, so a step can
take no less than the time to read W_hh from wherever it lives (L2 when it fits, else L3).
The yardstick of that rate is the same product done by OpenBLAS: a GEMV of a W_hh-sized
float32 matrix with a vector streams the matrix exactly once, which is the recurrent
product at B = 1 and nothing else. It is timed T times in a row (2·T in training: the
backward reads W_hh once more per step for dh), back to back like a kernel's steps, by one
``np.matmul`` of the matrix with a stack of T vectors: NumPy calls sgemv once per vector
from C, so no Python runs between the reads. A bare read loop (``buffer.sum()``) is not
used: NumPy's pairwise summation is not a clean read rate. The LSTM with a projection
streams W_hr (P × H) too, each step: the matrix then has W_hh's and W_hr's elements
together, (G·H + H) × P (Case.recurrent_shape).

The fraction reported ("%BW") is that bound over fastseq's time for the whole call, so
the call's other work (the input projection, the gate epilogue, dispatch) counts against
fastseq: 100 % would be a call that does nothing but read W_hh once per step.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .cases import CELLS, Case


def gemv_call(case: Case) -> tuple[Callable[[], object], float]:
    """The bound's call for ``case`` (w_hh_passes GEMVs of a W_hh-sized matrix) and the
    bytes it reads; run it under the case's pinned thread count."""
    rows, cols = case.recurrent_shape
    rng = np.random.default_rng(1)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    passes = case.w_hh_passes
    vectors = rng.standard_normal((passes, cols, 1)).astype(np.float32)
    out = np.empty((passes, rows, 1), np.float32)

    def read_w_hh():
        np.matmul(w, vectors, out=out)  # one sgemv per vector, W broadcast

    return read_w_hh, float(w.nbytes) * passes
