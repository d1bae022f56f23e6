"""How many threads fastseq's kernels use: ``set_num_threads``, ``get_num_threads``.

The default is the number of CPUs this process may run on (``os.sched_getaffinity``),
or the environment variable ``FASTSEQ_NUM_THREADS``. The count goes to the compiled
extension's own thread pool (libfastseq), which also splits the large matrix products over
its threads. The OpenBLAS library those products run on is kept at one thread (libfastseq
sets it when it loads): an idle OpenBLAS worker spins for ~100 ms after a threaded call and
would fight fastseq's threads for the cores. The Numba backend's products share that
library, so they run on one thread too.
"""
from __future__ import annotations

import os

__all__ = ["set_num_threads", "get_num_threads"]

_count: int | None = None


def _available_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _default() -> int:
    text = os.environ.get("FASTSEQ_NUM_THREADS", "").strip()
    if not text:
        return _available_cpus()
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"FASTSEQ_NUM_THREADS must be a positive integer; got {text!r}") from None
    if value < 1:
        raise ValueError(f"FASTSEQ_NUM_THREADS must be a positive integer; got {text!r}")
    return value


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
        set_num_threads(_default())
    return _count  # type: ignore[return-value]


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in fastseq's kernels from now on (``n >= 1``).

    More threads than CPUs are allowed but never faster: they only oversubscribe.
    """
    global _count
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int; got {n!r}")
    _apply(n)
    _count = n
