"""How many threads fastseq's kernels use: ``set_num_threads``, ``get_num_threads``.

The default is the number of CPUs this process may run on (``os.sched_getaffinity``),
or the environment variable ``FASTSEQ_NUM_THREADS`` (an integer in 1..4096; any other value
is ignored with a ``RuntimeWarning``, as libfastseq ignores it). The count goes to the compiled
extension's own thread pool (libfastseq), which also splits the large matrix products over
its threads. The OpenBLAS library those products run on is kept at one thread (libfastseq
sets it when it loads): an idle OpenBLAS worker spins for ~100 ms after a threaded call and
would fight fastseq's threads for the cores. The Numba backend's products share that
library, so they run on one thread too.

The count lives in libfastseq once the extension is loaded, so a change made there — by
threadpoolctl (``threadpool_limits``), whose controller for libfastseq is
``fastseq._threadpoolctl`` — is what ``get_num_threads`` returns. A count chosen by the user
(``set_num_threads`` or ``FASTSEQ_NUM_THREADS``) is *explicit*; ``fastseq.distributed``
replaces only a default one (the CPUs divided among the ranks of a node).
"""
from __future__ import annotations

import operator
import os
import warnings

import numpy as np

__all__ = ["set_num_threads", "get_num_threads"]

#: The most threads fastseq accepts (libfastseq ignores FASTSEQ_NUM_THREADS above it too).
MAX_THREADS = 4096

_count: int | None = None
_explicit = False  # set_num_threads or FASTSEQ_NUM_THREADS chose the count


def _available_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _default() -> int:
    global _explicit
    text = os.environ.get("FASTSEQ_NUM_THREADS", "").strip()
    if not text:
        return _available_cpus()
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_THREADS:
        cpus = _available_cpus()
        warnings.warn(
            f"FASTSEQ_NUM_THREADS must be an integer in 1..{MAX_THREADS}; got {text!r}: "
            f"ignored, using the default ({cpus}, the CPUs available)",
            RuntimeWarning,
            stacklevel=4,
        )
        return cpus
    _explicit = True
    return value


def _loaded_core():
    """fastseq._core if something already imported it, else None (never imports it)."""
    import sys

    return sys.modules.get(__package__ + "._core")


def _apply(n: int) -> None:
    try:
        from . import _core
    except ImportError:
        return
    if hasattr(_core, "set_num_threads"):
        _core.set_num_threads(n)


def get_num_threads() -> int:
    """Threads fastseq's kernels use."""
    global _count
    if _count is None:
        _set(_default())
    core = _loaded_core()
    if core is not None and hasattr(core, "get_num_threads"):
        # libfastseq holds the count: threadpoolctl may have changed it there.
        return int(core.get_num_threads())
    return _count  # type: ignore[return-value]


def is_explicit() -> bool:
    """Whether the user chose the thread count (``set_num_threads``, FASTSEQ_NUM_THREADS)."""
    if _count is None:
        get_num_threads()
    return _explicit


def set_default_num_threads(n: int) -> bool:
    """Use ``n`` threads unless the user chose a count; return whether ``n`` was applied.

    For fastseq's own defaults that depend on the context (``fastseq.distributed`` divides
    the CPUs among the ranks of a node), which must not override the user's choice.
    """
    if is_explicit():
        return False
    _set(n)
    return True


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in fastseq's kernels from now on.

    Parameters
    ----------
    n : int
        Any integer (``operator.index``: Python and NumPy integers, not bools or floats)
        in 1..4096. More threads than CPUs are allowed but never faster: they only
        oversubscribe.

    Raises
    ------
    TypeError
        ``n`` is not an integer.
    ValueError
        ``n`` is outside 1..4096.
    """
    global _explicit
    if isinstance(n, (bool, np.bool_)):
        raise TypeError(f"n must be an integer; got {n!r}")
    try:
        value = operator.index(n)
    except TypeError:
        raise TypeError(f"n must be an integer; got {type(n).__name__} {n!r}") from None
    if not 1 <= value <= MAX_THREADS:
        raise ValueError(f"n must be in 1..{MAX_THREADS}; got {value}")
    _set(value)
    _explicit = True


def _set(value: int) -> None:
    global _count
    _apply(value)
    _count = value
