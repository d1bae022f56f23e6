"""Numba backend: the fused RNN/LSTM/GRU time loops, JIT-compiled, with OpenBLAS GEMMs via cffi.

Same algorithm as the cpp backend (docs/kernels.md): one input GEMM over all rows, then per
step one recurrent GEMM and a fused pointwise epilogue inside the compiled loop; backward
runs the steps in reverse with one dh·W_hh GEMM per step, then the weight gradients as
large GEMMs. The public functions follow the contract in ``fastseq.backends``; arguments
arrive validated by ``fastseq.functional``.

How it is organised (as the cpp backend: one loop, cells as epilogues):

- ``primitives``: GEMM (OpenBLAS through cffi, or jitted loops), the vectorised exp and
  gate functions, the packed-row schedule;
- ``driver``: the one forward and one backward time loop, shared by every cell;
- ``rnn``, ``lstm``, ``gru``: each family's step functions (its epilogues) and facts;
- this module: the cell table, and the contract's functions around the drivers.

Rows are kept in "packed" step order, as PyTorch's packed sequences: the batch is sorted
by length (longest first, ``order``), step ``s`` works on the ``nact[s]`` sequences still
running, and its rows are ``offs[s] .. offs[s] + nact[s]`` of every (N, ·) buffer, where
N = Σ lengths. So a finished sequence costs nothing, every per-step GEMM reads a
contiguous block, and padding never enters a weight-gradient GEMM.

The reserve keeps pre-activations; the cpp backend keeps activations
--------------------------------------------------------------------
Backward here starts from each gate's pre-activation ``a`` and recomputes exp(-|a|) (one
vectorised pass per step): it then has sigmoid(a) *and* 1 - sigmoid(a), and the tanh slope
4e/(1+e)², each to full relative precision, also where the activation has rounded to 1
(sigmoid(20) is 1.0f; from a stored activation 1 - 1.0f = 0 loses a slope of 2e-9 that a
large input turns into a visible weight gradient). The cost is that recomputation: in
numba it is cheap (the exp is vectorised in the same loop) and nothing else here is
faster. The cpp backend keeps activations because its backward epilogue is one fused pass
over the row with no exp at all, which is where its speed comes from; its saturation
error is covered by the same tolerance tests. The two layouts are private to each backend
(``reserve`` is opaque), so they need not agree.

The reserve is a dict: packed copies of what backward needs (pre-activations, states,
the inputs of every product) and references to ``w_ih``, ``w_hh``, ``w_hr`` and, when
packing moves nothing (all lengths T, forward), ``x``: backward reads those as they are
when it runs, as the cpp backend does.
"""
from __future__ import annotations

import numpy as np

from ...threads import get_num_threads
from . import driver, gru, lstm, primitives, rnn
from .primitives import BLAS_ERROR

__all__ = [
    "rnn_forward", "rnn_backward",
    "lstm_forward", "lstm_backward",
    "gru_forward", "gru_backward",
]

#: lstm_forward takes ``w_hr`` (the LSTM projection, torch's ``proj_size``).
PROJECTION = True

#: The GEMM per dtype; None where OpenBLAS could not be loaded (jitted loops instead).
_GEMM = {np.dtype(np.float32): primitives.sgemm, np.dtype(np.float64): primitives.dgemm}

#: cell name (as ``fastseq.cells`` spells it) -> (step module, option). The projection
#: is the driver's product, so lstmp is the lstm step with a driver of its own.
CELLS = {
    "rnn_tanh": (rnn, False),
    "rnn_relu": (rnn, True),
    "lstm": (lstm, False),
    "lstmp": (lstm, True),
    "gru": (gru, True),
    "gru_reset_before": (gru, False),
}

#: cell name -> its jitted drivers (each compiles at its first call, once per dtype).
FORWARD = {name: driver.make_forward(name, *c) for name, c in CELLS.items()}
BACKWARD = {name: driver.make_backward(name, *c) for name, c in CELLS.items()}


def _blas(dtype):
    """The GEMM for ``dtype``, with OpenBLAS set to fastseq's thread count.

    This backend's parallelism is OpenBLAS's own. The library is shared with libfastseq,
    which pins it to one thread for its kernels (they run their own pool), so every call
    here sets it back to ``fastseq.get_num_threads()``.
    """
    if primitives.set_blas_threads is not None:
        primitives.set_blas_threads(get_num_threads())
    return _GEMM[np.dtype(dtype)]


def _forward(cell, x, w_ih, w_hh, w_hr, b_ih, b_hh, h0, c0, lengths, reverse, training):
    """Run ``cell``'s forward driver: ``(y, h_n, c_n, reserve)``."""
    T, B, _ = x.shape
    module, _ = CELLS[cell]
    GH, P = w_hh.shape
    H = GH // module.GATES
    dt = x.dtype
    if b_ih is None:
        b_ih_ = b_hh_ = np.zeros(GH, dt)
    else:
        b_ih_, b_hh_ = b_ih, b_hh
    h0_ = np.zeros((B, P), dt) if h0 is None else h0
    c0_ = np.zeros((B, H if module.HAS_C else 0), dt) if c0 is None else c0
    lengths_ = np.full(B, T, np.int64) if lengths is None else lengths
    y, h_n, c_n, *saved = FORWARD[cell](_blas(dt), x, w_ih, w_hh, w_hr, b_ih_, b_hh_, h0_, c0_,
                                        lengths_, bool(reverse), bool(training))
    if not training:
        return y, h_n, c_n, None
    reserve = dict(cell=cell, w_ih=w_ih, w_hh=w_hh, w_hr=w_hr, bias=b_ih is not None,
                   reverse=bool(reverse), saved=saved)
    return y, h_n, c_n, reserve


def _backward(reserve, dy, dh_n, dc_n):
    """Run the backward driver of ``reserve``'s cell: the gradients by name."""
    cell = reserve["cell"]
    module, _ = CELLS[cell]
    B, P = dy.shape[1], dy.shape[2]
    H = reserve["w_hh"].shape[0] // module.GATES
    dt = dy.dtype
    dh_n_ = np.zeros((B, P), dt) if dh_n is None else dh_n
    dc_n_ = np.zeros((B, H if module.HAS_C else 0), dt) if dc_n is None else dc_n
    saved = reserve["saved"]  # xp, then what follows the weights in the driver's arguments
    dx, dh0, dc0, dw_ih, dw_hh, dw_hr, db_ih, db_hh = BACKWARD[cell](
        _blas(dt), saved[0], reserve["w_ih"], reserve["w_hh"], reserve["w_hr"], *saved[1:],
        reserve["reverse"], dy, dh_n_, dc_n_)
    grads = dict(dx=dx, dh0=dh0)
    if module.HAS_C:
        grads["dc0"] = dc0
    grads.update(dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db_ih, db_hh=db_hh)
    if reserve["w_hr"] is not None:
        grads["dw_hr"] = dw_hr
    if not reserve["bias"]:
        grads["db_ih"] = grads["db_hh"] = None
    return grads


def rnn_forward(x, w_ih, w_hh, b_ih, b_hh, h0, lengths, reverse, training, nonlinearity):
    """Elman RNN over a sequence: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``.

    Shapes as in the backend contract; returns ``(y, h_n, reserve)``.
    """
    cell = "rnn_relu" if nonlinearity == "relu" else "rnn_tanh"
    y, h_n, _, reserve = _forward(cell, x, w_ih, w_hh, None, b_ih, b_hh, h0, None, lengths,
                                  reverse, training)
    return y, h_n, reserve


def rnn_backward(reserve, dy, dh_n):
    """Gradients of an RNN forward; returns dict(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)."""
    return _backward(reserve, dy, dh_n, None)


def lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, reverse, training, w_hr=None):
    """LSTM over a sequence (gates i, f, g, o): ``c' = f*c + i*g``, ``h' = o*tanh(c')``.

    With ``w_hr`` (P, H), the projected LSTM (torch's ``proj_size``): ``m = o*tanh(c')``,
    ``h' = m·W_hrᵀ``; then ``w_hh`` is (4H, P), ``h0``/``h_n`` and ``y`` are P wide.
    Shapes as in the backend contract; returns ``(y, h_n, c_n, reserve)``.
    """
    cell = "lstm" if w_hr is None else "lstmp"
    return _forward(cell, x, w_ih, w_hh, w_hr, b_ih, b_hh, h0, c0, lengths, reverse, training)


def lstm_backward(reserve, dy, dh_n, dc_n):
    """Gradients of an LSTM forward: dict(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh), and
    ``dw_hr`` when the forward had ``w_hr``."""
    return _backward(reserve, dy, dh_n, dc_n)


def gru_forward(x, w_ih, w_hh, b_ih, b_hh, h0, lengths, reverse, training, reset_after):
    """GRU over a sequence (gates r, z, n): ``h' = (1-z)*n + z*h``.

    ``reset_after=True``: ``n = tanh(W_in x + b_in + r*(W_hn h + b_hn))`` (PyTorch);
    ``False``: ``n = tanh(W_in x + b_in + W_hn (r*h) + b_hn)`` (Cho et al.).
    Shapes as in the backend contract; returns ``(y, h_n, reserve)``.
    """
    cell = "gru" if reset_after else "gru_reset_before"
    y, h_n, _, reserve = _forward(cell, x, w_ih, w_hh, None, b_ih, b_hh, h0, None, lengths,
                                  reverse, training)
    return y, h_n, reserve


def gru_backward(reserve, dy, dh_n):
    """Gradients of a GRU forward; returns dict(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)."""
    return _backward(reserve, dy, dh_n, None)
