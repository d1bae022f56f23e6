"""fastseq's kernels inside PyTorch models: drop-in ``RNN``, ``LSTM`` and ``GRU`` modules.

``fastseq.torch.LSTM(...)`` is a ``torch.nn.Module`` with ``torch.nn.LSTM``'s constructor,
parameters (names, shapes, initialisation: they are torch's own, from ``torch.nn.RNNBase``),
call signature and results, whose forward and backward run fastseq's fused kernels
(``fastseq.functional``, the active backend) through ``torch.autograd.Function``s: one per
layer and direction, as :mod:`fastseq.recurrent` composes them. A ``state_dict`` of a
``torch.nn.LSTM`` loads as is, and back. Gradients reach the input, the initial state and
every parameter; any torch optimizer trains it.

Arrays cross between torch and NumPy without copies (``Tensor.numpy()`` /
``torch.from_numpy`` on contiguous CPU tensors). What is refused, with a clear error:
CUDA tensors (NotImplementedError), dtypes other than float32 and float64 (TypeError),
and double backward (``create_graph=True``). A second backward through one forward
(``retain_graph=True``) works but runs the forward again: the kernels' reserve serves one
backward.

Under ``torch.no_grad()`` (or when nothing requires grad) the forward runs fastseq's
inference path, which keeps no reserve. Dropout between layers in training mode is torch's
(``torch.nn.functional.dropout``, torch's RNG). Modules hold no per-call state: calls from
several threads, and reentrant calls, are safe as for torch's modules. The kernels run on
threads ``fastseq.set_num_threads`` (not ``torch.set_num_threads``) says; importing this
module makes them torch's own OpenMP threads (:func:`use_torch_threads`).

Needs PyTorch (``pip install "fastseq[torch]"``); ``import fastseq`` never imports it.
"""
from __future__ import annotations

try:
    import torch  # absolute import: the real torch, not this module
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        'fastseq.torch needs PyTorch, which is not installed: pip install "fastseq[torch]"'
    ) from exc

import os

import numpy as np
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from fastseq import functional as F
from fastseq.cells import cell_of

__all__ = ["RNN", "LSTM", "GRU", "use_torch_threads"]

_DTYPES = (torch.float32, torch.float64)


# --------------------------------------------------------------------------- threads


def _openmp_libraries() -> list[str]:
    """Paths of the OpenMP runtimes this process has loaded, torch's own first."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(None, 5)[-1].strip() for line in maps if "/lib" in line}
    except OSError:  # not Linux: nothing to find
        return []
    found = [p for p in paths
             if os.path.basename(p).split(".so")[0] in ("libgomp", "libiomp5", "libomp")
             or os.path.basename(p).startswith("libgomp-")]
    torch_dir = os.path.dirname(os.path.realpath(torch.__file__))
    return sorted(found, key=lambda p: not os.path.realpath(p).startswith(torch_dir))


def use_torch_threads(enable: bool = True) -> bool:
    """Run fastseq's kernel teams on torch's OpenMP threads (``enable=True``, what importing
    this module does) or on fastseq's own pool (``enable=False``). Returns whether torch's
    threads are in use.

    After each of its parallel operations, torch's OpenMP workers spin for milliseconds
    waiting for the next one. A pool thread of fastseq's then shares a CPU with a spinning
    worker for much of a training step (on 2 CPUs a 2-thread step was 1.7x slower than
    torch's); on torch's own workers the kernels find them awake and the CPUs free. The
    team's size is still ``fastseq.set_num_threads``'s, the results the same bits either
    way. Needs torch's ATen parallel backend to be OpenMP with a loaded runtime that has
    the GNU entry points (GNU libgomp, as torch's Linux wheels bundle; LLVM's and Intel's
    provide them too); otherwise it returns False and fastseq keeps its own pool.
    """
    from fastseq import _core  # the compiled extension; without it there are no teams

    if not enable:
        _core.stop_using_openmp()
        return False
    if "OpenMP" not in torch.__config__.parallel_info().split("ATen parallel backend:")[-1]:
        return False
    return any(_core.use_openmp(path) for path in _openmp_libraries())


try:
    use_torch_threads(True)
except ImportError:  # no compiled extension: the Numba or reference backend runs the kernels
    pass


# --------------------------------------------------------------------------- conversions


def _array(t: torch.Tensor | None) -> np.ndarray | None:
    """A CPU tensor as a NumPy array sharing its memory (strided views stay strided:
    fastseq.functional copies only what is not C-contiguous)."""
    return None if t is None else t.detach().numpy()


def _tensor(a: np.ndarray | None) -> torch.Tensor | None:
    return None if a is None else torch.from_numpy(a)


# --------------------------------------------------------------------------- autograd


class _Cell:
    """What one layer-direction call needs besides tensors: the cell family, its options
    (nonlinearity, reset_after), lengths (NumPy int64 or None) and the direction."""

    __slots__ = ("family", "options", "lengths", "reverse")

    def __init__(self, family: str, options: dict, lengths: np.ndarray | None, reverse: bool):
        self.family, self.options, self.lengths, self.reverse = family, options, lengths, reverse

    def forward(self, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, training: bool):
        """fastseq's forward on arrays: ``(y, h_n, c_n, ctx)`` (c_n None but for the LSTM;
        ``w_hr`` the LSTM's projection, or None). The arrays are views of tensors that
        torch saves for the backward: torch's version counters catch an in-place change in
        between, so functional's fingerprints of them are not taken (guard_inputs)."""
        cell = cell_of(self.family, projection=w_hr is not None, **self.options)
        states = {"h0": h0, "c0": c0} if self.family == "lstm" else {"h0": h0}
        y, h_n, *c_n, ctx = F._forward(cell, x, w_ih, w_hh, b_ih, b_hh, states, self.lengths,
                                       self.reverse, training, w_hr=w_hr, guard_inputs=False,
                                       **self.options)
        return y, h_n, (c_n[0] if c_n else None), ctx

    def backward(self, ctx, dy, dh_n, dc_n, need_dx: bool):
        dstates = {"dh_n": dh_n, "dc_n": dc_n} if self.family == "lstm" else {"dh_n": dh_n}
        return F._backward(self.family, ctx, dy, dstates, None, need_dx)


class _RecurrentFunction(torch.autograd.Function):
    """One layer in one direction through fastseq's training forward and its backward.

    Inputs after ``cell``: x (T, B, I), h0, c0 (B, H) or None, w_ih, w_hh, b_ih, b_hh
    (None without bias), w_hr (the LSTM's projection (P, H), or None). Outputs: y (T, B, H)
    (P wide with the projection, as h), h_n and, for the LSTM, c_n.
    """

    @staticmethod
    def forward(fctx, cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr=None):
        y, h_n, c_n, ctx = cell.forward(*map(_array, (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)),
                                        training=True)
        fctx.cell, fctx.fastseq_ctx = cell, ctx
        fctx.dy_shape = y.shape
        # Saved for torch's in-place check (a backward after an in-place change of one
        # raises torch's usual error) and for a second backward (see backward).
        fctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
        fctx.set_materialize_grads(False)  # None for unused outputs: fastseq reads None as 0
        if c_n is None:
            return torch.from_numpy(y), torch.from_numpy(h_n)
        return torch.from_numpy(y), torch.from_numpy(h_n), torch.from_numpy(c_n)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(fctx, dy, dh_n, dc_n=None):
        saved = fctx.saved_tensors  # torch's in-place modification check
        ctx, fctx.fastseq_ctx = fctx.fastseq_ctx, None
        if ctx is None:
            # A second backward through this forward (retain_graph=True; gradcheck does
            # it): the kernels' reserve served the first one, so recompute the forward.
            ctx = fctx.cell.forward(*map(_array, saved), training=True)[-1]
        dy_array = np.zeros(fctx.dy_shape, ctx.dtype) if dy is None else _array(dy)
        need = fctx.needs_input_grad
        # dx only when x needs it: a first layer over data skips the product (torch's
        # autograd skips it too).
        grads = fctx.cell.backward(ctx, dy_array, _array(dh_n), _array(dc_n), need_dx=need[1])
        keys = ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh", "dw_hr")
        return (None, *(_tensor(grads.get(key)) if need[i + 1] else None
                         for i, key in enumerate(keys)))


# --------------------------------------------------------------------------- modules


class _FastseqRNNBase(torch.nn.RNNBase):
    """torch.nn.RNNBase (parameters, initialisation, state_dict, repr) with a forward that
    runs fastseq's kernels. Subclasses set ``_family`` and ``_cell_options``."""

    _family = "rnn"

    def _cell_options(self) -> dict:
        return {}

    # --- checks ---------------------------------------------------------------------
    def _check_tensor(self, name: str, t: torch.Tensor, dtype: torch.dtype | None) -> None:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(t).__name__}")
        if t.device.type != "cpu":
            raise NotImplementedError(
                f"fastseq.torch runs on the CPU only; {name} is on {t.device}. Use "
                f"torch.nn.{type(self).__name__} on the GPU, or move the module and the "
                "tensors to the CPU"
            )
        if t.dtype not in _DTYPES:
            raise TypeError(f"fastseq.torch computes in float32 or float64; {name} has dtype {t.dtype}")
        if dtype is not None and t.dtype != dtype:
            raise TypeError(
                f"{name} has dtype {t.dtype} but the module's parameters have dtype {dtype}; "
                f"cast one of them (e.g. {name}.to({dtype}))"
            )

    def _param_dtype(self) -> torch.dtype:
        """The parameters' one dtype (float32/float64), all on the CPU; else the error."""
        weights = self._flat_weights  # torch.nn.RNNBase keeps it in step with the parameters
        dtype = weights[0].dtype
        if dtype not in _DTYPES or any(w.dtype != dtype or w.device.type != "cpu" for w in weights):
            first = self._flat_weights_names[0]
            self._check_tensor(first, weights[0], None)
            for name, w in zip(self._flat_weights_names, weights):
                self._check_tensor(name, w, dtype)
        return dtype

    def _check_state(self, name: str, h: torch.Tensor, B: int, batched: bool, dtype) -> torch.Tensor:
        self._check_tensor(name, h, dtype)
        LD = self.num_layers * (2 if self.bidirectional else 1)
        # With a projection h is proj_size wide; c stays hidden_size wide (as torch).
        projected = getattr(self, "proj_size", 0) > 0 and name != "c_0"
        width, what = (self.proj_size, "proj_size") if projected else (self.hidden_size, "hidden_size")
        expected = (LD, B, width) if batched else (LD, width)
        if tuple(h.shape) != expected:
            raise ValueError(
                f"{name} must have shape {expected} (num_layers * num_directions, "
                f"{'batch, ' if batched else ''}{what}); got {tuple(h.shape)}"
            )
        return h if batched else h.unsqueeze(1)

    def _states(self, hx, B: int, batched: bool, dtype):
        """(h0, c0) as (L*D, B, H) tensors or None; c0 only for the LSTM."""
        if hx is None:
            return None, None
        if self._family != "lstm":
            if isinstance(hx, (tuple, list)):
                raise TypeError(f"{type(self).__name__} takes hx as one tensor, not a tuple")
            return self._check_state("hx", hx, B, batched, dtype), None
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError("LSTM takes hx as a pair (h_0, c_0) of tensors, or None")
        return (self._check_state("h_0", hx[0], B, batched, dtype),
                self._check_state("c_0", hx[1], B, batched, dtype))

    # --- forward --------------------------------------------------------------------
    def forward(self, input, hx=None):  # noqa: A002 (torch's argument name)
        """Run the stacked layers, as torch.nn.RNN/LSTM/GRU.forward.

        ``input`` is ``(T, B, input_size)`` (``(B, T, input_size)`` with batch_first),
        unbatched ``(T, input_size)``, or a ``PackedSequence``; ``hx`` the initial state,
        ``(num_layers * D, B, hidden_size)`` (``(num_layers * D, hidden_size)`` unbatched),
        a pair ``(h_0, c_0)`` for the LSTM, or None (zeros). Returns ``(output, h_n)``,
        ``(output, (h_n, c_n))`` for the LSTM, ``output`` a PackedSequence when ``input``
        is one.
        """
        dtype = self._param_dtype()
        packed = isinstance(input, PackedSequence)
        lengths = None
        if packed:
            self._check_tensor("input", input.data, dtype)
            x, lengths_t = pad_packed_sequence(input)  # (T, B, I) in the caller's order
            lengths = lengths_t.numpy().astype(np.int64)
            batched = True
        else:
            self._check_tensor("input", input, dtype)
            if input.dim() not in (2, 3):
                layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
                raise ValueError(f"input must be {layout} or unbatched (T, input_size); "
                                 f"got shape {tuple(input.shape)}")
            batched = input.dim() == 3
            x = input if not batched else (input.transpose(0, 1) if self.batch_first else input)
            if not batched:
                x = x.unsqueeze(1)
        if x.shape[-1] != self.input_size:
            raise ValueError(f"input has {x.shape[-1]} features in its last dimension; "
                             f"input_size is {self.input_size}")
        B = x.shape[1]
        h0, c0 = self._states(hx, B, batched, dtype)
        y, h_n, c_n = self._run_layers(x, h0, c0, lengths)

        if packed:
            output = _pack_like(y, input, lengths_t)
        elif not batched:
            output = y.squeeze(1)
        else:
            output = y.transpose(0, 1) if self.batch_first else y
        if not batched:
            h_n = h_n.squeeze(1)
            c_n = None if c_n is None else c_n.squeeze(1)
        return output, (h_n if c_n is None else (h_n, c_n))

    def _run_layers(self, x, h0, c0, lengths):
        """Every layer and direction over time-major ``x``: ``(y, h_n, c_n)``."""
        D = 2 if self.bidirectional else 1
        # Per layer and direction, in torch's order: w_ih, w_hh(, b_ih, b_hh)(, w_hr).
        flat = self._flat_weights
        n = len(flat) // (self.num_layers * D)
        projected = getattr(self, "proj_size", 0) > 0
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or any(s is not None and s.requires_grad for s in (h0, c0))
            or any(w.requires_grad for w in flat))
        options = self._cell_options()
        h_list, c_list = [], []
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(D):
                k = layer * D + direction
                weights = list(flat[k * n:(k + 1) * n])
                w_hr = weights.pop() if projected else None
                if not self.bias:
                    weights = [*weights, None, None]
                weights.append(w_hr)
                cell = _Cell(self._family, options, lengths, direction == 1)
                h0_k = None if h0 is None else h0[k]
                c0_k = None if c0 is None else c0[k]
                if needs_grad:
                    y, h, *c = _RecurrentFunction.apply(cell, layer_input, h0_k, c0_k, *weights)
                else:  # inference: no graph, and fastseq keeps no reserve
                    arrays = map(_array, (layer_input, h0_k, c0_k, *weights))
                    y, h, c, _ = cell.forward(*arrays, training=False)
                    y, h, c = torch.from_numpy(y), torch.from_numpy(h), [_tensor(c)]
                outputs.append(y)
                h_list.append(h)
                c_list.append(c[0] if c else None)
            layer_input = outputs[0] if D == 1 else torch.cat(outputs, dim=2)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = torch.nn.functional.dropout(layer_input, self.dropout, True)
        h_n = h_list[0].unsqueeze(0) if len(h_list) == 1 else torch.stack(h_list)
        c_n = None
        if self._family == "lstm":
            c_n = c_list[0].unsqueeze(0) if len(c_list) == 1 else torch.stack(c_list)
        return layer_input, h_n, c_n


def _pack_like(y: torch.Tensor, packed_input: PackedSequence, lengths: torch.Tensor) -> PackedSequence:
    """Time-major padded ``y`` (caller's batch order) as a PackedSequence with the input's
    batch_sizes and sorted/unsorted indices, the layout torch.nn.LSTM returns."""
    sorted_indices = packed_input.sorted_indices
    if sorted_indices is not None:
        y = y.index_select(1, sorted_indices)
        lengths = lengths.index_select(0, sorted_indices.cpu())
    data = pack_padded_sequence(y, lengths, enforce_sorted=True).data
    return PackedSequence(data, packed_input.batch_sizes, sorted_indices,
                          packed_input.unsorted_indices)


class RNN(_FastseqRNNBase):
    """Elman RNN (tanh or relu) as ``torch.nn.RNN``, running fastseq's kernels.

    ``RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None)``;
    parameters, initialisation and calls are torch.nn.RNN's. CPU, float32/float64 only.
    """

    _family = "rnn"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None) -> None:
        modes = {"tanh": "RNN_TANH", "relu": "RNN_RELU"}
        if nonlinearity not in modes:
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu'; got {nonlinearity!r}")
        super().__init__(modes[nonlinearity], input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    def _cell_options(self) -> dict:
        return {"nonlinearity": self.nonlinearity}


class LSTM(_FastseqRNNBase):
    """LSTM as ``torch.nn.LSTM`` (gates i, f, g, o), running fastseq's kernels.

    ``LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None)``;
    ``proj_size = P > 0`` is torch's LSTM with projections (h and the output P wide,
    ``weight_hr_l{k}`` (P, hidden_size)), run by fastseq's projected kernels.
    CPU, float32/float64 only.
    """

    _family = "lstm"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None) -> None:
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device=device, dtype=dtype)


class GRU(_FastseqRNNBase):
    """GRU as ``torch.nn.GRU`` (gates r, z, n; the reset gate applied after the recurrent
    product, as torch and cuDNN), running fastseq's kernels. CPU, float32/float64 only."""

    _family = "gru"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None) -> None:
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, device=device, dtype=dtype)

    def _cell_options(self) -> dict:
        return {"reset_after": True}
