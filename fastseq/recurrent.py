"""Recurrent layers RNN, LSTM and GRU: stacking, directions, layouts and dropout.

Each (layer, direction) pair is one call to ``fastseq.functional``, which runs it on the
active backend; this file only arranges those calls the way torch.nn.RNN/LSTM/GRU do and
keeps what backward needs. No gate maths here.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Tuple, Union

import numpy as np

from . import _validate
from . import functional as F
from .cells import Cell, cell_of
from .init import SeedLike, make_generator, uniform_
from .parameter import Module, Parameter, as_real_array, check_dtype, one_trainer

__all__ = ["RNNBase", "RNN", "LSTM", "GRU"]

State = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]

#: A cell descriptor's parameter names (``fastseq.cells.Cell.parameters``, functional's
#: keywords) -> torch's names, ``{name}_l{k}{_reverse}``. The one place the two meet; the
#: order is torch's registration order (a layer's weights, its biases, then the
#: projection), so that ``state_dict()`` lists the keys as torch's does.
TORCH_NAMES = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh",
               "w_hr": "weight_hr"}


class RNNBase(Module):
    """Shared machinery of :class:`RNN`, :class:`LSTM` and :class:`GRU`.

    Subclasses set ``_family`` (their ``fastseq.functional`` family) and pass the
    family's selecting options; one layer in one direction is functional's call for the
    cell they select (``_cell_forward`` / ``_cell_backward``), and everything else
    (stacking, bidirectional concatenation, batch_first, unbatched input, dropout, state
    shapes, parameter names) lives here. The parameters are those of the cell descriptor
    the family's options select (``fastseq.cells``), named as torch names them.

    ``proj_size`` (LSTM only, as in torch; 0: none) makes h, the outputs and ``weight_hh``
    P = proj_size wide and adds ``weight_hr_l{k}{_reverse}`` ``(P, hidden_size)``.
    ``cell_options`` are the family's other selecting options (``nonlinearity``,
    ``reset_after``).
    """

    _family = "rnn"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype: Any = np.float32,
        seed: SeedLike = None,
        *,
        proj_size: int = 0,
        cell_options: dict | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if (isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer))
                or proj_size < 0):
            raise ValueError(f"proj_size must be an int >= 0 (0: no projection), got {proj_size!r}")
        if proj_size and self._family != "lstm":
            raise ValueError(f"proj_size is only supported by LSTM, not {type(self).__name__}; "
                             f"got proj_size={proj_size}")
        if proj_size >= hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size = {hidden_size}, "
                             f"got proj_size={proj_size}")
        for name, value in (("bias", bias), ("batch_first", batch_first),
                            ("bidirectional", bidirectional)):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
        if (isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.floating))
                or not 0.0 <= dropout <= 1.0):
            raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}",
                UserWarning,
                stacklevel=3,
            )
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.proj_size = int(proj_size)
        #: The family's keywords that select the cell in a functional call (nonlinearity,
        #: reset_after); the LSTM's projection is selected by passing w_hr instead.
        self._call_options = dict(cell_options or {})
        options = dict(self._call_options)
        if self._family == "lstm":
            options["projection"] = self.proj_size > 0
        #: The cell descriptor (fastseq.cells) this layer runs: gates, states, parameters.
        self.cell: Cell = cell_of(self._family, **options)
        self.num_layers = int(num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.dtype = check_dtype(dtype)
        #: The Generator that initialization drew from and dropout draws from; assign a
        #: new one (e.g. ``np.random.default_rng(0)``) to reseed dropout.
        self.generator = make_generator(seed)

        # torch's initialisation, U(-1/sqrt(H), 1/sqrt(H)) for every parameter (weight_hr
        # too), drawn in torch's registration order.
        bound = 1.0 / math.sqrt(self.hidden_size)
        for layer in range(self.num_layers):
            for suffix in self._suffixes():
                for name in self._parameter_names():
                    shape = self._parameter_shape(name, layer)
                    data = uniform_(np.empty(shape, self.dtype), -bound, bound, self.generator)
                    setattr(self, f"{TORCH_NAMES[name]}_l{layer}{suffix}", Parameter(data))
        # (descriptor name, torch attribute) per layer * D + direction: the names are fixed
        # at construction, and a small layer's call is mostly Python (per-call overhead).
        self._parameter_keys = tuple(
            tuple((name, f"{TORCH_NAMES[name]}_l{layer}{suffix}")
                  for name in self._parameter_names())
            for layer in range(self.num_layers) for suffix in self._suffixes())

    @property
    def num_directions(self) -> int:
        """2 if bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    @property
    def _has_cell_state(self) -> bool:
        return "c" in self.cell.states

    @property
    def _state_width(self) -> int:
        """The width of h and of each direction's outputs: proj_size, or hidden_size."""
        return self.proj_size or self.hidden_size

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def _parameter_names(self) -> list[str]:
        """The descriptor's parameters this layer has (no biases with bias=False), in
        torch's registration order."""
        unknown = set(self.cell.parameters) - set(TORCH_NAMES)
        if unknown:  # a new cell's parameter needs its torch name in TORCH_NAMES
            raise NotImplementedError(
                f"no torch name for the {self.cell.name} parameters {sorted(unknown)}")
        return [name for name in TORCH_NAMES if name in self.cell.parameters
                and (self.bias or not name.startswith("b_"))]

    def _parameter_shape(self, name: str, layer: int) -> tuple[int, ...]:
        """The shape of descriptor parameter ``name`` in layer ``layer``."""
        G, H, E = self.cell.gates, self.hidden_size, self._state_width
        layer_input = self.input_size if layer == 0 else E * self.num_directions
        return {"w_ih": (G * H, layer_input), "w_hh": (G * H, E), "w_hr": (E, H),
                "b_ih": (G * H,), "b_hh": (G * H,)}[name]

    def _layer_parameters(self, layer: int, direction: int) -> dict[str, Parameter]:
        """Descriptor name -> this (layer, direction)'s Parameter."""
        params = self._parameters
        return {name: params[key]
                for name, key in self._parameter_keys[layer * self.num_directions + direction]}

    def _weights(self, layer: int, direction: int) -> dict[str, np.ndarray | None]:
        """The functional call's parameter keywords for (layer, direction); absent biases
        are None."""
        params = self._parameters
        weights = {name: params[key].data
                   for name, key in self._parameter_keys[layer * self.num_directions + direction]}
        if not self.bias:
            weights.update(b_ih=None, b_hh=None)
        return weights

    def _grad_targets(self, layer: int, direction: int) -> dict[str, Parameter]:
        """The backward's gradient keys (``dw_ih``, ..., ``dw_hr``) -> the Parameter each
        is added into."""
        params = self._layer_parameters(layer, direction)
        return {"d" + name: param for name, param in params.items()}

    def _grads_to_add_into(self, targets: dict[str, Parameter]) -> dict[str, np.ndarray] | None:
        """The parameters' ``grad`` arrays for backward's ``accumulate`` (added into where
        they are: on the cpp backend no temporary and no second pass over the weights), or
        None when one is missing or not of the parameter's dtype and shape (then
        Parameter.accumulate, which creates or casts)."""
        into = {}
        for key, param in targets.items():
            g = param.grad
            if (type(g) is not np.ndarray or g.dtype != param.data.dtype
                    or g.shape != param.data.shape or not g.flags.writeable):
                return None
            into[key] = g
        return into

    # --- one layer, one direction: functional's call for the layer's cell -------------
    def _cell_forward(self, x, weights, h0, c0, lengths, reverse, training):
        """(y, h_n, c_n or None, ctx) of one layer in one direction."""
        states = {"h0": h0, "c0": c0} if self._has_cell_state else {"h0": h0}
        y, h, *rest = F._forward(self.cell, x, states=states, lengths=lengths, reverse=reverse,
                                 training=training, **weights, **self._call_options)
        return (y, h, *rest) if len(rest) == 2 else (y, h, None, rest[0])

    def _cell_backward(self, ctx, dy, dh_n, dc_n, accumulate, need_dx=True):
        """functional's backward of one layer in one direction: the gradients' dict."""
        dstates = {"dh_n": dh_n, "dc_n": dc_n} if self._has_cell_state else {"dh_n": dh_n}
        return F._backward(self.cell.family, ctx, dy, dstates, accumulate, need_dx)

    # --- argument checks and layouts ------------------------------------------------
    def _input_to_time_major(self, x: Any) -> tuple[np.ndarray, bool]:
        """x as a C-contiguous (T, B, I) array of the layer dtype, and whether it was batched.

        The layout only: the array checks (sizes >= 1 among them) are functional's."""
        if type(x) is np.ndarray and x.dtype is self.dtype and x.flags.c_contiguous:
            array = x  # the common case: what as_real_array would return, without its calls
        else:
            shape = np.shape(x)
            if len(shape) == 3:  # the kernels' size limits, from the shape, before a copy
                T, B = (shape[1], shape[0]) if self.batch_first else shape[:2]
                _validate.check_sizes(T, B, shape[2], self.hidden_size)
            array = as_real_array(x, "x", self.dtype)
        if array.ndim not in (2, 3):
            layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
            raise ValueError(
                f"x must be {layout} or unbatched (T, input_size), got shape {array.shape}"
            )
        if array.shape[-1] != self.input_size:
            raise ValueError(
                f"x has {array.shape[-1]} features in its last dimension, expected "
                f"input_size={self.input_size} (x shape {array.shape})"
            )
        batched = array.ndim == 3
        if not batched:
            array = array[:, None, :]
        elif self.batch_first:
            array = np.ascontiguousarray(array.transpose(1, 0, 2))
        return array, batched

    @staticmethod
    def _lengths_layout(lengths: Any, batched: bool) -> Any:
        """lengths as functional takes them: unbatched input takes one length, a scalar.
        functional checks them (dtype, shape (B,), values in 0..T)."""
        if lengths is not None and not batched and np.ndim(lengths) == 0:
            return np.reshape(lengths, 1)
        return lengths

    def _check_state(self, value: Any, name: str, B: int, batched: bool) -> np.ndarray | None:
        """A state argument as a (L*D, B, W) array of the layer dtype, or None: W is
        hidden_size for c, and for h without a projection; proj_size for h with one."""
        if value is None:
            return None
        array = as_real_array(value, name, self.dtype)
        LD = self.num_layers * self.num_directions
        if self.proj_size and name in ("h0", "dh_n"):  # h is proj_size wide, c is not
            width, what = self.proj_size, "proj_size"
        else:
            width, what = self.hidden_size, "hidden_size"
        expected = (LD, B, width) if batched else (LD, width)
        if array.shape != expected:
            raise ValueError(
                f"{name} must have shape {expected} (num_layers*num_directions, "
                f"{'batch, ' if batched else ''}{what}), got {array.shape}"
            )
        return array if batched else array[:, None, :]

    def _split_state(self, state: Any, B: int, batched: bool, backward: bool = False):
        """(h, c) from the user's state argument; c is None for RNN and GRU."""
        h_name, c_name = ("dh_n", "dc_n") if backward else ("h0", "c0")
        if not self._has_cell_state:
            name = "dstate" if backward else "h0"
            if isinstance(state, tuple):
                raise TypeError(f"{type(self).__name__} takes a single {name} array, not a tuple")
            return self._check_state(state, name, B, batched), None
        if state is None:
            return None, None
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            what = "dstate" if backward else "hx"
            raise TypeError(f"LSTM {what} must be a pair ({h_name}, {c_name}) of arrays or None")
        return (self._check_state(state[0], h_name, B, batched),
                self._check_state(state[1], c_name, B, batched))

    # --- forward and backward -----------------------------------------------------------
    @one_trainer
    def forward(self, x: Any, state: Any = None, lengths: Any = None) -> tuple[np.ndarray, State]:
        """Run the stacked layers over a batch of sequences.

        Parameters
        ----------
        x : array_like
            ``(T, B, input_size)``, or ``(B, T, input_size)`` with ``batch_first``, or
            unbatched ``(T, input_size)``. Cast to the layer's dtype.
        h0 (RNN, GRU) or hx (LSTM) : array_like, tuple or None
            Initial hidden state ``(num_layers * D, B, hidden_size)`` (``(num_layers * D,
            hidden_size)`` unbatched), D = 2 if bidirectional else 1; zeros if None. The
            LSTM takes a pair ``(h0, c0)`` of such arrays.
        lengths : array_like of int or None
            ``(B,)`` valid steps per sequence, each in 0..T, any order. Outputs past a
            sequence's length are zero and its final state is the one at its last valid
            step (torch's packed sequences). Length 0 (which torch refuses) is fastseq's
            choice for an empty sequence: zero outputs, final state = initial state, and
            in backward the state gradient passes straight through.

        Returns
        -------
        y : numpy.ndarray
            ``(T, B, D * hidden_size)`` (batch_first: ``(B, T, D * hidden_size)``;
            unbatched: ``(T, D * hidden_size)``): the last layer's outputs, directions
            concatenated (forward first).
        h_n : numpy.ndarray, or (h_n, c_n) for the LSTM
            Final states, shaped like the initial ones.
        """
        # Written for per-call overhead (a small layer's call is mostly this Python): the
        # common cases (no lengths, no state, eval) skip the helpers' calls.
        xt, batched = self._input_to_time_major(x)
        B = xt.shape[1]
        if lengths is not None:
            lengths = self._lengths_layout(lengths, batched)
        h0, c0 = (None, None) if state is None else self._split_state(state, B, batched)
        training = self.training
        L, D, H = self.num_layers, 2 if self.bidirectional else 1, self.hidden_size
        has_c = self._has_cell_state
        h_n = np.empty((L * D, B, self.proj_size or H), self.dtype)
        c_n = np.empty((L * D, B, H), self.dtype) if has_c else None
        ctxs: list[Any] = []
        masks: list[np.ndarray | None] = []
        layer_input = xt
        for layer in range(L):
            outputs = []
            for direction in range(D):
                k = layer * D + direction
                y, h_n[k], c, ctx = self._cell_forward(
                    layer_input, self._weights(layer, direction),
                    None if h0 is None else h0[k], None if c0 is None else c0[k],
                    lengths, direction == 1, training,
                )
                if has_c:
                    c_n[k] = c
                outputs.append(y)
                ctxs.append(ctx)
            layer_output = outputs[0] if D == 1 else np.concatenate(outputs, axis=2)
            mask = None
            if training and self.dropout > 0 and layer < L - 1:
                keep = 1.0 - self.dropout
                draws = self.generator.random(layer_output.shape)
                scale = 0.0 if keep == 0.0 else 1.0 / keep
                mask = ((draws < keep) * scale).astype(self.dtype)
                layer_output = layer_output * mask
            masks.append(mask)
            layer_input = layer_output
        y = layer_input if batched and not self.batch_first else self._output_layout(
            layer_input, batched)
        if training or self._cache_status != "eval":  # else an eval call already noted it
            self._keep_for_backward(
                {"ctxs": ctxs, "masks": masks, "B": B, "batched": batched, "y_shape": y.shape}
            )
        h_n_out = h_n if batched else h_n[:, 0, :]
        if c_n is None:
            return y, h_n_out
        return y, (h_n_out, c_n if batched else c_n[:, 0, :])

    def _output_layout(self, yt: np.ndarray, batched: bool) -> np.ndarray:
        if not batched:
            return yt[:, 0, :]
        if self.batch_first:
            return np.ascontiguousarray(yt.transpose(1, 0, 2))
        return yt

    @one_trainer
    def backward(self, dy: Any, dstate: Any = None, *,
                 need_dx: bool = True) -> tuple[np.ndarray | None, State]:
        """Gradients through the last training-mode forward; consumes what it kept.

        Adds the parameter gradients into each parameter's ``grad``.

        Parameters
        ----------
        dy : array_like
            Gradient of the loss with respect to ``y``, shaped like ``y``. Entries past a
            sequence's length are ignored.
        dstate : array_like, tuple or None
            Gradient with respect to the returned final state, shaped like it (the LSTM
            takes ``(dh_n, dc_n)``, either of which may be None); None means zeros.
        need_dx : bool
            False when ``x`` needs no gradient (the model's input data): the first layer
            then skips the ``dx`` product (on the cpp backend; a sixth of an LSTM layer's
            backward FLOPs) and ``dx`` is None. The other gradients are unchanged.

        Returns
        -------
        dx : numpy.ndarray or None
            Gradient with respect to ``x``, shaped like ``x``; None with ``need_dx=False``.
        dstate0 : numpy.ndarray or tuple
            Gradient with respect to the initial state, shaped like it (the LSTM returns
            ``(dh0, dc0)``); returned even when the initial state was None (zeros).

        Raises
        ------
        RuntimeError
            No training-mode forward to go back through (never ran, ran in eval mode, or
            its backward already ran); the last one ran in another thread; another thread
            is inside a training forward or backward of this layer (see
            :class:`~fastseq.Module`, Notes); or an input of the forward (``x``, a weight,
            ``lengths``, a state) was modified in place since the forward.
        ValueError
            ``dy`` or ``dstate`` is mis-shaped.
        """
        need_dx = _validate.check_flag("need_dx", need_dx)
        cache = self._peek_backward()
        batched, B = cache["batched"], cache["B"]
        dy_array = as_real_array(dy, "dy", self.dtype)
        if dy_array.shape != cache["y_shape"]:
            raise ValueError(
                f"dy must have the shape of y, {cache['y_shape']}, got {dy_array.shape}"
            )
        dh_n, dc_n = self._split_state(dstate, B, batched, backward=True)
        cache = self._consume_backward()

        if not batched:
            dyt = dy_array[:, None, :]
        elif self.batch_first:
            dyt = dy_array.transpose(1, 0, 2)
        else:
            dyt = dy_array
        L, D, H, E = self.num_layers, self.num_directions, self.hidden_size, self._state_width
        dh0 = np.empty((L * D, B, E), self.dtype)
        dc0 = np.empty((L * D, B, H), self.dtype) if self._has_cell_state else None
        ctxs, masks = cache["ctxs"], cache["masks"]
        d_output = dyt
        for layer in reversed(range(L)):
            if masks[layer] is not None:
                d_output = d_output * masks[layer]
            d_input = None
            for direction in range(D):
                k = layer * D + direction
                dy_k = np.ascontiguousarray(d_output[:, :, direction * E:(direction + 1) * E])
                targets = self._grad_targets(layer, direction)
                into = self._grads_to_add_into(targets)
                grads = self._cell_backward(
                    ctxs[k], dy_k,
                    None if dh_n is None else dh_n[k], None if dc_n is None else dc_n[k],
                    into, need_dx or layer > 0,  # the layers above need theirs: the next dy
                )
                ctxs[k] = None
                if into is None:
                    for key, param in targets.items():
                        param.accumulate(grads[key])
                dh0[k] = grads["dh0"]
                if dc0 is not None:
                    dc0[k] = grads["dc0"]
                if grads["dx"] is not None:
                    d_input = grads["dx"] if d_input is None else d_input + grads["dx"]
            d_output = d_input
        dx = None if d_output is None else self._input_layout(d_output, batched)
        dh0_out = dh0 if batched else dh0[:, 0, :]
        if dc0 is None:
            return dx, dh0_out
        return dx, (dh0_out, dc0 if batched else dc0[:, 0, :])

    def _input_layout(self, dxt: np.ndarray, batched: bool) -> np.ndarray:
        if not batched:
            return np.ascontiguousarray(dxt[:, 0, :])
        if self.batch_first:
            return np.ascontiguousarray(dxt.transpose(1, 0, 2))
        return dxt

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            text += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        if self.dropout:
            text += f", dropout={self.dropout}"
        if self.bidirectional:
            text += ", bidirectional=True"
        if self.dtype != np.float32:
            text += f", dtype={self.dtype.name}"
        return text


class RNN(RNNBase):
    r"""Elman RNN (tanh or ReLU), stacked and optionally bidirectional, as torch.nn.RNN.

    Equations (each layer, each step; ``x_t`` is the input of the layer)::

        h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),   act = tanh or relu

    Parameters
    ----------
    input_size : int
        I, features of each input step.
    hidden_size : int
        H, features of the hidden state.
    num_layers : int, default 1
        Stacked layers; layer l > 0 reads the outputs of layer l - 1.
    nonlinearity : {"tanh", "relu"}, default "tanh"
    bias : bool, default True
        With False there are no ``bias_*`` parameters.
    batch_first : bool, default False
        Inputs and outputs are ``(B, T, F)`` instead of ``(T, B, F)``; states are not
        affected.
    dropout : float, default 0.0
        Dropout probability on the outputs of every layer but the last, in training mode.
    bidirectional : bool, default False
        Add a reverse direction to every layer; outputs are concatenated.
    dtype : float32 or float64, default float32
    seed : None, int or numpy.random.Generator
        Source of the initial weights (U(-1/sqrt(H), 1/sqrt(H)), as torch) and of the
        dropout masks.

    Attributes
    ----------
    weight_ih_l{k}{_reverse} : Parameter
        ``(H, I)`` for k = 0, ``(H, D*H)`` after.
    weight_hh_l{k}{_reverse} : Parameter
        ``(H, H)``.
    bias_ih_l{k}{_reverse}, bias_hh_l{k}{_reverse} : Parameter
        ``(H,)``.

    Examples
    --------
    >>> rnn = RNN(10, 20, num_layers=2, seed=0)
    >>> y, h_n = rnn(np.zeros((5, 3, 10)))
    >>> y.shape, h_n.shape
    ((5, 3, 20), (2, 3, 20))
    """

    _family = "rnn"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype: Any = np.float32,
        seed: SeedLike = None,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed,
                         cell_options={"nonlinearity": nonlinearity})
        self.nonlinearity = nonlinearity

    def forward(  # noqa: D102 (documented in RNNBase.forward)
        self, x: Any, h0: Any = None, lengths: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return super().forward(x, h0, lengths)

    forward.__doc__ = RNNBase.forward.__doc__

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")


class LSTM(RNNBase):
    r"""Long short-term memory, stacked and optionally bidirectional, as torch.nn.LSTM.

    Equations (each layer, each step; gates in torch's order i, f, g, o)::

        i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
        f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
        g_t = tanh   (W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
        o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * tanh(c_t)
        h_t = W_hr (o_t * tanh(c_t))        with proj_size = P > 0 (h_t is P wide)

    Parameters
    ----------
    input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype, seed
        As in :class:`RNN`.
    proj_size : int, default 0
        P > 0 projects each step's output to P < hidden_size features (torch's
        ``proj_size``): h, the outputs and ``weight_hh`` are P wide; c stays
        hidden_size wide. 0: no projection.

    Attributes
    ----------
    weight_ih_l{k}{_reverse} : Parameter
        ``(4H, I)`` for k = 0, ``(4H, D*H)`` after (``(4H, D*P)`` with a projection):
        rows W_ii, W_if, W_ig, W_io.
    weight_hh_l{k}{_reverse} : Parameter
        ``(4H, H)``, or ``(4H, P)`` with a projection.
    bias_ih_l{k}{_reverse}, bias_hh_l{k}{_reverse} : Parameter
        ``(4H,)``.
    weight_hr_l{k}{_reverse} : Parameter
        ``(P, H)``, only with a projection.

    Notes
    -----
    States are pairs: ``y, (h_n, c_n) = lstm(x, (h0, c0))`` and
    ``dx, (dh0, dc0) = lstm.backward(dy, (dh_n, dc_n))``. With a projection ``h0``/``h_n``
    are ``(num_layers * D, B, P)``, ``c0``/``c_n`` ``(num_layers * D, B, H)`` and ``y``
    ``(T, B, D * P)``.

    Examples
    --------
    >>> lstm = LSTM(10, 20, proj_size=5, seed=0)
    >>> y, (h_n, c_n) = lstm(np.zeros((7, 3, 10)))
    >>> y.shape, h_n.shape, c_n.shape
    ((7, 3, 5), (1, 3, 5), (1, 3, 20))
    """

    _family = "lstm"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype: Any = np.float32,
        seed: SeedLike = None,
        proj_size: int = 0,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed, proj_size=proj_size)

    def forward(  # noqa: D102
        self, x: Any, hx: Any = None, lengths: Any = None
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        return super().forward(x, hx, lengths)

    forward.__doc__ = RNNBase.forward.__doc__


class GRU(RNNBase):
    r"""Gated recurrent unit, stacked and optionally bidirectional, as torch.nn.GRU.

    Equations (each layer, each step; gates in torch's order r, z, n)::

        r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
        z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
        n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))     reset_after=True
        n_t = tanh(W_in x_t + b_in + W_hn (r_t * h_{t-1}) + b_hn)     reset_after=False
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    Parameters
    ----------
    input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype, seed
        As in :class:`RNN`.
    reset_after : bool, default True
        True applies the reset gate after the recurrent product (torch, cuDNN, Keras'
        default); False before it (Cho et al. 2014, Keras ``reset_after=False``).

    Attributes
    ----------
    weight_ih_l{k}{_reverse} : Parameter
        ``(3H, I)`` for k = 0, ``(3H, D*H)`` after: rows W_ir, W_iz, W_in.
    weight_hh_l{k}{_reverse} : Parameter
        ``(3H, H)``.
    bias_ih_l{k}{_reverse}, bias_hh_l{k}{_reverse} : Parameter
        ``(3H,)``.
    """

    _family = "gru"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype: Any = np.float32,
        seed: SeedLike = None,
        reset_after: bool = True,
    ) -> None:
        if not isinstance(reset_after, (bool, np.bool_)):
            raise TypeError(f"reset_after must be a bool, got {type(reset_after).__name__}")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed,
                         cell_options={"reset_after": bool(reset_after)})
        self.reset_after = bool(reset_after)

    def forward(  # noqa: D102
        self, x: Any, h0: Any = None, lengths: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return super().forward(x, h0, lengths)

    forward.__doc__ = RNNBase.forward.__doc__

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text + ("" if self.reset_after else ", reset_after=False")
