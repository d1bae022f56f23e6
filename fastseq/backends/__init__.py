"""Backends: three implementations of one kernel contract, and the choice among them.

Each backend is a module of this package (``cpp``, ``numba``, ``reference``) with the six
functions below. ``fastseq.functional`` validates the user's arrays once and calls them
with arguments that already satisfy every rule in this docstring, so a backend checks
nothing the functional layer has checked (the cpp bindings check again anyway: native
code never trusts its caller).

The contract (single layer, single direction, time-major)
---------------------------------------------------------
Shape letters: ``T`` steps, ``B`` batch, ``I`` input size, ``H`` hidden size,
``G`` gates (1 RNN, 4 LSTM, 3 GRU), ``P`` the LSTM's projection size. Gate order follows
PyTorch: LSTM i, f, g, o; GRU r, z, n.

::

    rnn_forward(x, w_ih, w_hh, b_ih, b_hh, h0, lengths, reverse, training, nonlinearity)
        -> (y, h_n, reserve)
    lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, reverse, training, w_hr=None)
        -> (y, h_n, c_n, reserve)         # w_hr None: the plain LSTM
    gru_forward(x, w_ih, w_hh, b_ih, b_hh, h0, lengths, reverse, training, reset_after)
        -> (y, h_n, reserve)
    rnn_backward(reserve, dy, dh_n)          -> dict(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)
    lstm_backward(reserve, dy, dh_n, dc_n)   -> dict(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh
                                                 [, dw_hr])
    gru_backward(reserve, dy, dh_n)          -> dict(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)

What a backend may rely on (``functional`` guarantees it):

- ``x`` (T, B, I), ``w_ih`` (G*H, I), ``w_hh`` (G*H, H): C-contiguous, one dtype,
  float32 or float64, T, B, I, H >= 1.
- ``b_ih``, ``b_hh``: both None (no bias) or both C-contiguous (G*H,).
- ``h0``, ``c0``: None (zeros) or C-contiguous (B, H).
- ``lengths``: None (every sequence has T steps) or a C-contiguous int64 (B,) array with
  values in 0..T, in any order.
- ``nonlinearity`` is "tanh" or "relu"; ``reverse``, ``training``, ``reset_after`` are bools.
- The LSTM with a projection (torch's ``proj_size``; the cell ``lstmp`` of
  ``fastseq.cells``): ``w_hr`` C-contiguous (P, H) with 0 < P < H; then ``w_hh`` is
  (4H, P), ``h0`` (B, P), and ``y``, ``h_n`` come out P wide, ``c0``/``c_n`` stay (B, H).
  ``functional`` passes ``w_hr`` (as a keyword) only when there is one, and only to a
  backend whose module sets ``PROJECTION = True``; it raises NotImplementedError naming
  the backend otherwise, so a backend without a projection keeps its old signature.
- backward: ``dy`` C-contiguous (T, B, H); ``dh_n``, ``dc_n`` None (zeros) or (B, H)
  (with a projection ``dy`` (T, B, P) and ``dh_n`` (B, P));
  same dtype as the forward; ``reserve`` is what this backend's own forward returned
  with ``training=True`` and is passed to backward exactly once.

What a backend must do:

- Never modify its inputs. Return new arrays of the input dtype.
- ``reserve`` is None when ``training`` is False; otherwise it holds whatever backward
  needs (its layout is the backend's own business).
- Sequence b has ``L = lengths[b]`` valid steps. Forward direction: steps 0..L-1 in order.
  ``reverse``: steps L-1..0 (each sequence read backwards from its own last valid step,
  as the reverse half of PyTorch's bidirectional packed sequences). ``y[t, b] = 0`` for
  t >= L; ``h_n``/``c_n`` are the state after the last processed step; ``dy[t, b]`` for
  t >= L is ignored. L = 0 is allowed: y is zero for that sequence, ``h_n = h0``
  (``c_n = c0``), and backward gives ``dh0 = dh_n`` (``dc0 = dc_n``), a zero ``dx`` for
  it and no contribution to the parameter gradients.
- GRU, ``reset_after=True`` (PyTorch): ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``;
  ``reset_after=False`` (Cho et al.): ``n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)``.
- LSTM with ``w_hr``: the LSTM step, then ``m = o * tanh(c)`` (H wide) and
  ``h = m @ w_hr.T`` (P wide, no bias); y is h. Lengths, reverse and the frozen state
  are exactly the plain LSTM's. Backward returns ``dw_hr`` (P, H) too (the key is
  present iff the forward had ``w_hr``), and ``accumulate`` then holds ``dw_hr`` too.
- Gradients are returned as new arrays. A backend whose module sets ``ACCUMULATES = True``
  (cpp) also takes ``accumulate=`` on backward: a dict of the writeable parameter-gradient
  arrays (checked by ``functional``) to add ``dw_ih``, ``dw_hh`` (``db_ih``, ``db_hh``)
  into and return; for the others ``functional`` adds. ``dh0`` (and ``dc0``) are always
  returned, even when the initial state was None (the gradient at the zero state);
  ``db_ih``/``db_hh`` are None when there is no bias.
- A backend whose module sets ``SKIPS_DX = True`` (cpp) takes ``need_dx=False`` on
  backward and returns dx None without computing it; for the others ``functional`` drops
  the dx they computed.
- A backend whose module sets ``PROJECTION = True`` runs the LSTM with a projection
  (above); ``functional`` reads the attribute before each projected forward.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import threading
import warnings
from types import ModuleType
from typing import Iterator

__all__ = ["available_backends", "get_backend", "set_backend", "use_backend", "backend_module"]

#: Preference order: the first available one is the default.
BACKEND_NAMES = ("cpp", "numba", "reference")

_modules: dict[str, ModuleType] = {}
_failures: dict[str, str] = {}
_active: str | None = None  # the process-wide choice: set_backend, else the default
# use_backend's choice: per thread (and asyncio task), so that two threads each inside
# their own `with use_backend(...)` never restore each other's backend.
_scoped: contextvars.ContextVar[str | None] = contextvars.ContextVar("fastseq_backend", default=None)
_default_lock = threading.Lock()  # the default is chosen (and the fallback warned) once


def _load(name: str) -> ModuleType | None:
    """Import backend ``name`` once; remember why it failed if it did."""
    if name in _modules:
        return _modules[name]
    if name in _failures:
        return None
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except Exception as exc:  # an ImportError, or a broken build raising anything else
        _failures[name] = f"{type(exc).__name__}: {exc}"
        return None
    _modules[name] = module
    if name == "cpp":  # outside the try: a warning raised as an error must not hide cpp
        from .. import caches, isa

        isa.check_environment(module._core)
        caches.check_environment(module._core)
    return module


def _is_available(name: str) -> bool:
    if name == "numba":
        # Importing numba costs about a second: find it without importing it, so that
        # `import fastseq` stays cheap when cpp serves; the import happens at first use.
        import importlib.util

        return name in _modules or (
            name not in _failures and importlib.util.find_spec("numba") is not None
        )
    return _load(name) is not None


def available_backends() -> list[str]:
    """Names among "cpp", "numba", "reference" that work on this machine, best first."""
    return [name for name in BACKEND_NAMES if _is_available(name)]


def _check_name(name: str) -> str:
    # An explicit choice is imported now (numba included), so a broken backend fails here.
    if not isinstance(name, str) or name not in BACKEND_NAMES or _load(name) is None:
        available = available_backends()
        why = f" ({_failures[name]})" if isinstance(name, str) and name in _failures else ""
        raise ValueError(
            f"backend {name!r} is not available{why}; available backends: {available}"
        )
    return name


def _default() -> str:
    requested = os.environ.get("FASTSEQ_BACKEND", "").strip()
    if requested:
        return _check_name(requested)
    for name in BACKEND_NAMES:
        if _load(name) is not None:  # the default is used right away: import it for real
            if name != "cpp" and "cpp" in _failures:
                also = f"; numba: {_failures['numba']}" if "numba" in _failures else ""
                warnings.warn(
                    f"fastseq's compiled extension failed to load ({_failures['cpp']}{also}); "
                    f"using the {name!r} backend instead",
                    RuntimeWarning,
                    stacklevel=4,
                )
            return name
    raise RuntimeError("no fastseq backend is available")  # reference needs only NumPy


def get_backend() -> str:
    """The name of the backend that functional calls and layers use now (in this thread)."""
    global _active
    scoped = _scoped.get()
    if scoped is not None:
        return scoped
    if _active is not None:  # chosen already: no lock (every call comes here)
        return _active
    with _default_lock:
        if _active is None:
            _active = _default()
    return _active


def set_backend(name: str) -> None:
    """Use backend ``name`` ("cpp", "numba" or "reference") from now on, in every thread.

    Inside a ``use_backend`` block, that block's choice still wins until it ends.

    Raises
    ------
    ValueError
        If the name is unknown or that backend does not work on this machine.
    """
    global _active
    _active = _check_name(name)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[str]:
    """Context manager: use backend ``name`` inside the ``with`` block, then restore.

    The choice holds for the current thread (and asyncio task) only; other threads keep
    theirs. Raises ValueError as ``set_backend`` does.
    """
    token = _scoped.set(_check_name(name))
    try:
        yield name
    finally:
        _scoped.reset(token)


def backend_module(name: str | None = None) -> ModuleType:
    """The module implementing backend ``name`` (default: the active one)."""
    if name is None:
        name = get_backend()
    module = _modules.get(name)  # every call goes through here: a loaded backend is a lookup
    if module is not None:
        return module
    name = _check_name(name)
    module = _load(name)
    if module is None:
        raise ValueError(f"backend {name!r} failed to load: {_failures[name]}")
    return module
