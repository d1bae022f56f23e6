"""The array-level API: forward and backward of one recurrent layer, one direction.

Each entry point validates its arguments once (shapes, dtypes, lengths; the checks live in
``fastseq._validate``), makes them C-contiguous (copying only when needed), and hands off
to the active backend (``fastseq.get_backend()``). Layers, stacking and bidirectional
composition are built on these six functions; they never loop over time themselves.

Shapes (time-major): ``x (T, B, I)``, ``y (T, B, H)``, states ``(B, H)``, ``w_ih (G*H, I)``,
``w_hh (G*H, H)``, biases ``(G*H,)``, with G = 1 (RNN), 4 (LSTM, gates i, f, g, o),
3 (GRU, gates r, z, n). float32 or float64, one dtype for every array. The LSTM with a
projection (``w_hr (P, H)``, torch's ``proj_size``): ``w_hh (4H, P)``, ``h0``/``h_n``
``(B, P)``, ``y (T, B, P)``; ``c0``/``c_n`` stay ``(B, H)``.

A training forward's ``ctx`` refers to the forward's ``x``, ``w_ih``, ``w_hh``, ``w_hr``,
``lengths``, ``h0`` and ``c0`` (backward reads them again rather than keep copies): leave
them unchanged until the backward. The backward checks a fingerprint of each (an XOR of
all its words and a sample's CRC, about 2 % of an LSTM step at (T, B, I, H) =
(50, 16, 256, 256)) and raises RuntimeError naming the one that changed; a change that
only permutes words it may miss.
"""
from __future__ import annotations

import zlib

import numpy as np

from . import _validate as V
from . import backends
from .cells import Cell, cell_of, family_gates

__all__ = [
    "rnn_forward", "rnn_backward",
    "lstm_forward", "lstm_backward",
    "gru_forward", "gru_backward",
    "Context",
]


class Context:
    """What a training forward hands to its backward. Opaque; use it once.

    Attributes
    ----------
    cell : str
        "rnn", "lstm" or "gru".
    backend : str
        The backend that ran the forward (backward must run on the same one).
    dtype : numpy.dtype
    shape : tuple
        ``(T, B, I, H)``.
    options : dict
        The forward's options (nonlinearity, reset_after, reverse, has lengths, bias;
        ``proj_size`` P when the LSTM had a projection).

    Notes
    -----
    The backward reads the forward's ``x``, ``w_ih``, ``w_hh``, ``w_hr``, ``lengths``, ``h0``
    and ``c0`` again: modifying one of them in place in between (an optimizer step, a reused
    input buffer) would change the gradients, so the backward refuses with RuntimeError.
    """

    __slots__ = ("cell", "backend", "dtype", "shape", "options", "_reserve", "_inputs")

    def __init__(self, cell, backend, dtype, shape, options, reserve, inputs=()):
        self.cell, self.backend, self.dtype = cell, backend, dtype
        self.shape, self.options, self._reserve = shape, options, reserve
        self._inputs = inputs  # (name, array, fingerprint) of what backward reads again

    @property
    def consumed(self) -> bool:
        """True once a backward has used this context."""
        return self._reserve is None

    def __repr__(self) -> str:
        T, B, I, H = self.shape
        state = "consumed" if self.consumed else "ready"
        return (f"Context({self.cell}, backend={self.backend!r}, dtype={self.dtype}, "
                f"T={T}, B={B}, I={I}, H={H}, {self.options}, {state})")


# --------------------------------------------------------------------------- checks


def _prepare(cell: Cell, x, w_ih, w_hh, b_ih, b_hh, states: dict, lengths, w_hr=None):
    """Validate a forward call; return the contiguous arrays (x, w_ih, w_hh, b_ih, b_hh, the
    states in ``states``' order, then ``w_hr`` if the cell has it), lengths, the sizes and
    the dtype.

    ``cell`` is the descriptor the call selected: its gates, and whether it takes the
    projection ``w_hr``. The sizes are ``(T, B, I, H, P)``, P the width of h and y (H
    without a projection). Everything is checked from shapes and dtypes first; only then
    are arrays copied (when not C-contiguous), so that a huge broadcast view fails with a
    clear error, not a MemoryError. The caller's arrays are never modified.
    """
    G = cell.gates
    x = V.checked("x", x, None)
    if x.ndim != 3:
        raise ValueError(f"x must be 3-D (T, B, I), time-major; got shape {x.shape}")
    dtype = x.dtype if x.dtype.isnative else V.native(x.dtype)
    T, B, I = x.shape
    if T == 0 or B == 0 or I == 0:
        raise ValueError(f"x must have T, B, I >= 1; got shape (T, B, I) = {x.shape}")

    if "w_hr" in cell.parameters:
        # The projection's (P, H) gives both sizes; w_hh is then (4H, P), h is P wide.
        w_hr = V.checked("w_hr", w_hr, dtype)
        if w_hr.ndim != 2 or not 0 < w_hr.shape[0] < w_hr.shape[1]:
            raise ValueError(f"w_hr must have shape (P, H) with 0 < P < H (P the projection "
                             f"size, H the hidden size); got {w_hr.shape}")
        P, H = w_hr.shape
        w_hh = V.checked("w_hh", w_hh, dtype, (G * H, P), lambda: f"(4H, P) with H={H}, P={P}")
    else:
        w_hh = V.checked("w_hh", w_hh, dtype)
        if w_hh.ndim != 2 or w_hh.shape[1] == 0 or w_hh.shape[0] != G * w_hh.shape[1]:
            raise ValueError(
                f"w_hh must have shape (G*H, H) with G = {G} gates for {cell.family}; "
                f"got {w_hh.shape}"
            )
        H = P = w_hh.shape[1]
    if T * B * (I + 4 * H) >= V.SIZES_SURELY_FINE:  # else no limit can be near
        V.check_sizes(T, B, I, H)
    w_ih = V.checked("w_ih", w_ih, dtype, (G * H, I), lambda: f"(G*H, I) with G={G}, H={H}, I={I}")

    if (b_ih is None) != (b_hh is None):
        raise ValueError("b_ih and b_hh must both be given or both be None (bias=False)")
    if b_ih is not None:
        meaning = lambda: f"(G*H,) with G={G}, H={H}"  # noqa: E731
        b_ih = V.checked("b_ih", b_ih, dtype, (G * H,), meaning)
        b_hh = V.checked("b_hh", b_hh, dtype, (G * H,), meaning)

    # The backends' positional order (fastseq.backends): x, the weights, the states.
    arrays = [x, w_ih, w_hh, b_ih, b_hh]
    for name, state in states.items():
        arrays.append(None if state is None else _checked_state(name, state, dtype, B, H, P))
    if "w_hr" in cell.parameters:
        arrays.append(w_hr)
    lengths = None if lengths is None else V.check_lengths(lengths, T, B)
    # Copies only now, after every check (a loop and the flags test inline, no calls: this
    # runs on every call).
    for i, a in enumerate(arrays):
        if a is not None and not (a.flags.c_contiguous and a.dtype.isnative):
            arrays[i] = V.contiguous(a)
    return arrays, lengths, (T, B, I, H, P), dtype


def _checked_state(name: str, value, dtype, B: int, H: int, P: int, against: str = "x"):
    """A state (h0, c0) or its gradient (dh_n, dc_n), checked: c is (B, H), h is (B, P),
    P = H without a projection."""
    if name in ("c0", "dc_n"):
        return V.checked(name, value, dtype, (B, H), lambda: f"(B, H) with B={B}, H={H}", against)
    if P == H:
        return V.checked(name, value, dtype, (B, H), lambda: f"(B, H) with B={B}, H={H}", against)
    return V.checked(name, value, dtype, (B, P),
                     lambda: f"(B, P) with B={B}, P={P} (the projection size)", against)


# The forward's arguments that some backend's backward reads again (cpp: x, w_ih, w_hh,
# lengths; reference: also h0, c0 and w_hr; numba: the weights). Biases never are.
_REREAD = ("x", "w_ih", "w_hh", "w_hr", "lengths", "h0", "c0")


def _fingerprint(a: np.ndarray) -> tuple[int, int]:
    """A cheap fingerprint of a C-contiguous array: the XOR of all its 8-byte (or 4-, or
    1-byte) words, which changes with any single changed element, and the CRC of ~64
    evenly spaced elements, which catches most reorderings. ~20 GB/s: an XOR reduction is
    memory-bound, where zlib.crc32 of everything ran at ~3 GB/s (14 % of an LSTM step)."""
    flat = a.reshape(-1)
    n = a.nbytes
    words = flat.view(np.uint64 if n % 8 == 0 else np.uint32 if n % 4 == 0 else np.uint8)
    sample = flat[::max(1, flat.size // 64)]
    return int(np.bitwise_xor.reduce(words)), zlib.crc32(sample.tobytes())


def _check_unchanged(ctx: Context) -> None:
    """RuntimeError if an argument backward reads again was modified since the forward."""
    for name, array, fingerprint in ctx._inputs:
        if _fingerprint(array) != fingerprint:
            raise RuntimeError(
                f"{name} was modified in place between {ctx.cell}_forward and "
                f"{ctx.cell}_backward; backward reads it again, so its gradients would be "
                f"wrong. Leave {name} unchanged until the backward (an optimizer step comes "
                "after it), or pass a copy to the forward, or run the forward again"
            )


def _forward(cell: Cell, x, w_ih, w_hh, b_ih, b_hh, states: dict, lengths, reverse, training,
             w_hr=None, guard_inputs=True, **cell_options):
    """The one path of every forward: check, run on the active backend, wrap the reserve.

    ``cell`` is the descriptor the call selected (``cell_of``); ``states`` are in the
    contract's order (h0, then c0); ``cell_options`` (a family's one selecting keyword,
    nonlinearity or reset_after) go to the backend after ``training``, ``w_hr`` (as a
    keyword) only when the cell has a projection. Returns the
    backend's outputs, its reserve replaced by a Context (None in inference).
    ``guard_inputs=False``: the caller guards what the backward reads again itself
    (fastseq.torch: torch's version counters of the saved tensors), so no fingerprints
    (reading x and the weights twice a step: 1.2 % of a torch training step at H = 256).
    """
    if type(reverse) is not bool or type(training) is not bool:  # bools pass without a call
        reverse, training = V.check_flag("reverse", reverse), V.check_flag("training", training)
    arrays, checked_lengths, (T, B, I, H, P), dtype = _prepare(
        cell, x, w_ih, w_hh, b_ih, b_hh, states, lengths, w_hr)
    name = backends.get_backend()
    module = backends.backend_module(name)
    run = getattr(module, f"{cell.family}_forward")
    # Positional, as the contract orders them: pybind11 matches each keyword by name, about
    # 0.3 us apiece, a quarter of a small call's time in the binding.
    if "w_hr" in cell.parameters:
        if not getattr(module, "PROJECTION", False):
            raise NotImplementedError(
                f"the {name!r} backend has no LSTM projection (w_hr, proj_size) in this build; "
                "run it on a backend that has one, e.g. inside fastseq.use_backend('reference')")
        *outputs, reserve = run(*arrays[:-1], checked_lengths, reverse, training,
                                *cell_options.values(), w_hr=arrays[-1])
    else:
        *outputs, reserve = run(*arrays, checked_lengths, reverse, training,
                                *cell_options.values())
    if not training:
        return (*outputs, None)
    options = dict(cell_options, reverse=reverse, lengths=lengths is not None,
                   bias=b_ih is not None)
    if "w_hr" in cell.parameters:
        options["proj_size"] = P
    inputs = ()
    if guard_inputs:
        names = ("x", "w_ih", "w_hh", "b_ih", "b_hh", *states,
                 *(("w_hr",) if "w_hr" in cell.parameters else ()))
        a = dict(zip(names, arrays), lengths=checked_lengths)
        given = dict(x=x, w_ih=w_ih, w_hh=w_hh, w_hr=w_hr, lengths=lengths, **states)
        inputs = tuple((key, a[key], _fingerprint(a[key])) for key in _REREAD
                       if a.get(key) is not None and _may_be_shared(a[key], given[key]))
    ctx = Context(cell.family, name, dtype, (T, B, I, H), options, reserve, inputs)
    return (*outputs, ctx)


def _may_be_shared(array: np.ndarray, given) -> bool:
    """Whether the caller may still hold (and so modify) ``array``, the checked form of
    the argument ``given``; False for a copy made by the checks (lists, casts, strided)."""
    if array is given:
        return True
    if isinstance(given, np.ndarray):
        return np.may_share_memory(array, given)
    return not isinstance(given, (list, tuple))  # objects with __array__ may share memory


def _take_reserve(ctx, cell: str):
    """Check that ``ctx`` belongs to this backward and is unused; hand over its reserve."""
    if not isinstance(ctx, Context):
        raise TypeError(
            f"ctx must be the Context returned by {cell}_forward(..., training=True); "
            f"got {type(ctx).__name__}"
        )
    if ctx.cell != cell:
        raise ValueError(f"ctx comes from {ctx.cell}_forward; {cell}_backward needs one from {cell}_forward")
    if ctx.consumed:
        raise ValueError("ctx was already used by a backward; run the forward again")
    active = backends.get_backend()
    if ctx.backend != active:
        raise ValueError(
            f"ctx was made by the {ctx.backend!r} backend but the active backend is {active!r}; "
            "run forward and backward on the same backend"
        )
    return ctx._reserve


def _prepare_grads(ctx: Context, dy, dstates: dict):
    T, B, _, H = ctx.shape
    P = ctx.options.get("proj_size", H)  # the width of y and h
    meaning = (lambda: f"(T, B, H) with T={T}, B={B}, H={H}") if P == H else (
        lambda: f"(T, B, P) with T={T}, B={B}, P={P} (the projection size)")
    dy = V.float_array("dy", dy, ctx.dtype, (T, B, P), meaning, against="the forward")
    checked = {
        name: None if d is None else V.contiguous(
            _checked_state(name, d, ctx.dtype, B, H, P, against="the forward"))
        for name, d in dstates.items()
    }
    return dy, checked


def _consume(ctx: Context):
    reserve, ctx._reserve = ctx._reserve, None
    return reserve


def _check_accumulate(ctx: Context, accumulate):
    """``accumulate`` checked against the forward: None, or a dict of the parameter
    gradients' arrays (writeable, the forward's dtype, exact shapes, any strides)."""
    if accumulate is None:
        return None
    if not isinstance(accumulate, dict):
        raise TypeError(f"accumulate must be None or a dict of arrays; got {type(accumulate).__name__}")
    _, _, I, H = ctx.shape
    G = family_gates(ctx.cell)
    P = ctx.options.get("proj_size")
    shapes = {"dw_ih": (G * H, I), "dw_hh": (G * H, H if P is None else P)}
    if P is not None:
        shapes["dw_hr"] = (P, H)
    if ctx.options["bias"]:
        shapes.update(db_ih=(G * H,), db_hh=(G * H,))
    if set(accumulate) != set(shapes):
        raise ValueError(f"accumulate must have exactly the keys {sorted(shapes)} (the forward "
                         f"{'had' if ctx.options['bias'] else 'had no'} biases); got {sorted(accumulate)}")
    for key, shape in shapes.items():
        a = accumulate[key]
        name = f"accumulate[{key!r}]"
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray (it is added into); got {type(a).__name__}")
        if a.dtype != ctx.dtype:
            raise TypeError(f"{name} has dtype {a.dtype}; the forward's is {ctx.dtype}")
        if a.shape != shape:
            raise ValueError(f"{name} must have shape {shape}; got {a.shape}")
        if not a.flags.writeable:
            raise ValueError(f"{name} is read-only; it is added into in place")
    return accumulate


def _backward(cell: str, ctx: Context, dy, dstates: dict, accumulate, need_dx):
    """The one path of every backward: check, run on the context's backend, accumulate."""
    need_dx = V.check_flag("need_dx", need_dx)
    _take_reserve(ctx, cell)
    dy, d = _prepare_grads(ctx, dy, dstates)
    accumulate = _check_accumulate(ctx, accumulate)
    _check_unchanged(ctx)
    module = backends.backend_module(ctx.backend)
    run = getattr(module, f"{cell}_backward")
    # A backend that skips dx takes need_dx (SKIPS_DX); the others' dx is dropped.
    skip = {"need_dx": False} if not need_dx and getattr(module, "SKIPS_DX", False) else {}
    adds = accumulate is not None and getattr(module, "ACCUMULATES", False)
    grads = run(_consume(ctx), dy, *d.values(), **skip,
                **({"accumulate": accumulate} if adds else {}))
    if not need_dx:
        grads["dx"] = None
    if accumulate is not None and not adds:
        for key, target in accumulate.items():
            target += grads[key]
            grads[key] = target
    return grads


# --------------------------------------------------------------------------- RNN


def rnn_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, *, lengths=None,
                reverse=False, training=True, nonlinearity="tanh"):
    """Elman RNN over a whole sequence, one layer, one direction.

    ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`` with act = tanh or relu.

    Parameters
    ----------
    x : array, (T, B, I)
    w_ih : array, (H, I)
    w_hh : array, (H, H)
    b_ih, b_hh : array (H,) or None
        Both or neither.
    h0 : array (B, H) or None
        Initial state (zeros when None).
    lengths : int array (B,) or None
        Valid steps per sequence, each in 0..T, any order. Past its length a
        sequence's state stops changing and its outputs are zero. A length of 0 is
        fastseq's choice for an empty sequence (torch refuses it, engines differ): its
        ``y`` is zero and ``h_n = h0`` (``c_n = c0``); in backward ``dh0 = dh_n``
        (``dc0 = dc_n``), its ``dx`` is zero and it adds nothing to the weight gradients.
    reverse : bool
        Read each sequence backwards from its own last valid step.
    training : bool
        Keep what backward needs; with False, ``ctx`` is None. The ``ctx`` refers to
        ``x``, ``w_ih``, ``w_hh``, ``lengths``, ``h0`` (and the LSTM's ``c0``): leave them
        unchanged until the backward, which raises RuntimeError if one was modified.
    nonlinearity : {"tanh", "relu"}

    Returns
    -------
    y : array (T, B, H)
    h_n : array (B, H)
    ctx : Context or None
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu'; got {nonlinearity!r}")
    return _forward(cell_of("rnn", nonlinearity=nonlinearity), x, w_ih, w_hh, b_ih, b_hh,
                    {"h0": h0}, lengths, reverse, training, nonlinearity=nonlinearity)


def rnn_backward(ctx, dy, dh_n=None, *, accumulate=None, need_dx=True):
    """Gradients of an :func:`rnn_forward` (backprop through time).

    Parameters
    ----------
    ctx : Context
        From ``rnn_forward(..., training=True)``; used once.
    dy : array (T, B, H)
        Gradient of the loss with respect to ``y`` (ignored past each length).
    dh_n : array (B, H) or None
        Gradient with respect to ``h_n`` (zeros when None).
    accumulate : dict or None
        Arrays to add the parameter gradients into, as a layer's ``grad``: keys ``dw_ih``,
        ``dw_hh`` and, iff the forward had biases, ``db_ih``, ``db_hh``; each writeable,
        of the forward's dtype and the parameter's shape (any strides). The cpp backend
        adds straight into them (no temporary, no second pass over the weights).
    need_dx : bool
        False when the input's gradient is not wanted (a first layer over data, as
        torch's autograd skips it): ``dx`` is then None, and the cpp backend skips its
        product, about a sixth of a training step's work.

    Returns
    -------
    dict
        ``dx (T, B, I)`` (None with ``need_dx=False``), ``dh0 (B, H)``, ``dw_ih``,
        ``dw_hh``, ``db_ih``, ``db_hh`` (the biases' are None when the forward had none). New arrays; with
        ``accumulate``, its own arrays for the parameter gradients, added into.

    Raises
    ------
    RuntimeError
        One of the forward's ``x``, ``w_ih``, ``w_hh`` (``w_hr``), ``lengths``, ``h0``, ``c0`` was
        modified in place since the forward (the message names it); ``ctx`` is not used
        up, so the backward can run once the array is restored.
    """
    return _backward("rnn", ctx, dy, {"dh_n": dh_n}, accumulate, need_dx)


# --------------------------------------------------------------------------- LSTM


def lstm_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, c0=None, *, lengths=None,
                 reverse=False, training=True, w_hr=None):
    """LSTM over a whole sequence, one layer, one direction (gates i, f, g, o).

    ``c_t = f * c_{t-1} + i * g``, ``h_t = o * tanh(c_t)``, with
    ``[i, f, g, o] = [σ, σ, tanh, σ](W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``.
    With a projection ``w_hr (P, H)`` (torch's ``proj_size``, 0 < P < H):
    ``h_t = W_hr (o * tanh(c_t))``, P wide; ``c_t`` stays H wide.

    Parameters are those of :func:`rnn_forward` with ``w_ih (4H, I)``, ``w_hh (4H, H)``,
    biases ``(4H,)`` and a second initial state ``c0 (B, H)``; with ``w_hr``, ``w_hh``
    is ``(4H, P)`` and ``h0`` is ``(B, P)``. ``w_hr`` is read again by the backward, as
    ``w_ih`` and ``w_hh`` are (leave it unchanged until then).

    Returns
    -------
    y : array (T, B, H), or (T, B, P) with ``w_hr``
    h_n : array (B, H), or (B, P) with ``w_hr``
    c_n : array (B, H)
    ctx : Context or None

    Raises
    ------
    NotImplementedError
        ``w_hr`` is given and the active backend has no projection (its module does not
        set ``PROJECTION = True``).
    """
    return _forward(cell_of("lstm", projection=w_hr is not None), x, w_ih, w_hh, b_ih, b_hh,
                    {"h0": h0, "c0": c0}, lengths, reverse, training, w_hr=w_hr)


def lstm_backward(ctx, dy, dh_n=None, dc_n=None, *, accumulate=None, need_dx=True):
    """Gradients of an :func:`lstm_forward` (``dc_n``: gradient with respect to ``c_n``;
    ``accumulate``, ``need_dx``: see :func:`rnn_backward`).

    With a projection, ``dy`` and ``dh_n`` are P wide, and the result (and
    ``accumulate``) has ``dw_hr (P, H)`` too.

    Returns
    -------
    dict
        ``dx``, ``dh0``, ``dc0``, ``dw_ih``, ``dw_hh``, ``db_ih``, ``db_hh`` (see
        :func:`rnn_backward`), and ``dw_hr`` iff the forward had ``w_hr``.
    """
    return _backward("lstm", ctx, dy, {"dh_n": dh_n, "dc_n": dc_n}, accumulate, need_dx)


# --------------------------------------------------------------------------- GRU


def gru_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, *, lengths=None,
                reverse=False, training=True, reset_after=True):
    """GRU over a whole sequence, one layer, one direction (gates r, z, n).

    ``h_t = (1 - z) * n + z * h_{t-1}`` with ``r, z = σ(...)`` and

    - ``reset_after=True`` (PyTorch, cuDNN, Keras ``reset_after=True``):
      ``n = tanh(W_in x + b_in + r * (W_hn h_{t-1} + b_hn))``
    - ``reset_after=False`` (Cho et al. 2014): ``n = tanh(W_in x + b_in + W_hn (r * h_{t-1}) + b_hn)``

    Parameters are those of :func:`rnn_forward` with ``w_ih (3H, I)``, ``w_hh (3H, H)``,
    biases ``(3H,)``.

    Returns
    -------
    y : array (T, B, H)
    h_n : array (B, H)
    ctx : Context or None
    """
    reset_after = V.check_flag("reset_after", reset_after)
    return _forward(cell_of("gru", reset_after=reset_after), x, w_ih, w_hh, b_ih, b_hh,
                    {"h0": h0}, lengths, reverse, training, reset_after=reset_after)


def gru_backward(ctx, dy, dh_n=None, *, accumulate=None, need_dx=True):
    """Gradients of a :func:`gru_forward` (see :func:`rnn_backward`)."""
    return _backward("gru", ctx, dy, {"dh_n": dh_n}, accumulate, need_dx)
