"""Data-parallel training over MPI (``pip install 'fastseq[mpi]'``: mpi4py and MPICH).

Each rank computes the gradients of its shard of every global batch; one in-place
``Allreduce`` of one flat buffer per dtype (the *gradient arena*, which the parameters'
``.grad`` arrays are views into) sums them, and dividing by the summed count of tokens
(or sequences) gives exactly the single-process gradient of the combined batch, however
unevenly the shards split it. Run a script as ``mpiexec -n N python -m mpi4py script.py``:
an uncaught exception on one rank then aborts the whole job with its message.

    comm = MPI.COMM_WORLD
    fastseq.distributed.broadcast_parameters(model, comm)      # same start everywhere
    for batch in batches:                                       # the same global batches
        x, t = fastseq.distributed.shard(batch, comm)           # this rank's part
        opt.zero_grad()
        logits, _ = model(x)
        loss, dlogits = cross_entropy(logits, t, reduction="sum")   # a sum, not a mean
        model.backward(dlogits)
        n = np.count_nonzero(t != -100)                         # what the sum runs over
        step = fastseq.distributed.allreduce_gradients(params, comm, count=n, loss=loss)
        clip_grad_norm_(params, 1.0)                            # after the allreduce
        opt.step()                                              # step.loss: the global mean

What this leaves out: overlapping the allreduce with backward, and model parallelism
(docs/scaling.md says when either would pay).
"""
from __future__ import annotations

import os
import weakref
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np

try:
    import mpi4py  # noqa: F401  (the package only: MPI itself starts on first use)
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "fastseq.distributed needs mpi4py and an MPI library; install them with "
        "pip install 'fastseq[mpi]' (mpi4py and the mpich wheel, which brings mpiexec)"
    ) from exc

from . import threads
from .parameter import Module, Parameter

__all__ = [
    "GradientArena", "Reduced", "allreduce_gradients", "broadcast_parameters", "setup",
    "shard", "shard_range", "info",
]

# The summed count travels in the gradient buffer itself (so a step is one Allreduce) as
# two exact integers, count // _SPLIT and count % _SPLIT: in float32 each slot's sum stays
# exact (below 2**24) up to 2**36 tokens per global batch and 4096 ranks.
_SPLIT = 4096
_TAIL = 3  # count_high, count_low, loss

_state: dict[str, Any] = {}


# --- sharding -------------------------------------------------------------------------
def shard_range(n: int, rank: int, size: int) -> tuple[int, int]:
    """``(start, stop)`` of rank ``rank``'s contiguous part of ``n`` items split ``size`` ways.

    The parts differ by at most one item; the first ``n % size`` ranks get the larger ones
    (``numpy.array_split``'s split). A rank may get none when ``n < size``.
    """
    n, rank, size = int(n), int(rank), int(size)
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"rank must be in 0..size-1 and size >= 1; got rank {rank}, size {size}")
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}")
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def shard(items: Any, comm: Any = None, *, rank: int | None = None, size: int | None = None,
          axis: int = 0) -> Any:
    """This rank's contiguous part of ``items``, or of each of a tuple of them.

    Parameters
    ----------
    items : array, sequence, or tuple of arrays
        A dataset, or one global batch (the same on every rank). A tuple (``(x, targets)``)
        is split element by element, each along ``axis``, all at the same positions.
    comm : mpi4py communicator, optional
        Gives ``rank`` and ``size``; default ``MPI.COMM_WORLD`` unless both are given.
    axis : int, default 0
        The axis of the items (use 1 for time-major ``(T, B, ...)`` batches).

    Returns
    -------
    The same kind of object: rank ``r`` of ``N`` gets items ``shard_range(n, r, N)``.
    """
    if rank is None or size is None:
        comm = _world(comm)
        rank, size = comm.Get_rank(), comm.Get_size()
    if isinstance(items, tuple):
        lengths = {len(a) if axis == 0 else np.shape(a)[axis] for a in items}
        if len(lengths) != 1:
            raise ValueError(f"the arrays of a tuple must have one length along axis {axis}; "
                             f"got {sorted(lengths)}")
        start, stop = shard_range(lengths.pop(), rank, size)
        return tuple(_take(a, start, stop, axis) for a in items)
    n = len(items) if axis == 0 else np.shape(items)[axis]
    start, stop = shard_range(n, rank, size)
    return _take(items, start, stop, axis)


def _take(items: Any, start: int, stop: int, axis: int) -> Any:
    if axis == 0:
        return items[start:stop]
    index = [slice(None)] * np.ndim(items)
    index[axis] = slice(start, stop)
    return np.asarray(items)[tuple(index)]


# --- the gradient arena ---------------------------------------------------------------
class GradientArena:
    """One contiguous buffer per dtype, which the parameters' ``.grad`` arrays are views of.

    Layers add into ``.grad`` in place and ``zero_grad()`` fills it, so the views stay;
    whatever replaces a ``.grad`` array (``zero_grad(set_to_none=True)``, a new array
    assigned) is put back into its view by :meth:`attach`, which ``allreduce_gradients``
    runs before each reduction (a ``None`` grad counts as zeros).

    Parameters
    ----------
    params : Module or iterable of Parameter
        Each parameter once (repeats are dropped), in order.

    Attributes
    ----------
    buffers : dict of numpy.dtype to numpy.ndarray
        ``(sum of sizes + tail,)`` per dtype; float64 first. The first one carries three
        extra elements at its end (the count and loss of a reduction).
    """

    def __init__(self, params: Module | Iterable[Parameter]) -> None:
        unique = _unique_params(params)
        if not unique:
            raise ValueError("GradientArena needs at least one parameter")
        self._refs = [weakref.ref(p) for p in unique]
        dtypes = sorted({p.data.dtype for p in unique}, key=lambda d: -d.itemsize)
        self.buffers: dict[np.dtype, np.ndarray] = {}
        self._views: list[np.ndarray] = []
        offsets: dict[np.dtype, int] = {d: 0 for d in dtypes}
        slots = []
        for p in unique:
            d = p.data.dtype
            slots.append((d, offsets[d], p.data.size))
            offsets[d] += p.data.size
        for i, d in enumerate(dtypes):
            self.buffers[d] = np.zeros(offsets[d] + (_TAIL if i == 0 else 0), dtype=d)
        self._tail_dtype = dtypes[0]
        for p, (d, start, size) in zip(unique, slots):
            self._views.append(self.buffers[d][start:start + size].reshape(p.data.shape))
        self.attach()

    @property
    def params(self) -> list[Parameter]:
        """The parameters, in order (the arena does not keep them alive)."""
        out = [r() for r in self._refs]
        if any(p is None for p in out):
            raise RuntimeError("a parameter of this GradientArena no longer exists")
        return out  # type: ignore[return-value]

    def covers(self, params: Sequence[Parameter]) -> bool:
        """Whether this arena is for exactly ``params`` (same objects, same order)."""
        mine = [r() for r in self._refs]
        return len(mine) == len(params) and all(a is b for a, b in zip(mine, params))

    def attach(self) -> int:
        """Make every ``.grad`` its view again, keeping its values; return how many moved."""
        moved = 0
        for p, view in zip(self.params, self._views):
            g = p.grad
            if g is view:
                continue
            if g is None:
                view.fill(0)
            else:
                view[...] = g
            p.grad = view
            moved += 1
        return moved

    def tail(self) -> np.ndarray:
        """The three extra elements of the first buffer: count high, count low, loss."""
        buf = self.buffers[self._tail_dtype]
        return buf[buf.size - _TAIL:]

    def gradients(self, dtype: Any) -> np.ndarray:
        """The gradients of ``dtype`` as one flat view (the tail left out)."""
        d = np.dtype(dtype)
        buf = self.buffers[d]
        return buf[: buf.size - _TAIL] if d == self._tail_dtype else buf


_arenas: "weakref.WeakKeyDictionary[Parameter, GradientArena]" = weakref.WeakKeyDictionary()


def _unique_params(params: Any) -> list[Parameter]:
    if isinstance(params, Module):
        params = params.parameters()
    elif isinstance(params, Parameter):
        params = [params]
    out, seen = [], set()
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(f"expected fastseq Parameters, got {type(p).__name__}")
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def arena_for(params: Any) -> GradientArena:
    """The arena of ``params`` (a GradientArena, Module or parameters): the one made for
    the same parameters before, else a new one."""
    if isinstance(params, GradientArena):
        return params
    unique = _unique_params(params)
    if not unique:
        raise ValueError("no parameters given")
    arena = _arenas.get(unique[0])
    if arena is None or not arena.covers(unique):
        arena = GradientArena(unique)
        _arenas[unique[0]] = arena
    return arena


# --- collectives ----------------------------------------------------------------------
class Reduced(NamedTuple):
    """What :func:`allreduce_gradients` summed over the ranks."""

    count: float
    """The total count the gradients were divided by."""
    loss: float | None
    """The summed losses divided by ``count`` (the combined batch's mean), if given."""


def allreduce_gradients(params: Any, comm: Any = None, count: float | None = None,
                        loss: float | None = None) -> Reduced:
    """Sum every rank's gradients in place (one ``Allreduce`` per dtype) and divide them by
    the summed ``count``.

    With each rank's loss a **sum** over its ``count`` tokens or sequences (e.g.
    ``cross_entropy(..., reduction="sum")`` and ``count`` the targets not equal to
    ``ignore_index``), the result is the gradient of the mean loss over the combined batch,
    as one process would compute it, for any split (uneven shards, padding, lengths, a rank
    with no data: count 0). Clip the gradients after this call, not before.

    Parameters
    ----------
    params : Module, iterable of Parameter, or GradientArena
        Every rank passes the same parameters in the same order. The first call makes their
        ``.grad`` views into a :class:`GradientArena` (kept for the next calls).
    comm : mpi4py communicator, default ``MPI.COMM_WORLD``
    count : number, optional
        What this rank's loss was summed over. Default: each rank's gradients are taken as
        a mean over equal shards, and the sum is divided by the number of ranks.
    loss : number, optional
        This rank's summed loss; ``Reduced.loss`` is then the global mean.

    Returns
    -------
    Reduced
        ``(count, loss)``: the total count and the global mean loss (None without ``loss``).
    """
    comm = _world(comm)
    arena = arena_for(params)
    arena.attach()
    tail = arena.tail()
    if count is None:
        local = 1  # each rank's gradient is already a mean: average over the ranks
    else:
        local = int(count)
        if local != count or local < 0:
            raise ValueError(f"count must be a non-negative integer; got {count!r}")
    tail[0], tail[1] = divmod(local, _SPLIT)
    tail[2] = 0.0 if loss is None else float(loss)
    from mpi4py import MPI

    for buf in arena.buffers.values():
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
    total = float(tail[0]) * _SPLIT + float(tail[1])
    if total > 0:
        for dtype in arena.buffers:
            grads = arena.gradients(dtype)
            grads /= grads.dtype.type(total)
    mean_loss = None if loss is None else (float(tail[2]) / total if total > 0 else float("nan"))
    return Reduced(total, mean_loss)


def broadcast_parameters(module_or_params: Any, comm: Any = None, root: int = 0) -> None:
    """Copy the parameters' values of rank ``root`` to every rank (one ``Bcast`` per dtype).

    Run it once before training (after the model and any loaded checkpoint exist), so every
    rank starts from the same weights. It also runs :func:`setup` if nothing did.
    """
    comm = _world(comm)
    if not _state:
        setup(comm)
    params = _unique_params(module_or_params)
    by_dtype: dict[np.dtype, list[Parameter]] = {}
    for p in params:
        by_dtype.setdefault(p.data.dtype, []).append(p)
    for dtype in sorted(by_dtype, key=lambda d: (-d.itemsize, d.str)):
        group = by_dtype[dtype]
        buf = np.concatenate([p.data.reshape(-1) for p in group]) if group else np.empty(0, dtype)
        comm.Bcast(buf, root=root)
        offset = 0
        for p in group:
            p.data[...] = buf[offset:offset + p.data.size].reshape(p.data.shape)
            offset += p.data.size


# --- threads per rank -----------------------------------------------------------------
def setup(comm: Any = None, threads_per_rank: int | None = None) -> dict:
    """Record this rank and choose its thread count; return :func:`info`.

    The default count is the CPUs this process may use divided by the ranks of this node
    whose CPU sets overlap it (two unbound ranks on two cores: one thread each; ranks that
    ``mpiexec`` bound to disjoint cores keep theirs). A count the user chose
    (``fastseq.set_num_threads``, ``FASTSEQ_NUM_THREADS``) is kept; ``threads_per_rank``
    overrides both.
    """
    from mpi4py import MPI

    comm = _world(comm)
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    mine = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cpus = len(mine) if mine is not None else (os.cpu_count() or 1)
    sets = node.allgather(mine)
    sharing = sum(1 for s in sets if mine is None or s is None or s & mine) or 1
    default = max(1, cpus // sharing)
    if threads_per_rank is not None:
        threads.set_num_threads(threads_per_rank)
    else:
        threads.set_default_num_threads(default)
    _state.update(rank=comm.Get_rank(), size=comm.Get_size(), local_rank=node.Get_rank(),
                  local_size=node.Get_size(), cpus=cpus, default_threads=default)
    node.Free()
    return info()


def info() -> dict:
    """Rank, size, ranks on this node and threads of this process ({} before setup)."""
    if not _state:
        return {}
    return {**_state, "threads": threads.get_num_threads()}


def _world(comm: Any) -> Any:
    if comm is not None:
        return comm
    from mpi4py import MPI

    return MPI.COMM_WORLD
