"""The cpp backend: the fused C++ kernels of ``fastseq._core`` (csrc/, via libfastseq.so).

The six functions of the contract in ``fastseq.backends``, bound directly (no Python
wrapper in between: per-call overhead matters at small sizes). Each runs the whole sequence
in C++ with the GIL released: the input projection as one GEMM, per step the recurrent
GEMM and the cell's fused epilogue, backward in reverse with one ``dh·W_hh`` GEMM per step
and the weight gradients as single GEMMs after the loop (OpenBLAS from scipy-openblas32).

The bindings check every argument again (native code never trusts its caller): TypeError
for a non-array or a wrong dtype (nothing is cast silently), ValueError naming the argument
with the shape it got and expected, lengths outside 0..T, or a reserve from another
configuration. Any strides or order are accepted; arrays are copied only when not
C-contiguous.

The projected LSTM (``lstm_forward(..., w_hr=...)``, torch's ``proj_size``) runs in the same
fused loops: a second product phase per step, h = m·W_hrᵀ, and in backward dm = dh·W_hr
before the cell's gradients; ``lstm_backward`` then returns ``dw_hr`` too.

The reserve is a ``fastseq._core.Reserve``: the reserve bytes (gate activations, the state
each step started from, and per cell what its backward needs), the configuration they were
made for, and references to the forward's ``x``, ``w_ih``, ``w_hh``, ``w_hr`` and ``lengths``.
Backward overwrites the reserve bytes with the gate gradients, so a reserve serves exactly
one backward call; a second one raises ValueError.
"""
from __future__ import annotations

from .. import _core

__all__ = [
    "rnn_forward", "rnn_backward",
    "lstm_forward", "lstm_backward",
    "gru_forward", "gru_backward",
]

NAME = "cpp"
#: The backward functions take ``accumulate=`` (see fastseq.functional.rnn_backward): the
#: weight gradients' GEMMs add into the caller's arrays.
ACCUMULATES = True
#: The backward functions take ``need_dx=False``: dx is None, its product skipped.
SKIPS_DX = True
#: lstm_forward takes ``w_hr=`` (the LSTM with a projection, torch's proj_size).
PROJECTION = True

rnn_forward = _core.rnn_forward
rnn_backward = _core.rnn_backward
lstm_forward = _core.lstm_forward
lstm_backward = _core.lstm_backward
gru_forward = _core.gru_forward
gru_backward = _core.gru_backward
