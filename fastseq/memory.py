"""The compiled kernels' buffer pool: ``empty_cache``.

A forward or backward call needs scratch memory, and a training forward a reserve that its
backward consumes — for an LSTM at (T, B, H) = (50, 64, 512) in float32, 26 MB each. Memory
fresh from the operating system costs a page fault per 4 KiB the first time it is touched,
which was 15-20 % of such a call; so libfastseq keeps the buffers that calls give back (at
most 8 of them and 1 GiB) and hands them to the next call they fit. A training loop or
inference over a stream of batches then runs on the same few buffers. ``empty_cache()``
frees them, e.g. after a large model is done with.
"""
from __future__ import annotations

__all__ = ["empty_cache", "cached_bytes"]


def empty_cache() -> int:
    """Free the scratch and reserve buffers the compiled kernels keep for reuse.

    Returns the number of bytes freed (0 without the compiled extension). Buffers still in
    use (a training forward's reserve waiting for its backward) are not touched; they go
    back to the pool when the backward has used them or the context is dropped.
    """
    core = _core()
    return int(core.empty_buffer_pool()) if core is not None else 0


def cached_bytes() -> int:
    """Bytes of scratch and reserve buffers kept for reuse right now."""
    core = _core()
    return int(core.buffer_pool_bytes()) if core is not None else 0


def _core():
    try:
        from . import _core
    except ImportError:
        return None
    return _core
