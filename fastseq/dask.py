"""Batch inference over Dask (``pip install 'fastseq[dask]'``): :func:`predict`.

Each partition's sequences are bucketed by length (sorted, then cut into batches, so a
batch pads only to its own longest sequence), run through the model in eval mode, and put
back in the input order. The model travels once, as a task input with lineage (its
pickled bytes are a literal in the graph): each worker process unpickles it once per
``predict`` graph, keeps it in a small cache, and a lost worker's tasks recompute from the
graph on another worker. No ``scatter`` (whose only copy dies with its worker), no
per-task pickling. On a distributed worker fastseq's thread count becomes the worker's
share of the host's CPUs (CPUs / (worker processes on the host x threads per worker)),
so worker processes never oversubscribe the cores.

:func:`predict_sequences` is what each partition runs, usable without Dask: the same
buckets run locally give the same bits.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import threading
from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np

try:
    import dask
    import dask.array as da
    import dask.bag as db
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "fastseq.dask needs Dask; install it with pip install 'fastseq[dask]' "
        "(dask[distributed])"
    ) from exc

from . import threads
from .parameter import Module

__all__ = ["predict", "predict_sequences", "buckets"]

ApplyFn = Callable[[Any, np.ndarray, np.ndarray], np.ndarray]


# --- what one partition runs ----------------------------------------------------------
def buckets(lengths: Any, batch_size: int) -> list[np.ndarray]:
    """Index batches that bound padding: indices sorted by length (stable), cut into
    consecutive batches of at most ``batch_size``."""
    lengths = np.asarray(lengths)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    order = np.argsort(lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, order.size, batch_size)]


def default_apply(model: Any, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``model(x, lengths=lengths)`` with ``x`` batch-major ``(B, T, ...)``; returns the
    per-step outputs ``(B, T, ...)`` (the first element of a tuple, as a recurrent layer's
    ``y``). A model with ``batch_first=False`` gets ``(T, B, ...)`` and its output is
    transposed back."""
    time_major = getattr(model, "batch_first", True) is False
    if time_major:
        x = np.ascontiguousarray(np.swapaxes(x, 0, 1))
    out = model(x, lengths=lengths)
    if isinstance(out, tuple):
        out = out[0]
    return np.swapaxes(out, 0, 1) if time_major else out


def predict_sequences(model: Any, sequences: Sequence[np.ndarray], batch_size: int = 64,
                      fn: ApplyFn | None = None, per_step: bool = True) -> list[np.ndarray]:
    """Run ``model`` over variable-length sequences in length buckets; outputs in input order.

    Parameters
    ----------
    model : fastseq Module
        Called in whatever mode it is in (``predict`` puts its copy in eval mode).
    sequences : sequence of arrays
        Each ``(T_i, ...)`` with the same trailing shape, ``T_i >= 1``.
    batch_size : int
        Sequences per batch.
    fn : callable, optional
        ``fn(model, x, lengths)``, ``x`` zero-padded ``(B, T_max, ...)``; default
        :func:`default_apply`.
    per_step : bool, default True
        ``fn`` returns ``(B, T_max, ...)`` and sequence ``i`` gets its first ``T_i`` steps;
        False: ``fn`` returns ``(B, ...)``, one output per sequence.

    Returns
    -------
    list of numpy.ndarray
        ``(T_i, ...)`` per sequence (``(...)`` without ``per_step``), in the input order.
    """
    fn = default_apply if fn is None else fn
    seqs = [np.asarray(s) for s in sequences]
    lengths = np.array([s.shape[0] for s in seqs], dtype=np.int64)
    if lengths.size and lengths.min() < 1:
        raise ValueError("every sequence needs at least one step")
    out: list[Any] = [None] * len(seqs)
    for index in buckets(lengths, batch_size):
        lens = lengths[index]
        first = seqs[index[0]]
        x = np.zeros((index.size, int(lens.max())) + first.shape[1:], dtype=first.dtype)
        for row, i in enumerate(index):
            x[row, :lengths[i]] = seqs[i]
        y = np.asarray(fn(model, x, lens))
        for row, i in enumerate(index):
            out[i] = y[row, :lengths[i]].copy() if per_step else y[row].copy()
    return out


# --- the model on the workers ---------------------------------------------------------
class _ModelBlob:
    """The pickled model and its digest: the graph literal every partition task reads."""

    def __init__(self, model: Any) -> None:
        model = pickle.loads(pickle.dumps(model))  # a copy to put in eval mode
        if isinstance(model, Module):
            model.eval()
        self.payload = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        self.digest = hashlib.sha256(self.payload).hexdigest()


_cache: "OrderedDict[str, Any]" = OrderedDict()
_cache_lock = threading.Lock()
_CACHE_MODELS = 4  # models kept per worker process (one per live predict graph, typically)


def _model(blob: _ModelBlob) -> Any:
    """The unpickled model, once per process and digest (the worker's task threads share
    it: eval-mode forwards of one layer may run concurrently)."""
    with _cache_lock:
        model = _cache.get(blob.digest)
        if model is None:
            model = pickle.loads(blob.payload)
            _cache[blob.digest] = model
            while len(_cache) > _CACHE_MODELS:
                _cache.popitem(last=False)
        else:
            _cache.move_to_end(blob.digest)
        return model


def _thread_budget(workers_per_host: dict | None, requested: int | None) -> None:
    """On a distributed worker: fastseq's threads = requested, else the worker's share."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return  # not on a distributed worker: leave the process's setting alone
    if requested is not None:
        threads.set_num_threads(requested)
        return
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    host = getattr(worker, "ip", None) or worker.address.split("://")[-1].rsplit(":", 1)[0]
    processes = max(1, (workers_per_host or {}).get(host, 1))
    nthreads = max(1, int(getattr(worker.state, "nthreads", None) or worker.nthreads))
    threads.set_default_num_threads(max(1, cpus // (processes * nthreads)))


def _partition(seqs, blob, batch_size, fn, per_step, workers_per_host, nthreads):
    _thread_budget(workers_per_host, nthreads)
    return predict_sequences(_model(blob), list(seqs), batch_size, fn, per_step)


def _block(x, lengths, blob, batch_size, fn, out_shape, out_dtype, workers_per_host, nthreads):
    """A padded block (n, T, ...) with lengths (n,) -> outputs (n, T, ...), zeros past each."""
    _thread_budget(workers_per_host, nthreads)
    seqs = [x[i, :int(n)] for i, n in enumerate(lengths)]
    ys = predict_sequences(_model(blob), seqs, batch_size, fn, True)
    out = np.zeros((x.shape[0], x.shape[1]) + tuple(out_shape), dtype=out_dtype)
    for i, y in enumerate(ys):
        out[i, :y.shape[0]] = y
    return out


def _workers_per_host() -> dict | None:
    """Worker processes per host of the current distributed client, None without one."""
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):
        return None
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"]  # newer: 5 unless asked
    except TypeError:  # pragma: no cover - older distributed lists them all
        workers = client.scheduler_info()["workers"]
    counts: dict = {}
    for info in workers.values():
        counts[info["host"]] = counts.get(info["host"], 0) + 1
    return counts


# --- the entry point ------------------------------------------------------------------
def predict(model: Any, sequences: Any, lengths: Any = None, batch_size: int = 64,
            fn: ApplyFn | None = None, per_step: bool = True,
            threads_per_task: int | None = None) -> Any:
    """Run ``model`` over many variable-length sequences on a Dask cluster.

    Parameters
    ----------
    model : fastseq Module
        Pickled once into the graph; each worker process unpickles it once and runs it in
        eval mode.
    sequences : dask.bag.Bag, dask.array.Array or list of arrays
        A Bag (or list, made a Bag) of ``(T_i, ...)`` arrays; or a zero-padded Dask array
        ``(N, T, ...)`` chunked along N only, with ``lengths``.
    lengths : array_like of int, optional
        ``(N,)``, for an Array input: each sequence's steps (default: all ``T``).
    batch_size : int, default 64
        Sequences per batch; each partition (or block) is bucketed by length on its own.
    fn, per_step
        As in :func:`predict_sequences`.
    threads_per_task : int, optional
        fastseq threads on each worker; default the worker's share of its host's CPUs.

    Returns
    -------
    dask.bag.Bag or dask.array.Array
        Lazy: a Bag of ``(T_i, ...)`` outputs in the input order, or an Array
        ``(N, T, ...)`` (zeros past each length). ``.compute()`` on any Dask scheduler.
    """
    blob = dask.delayed(_ModelBlob(model), pure=True)  # one graph key: lineage, not scatter
    hosts = _workers_per_host()
    if isinstance(sequences, da.Array):
        return _predict_array(model, sequences, lengths, blob, batch_size, fn, hosts,
                              threads_per_task)
    if lengths is not None:
        raise ValueError("lengths goes with a padded Dask array; a Bag's items carry theirs")
    if not isinstance(sequences, db.Bag):
        sequences = db.from_sequence(list(sequences), partition_size=max(1, 4 * batch_size))
    return sequences.map_partitions(_partition, blob, batch_size, fn, per_step, hosts,
                                    threads_per_task)


def _predict_array(model, x, lengths, blob, batch_size, fn, hosts, nthreads):
    if x.ndim < 2:
        raise ValueError(f"a Dask array of sequences is (N, T, ...); got shape {x.shape}")
    x = x.rechunk({i: -1 for i in range(1, x.ndim)})
    N, T = x.shape[:2]
    if lengths is None:
        lengths = np.full(N, T, dtype=np.int64)
    if isinstance(lengths, da.Array):
        lengths = lengths.rechunk((x.chunks[0],))
    else:
        lengths = da.from_array(np.asarray(lengths, dtype=np.int64), chunks=(x.chunks[0],))
    # The output's trailing shape and dtype, from one step of one sequence here.
    probe = np.zeros((1, 1) + x.shape[2:], dtype=x.dtype)
    m = pickle.loads(pickle.dumps(model))
    if isinstance(m, Module):
        m.eval()
    y = np.asarray((fn or default_apply)(m, probe, np.ones(1, dtype=np.int64)))
    out_shape, out_dtype = y.shape[2:], y.dtype
    blocks = []
    for xb, lb, n in zip(x.to_delayed().ravel(), lengths.to_delayed().ravel(), x.chunks[0]):
        part = dask.delayed(_block, pure=True)(xb, lb, blob, batch_size, fn, out_shape,
                                               out_dtype, hosts, nthreads)
        blocks.append(da.from_delayed(part, (n, T) + tuple(out_shape), dtype=out_dtype))
    return da.concatenate(blocks, axis=0)
