"""Timers: one function per implementation, each returning the median seconds of one
call of a case (inference: a forward in eval mode; training: forward + backward).
Thread counts are pinned for fastseq, NumPy's BLAS and torch alike."""
from __future__ import annotations

import contextlib
import time
from typing import Callable

import numpy as np

import fastseq

from .cases import Case


def median_seconds(fn: Callable[[], object], budget: float, min_repeats: int = 3,
                   max_repeats: int = 50) -> float:
    """Median wall time of ``fn`` after one warm-up call, repeating within ``budget`` s."""
    fn()
    times: list[float] = []
    deadline = time.perf_counter() + budget
    while len(times) < max_repeats and (len(times) < min_repeats or time.perf_counter() < deadline):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


@contextlib.contextmanager
def pinned_threads(n: int):
    """fastseq, every BLAS/OpenMP pool threadpoolctl sees, and torch: all at ``n`` threads."""
    previous = fastseq.get_num_threads()
    fastseq.set_num_threads(n)
    torch = _torch()
    torch_previous = torch.get_num_threads() if torch else None
    if torch:
        torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it only fastseq's and torch's counts are pinned
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(limits=n)
    try:
        with limits:
            yield
    finally:
        fastseq.set_num_threads(previous)
        if torch:
            torch.set_num_threads(torch_previous)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_version() -> str | None:
    torch = _torch()
    return None if torch is None else torch.__version__


def _inputs(case: Case, dtype=np.float32):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((case.T, case.B, case.I)).astype(dtype)
    dy = rng.standard_normal((case.T, case.B, case.H)).astype(dtype)
    return x, dy


def time_fastseq(case: Case, backend: str, budget: float) -> float:
    """The layer API (fastseq.RNN/LSTM/GRU) on ``backend``."""
    layer_class = {"rnn": fastseq.RNN, "lstm": fastseq.LSTM, "gru": fastseq.GRU}[case.cell]
    layer = layer_class(case.I, case.H, dtype=np.float32, seed=0)
    x, dy = _inputs(case)
    with fastseq.use_backend(backend):
        if case.mode == "inference":
            layer.eval()
            return median_seconds(lambda: layer(x), budget)

        def train_step():
            layer(x)
            layer.backward(dy)

        return median_seconds(train_step, budget)


def time_torch(case: Case, budget: float) -> float | None:
    torch = _torch()
    if torch is None:
        return None
    layer_class = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[case.cell]
    layer = layer_class(case.I, case.H)
    x_np, dy_np = _inputs(case)
    x, dy = torch.from_numpy(x_np), torch.from_numpy(dy_np)
    if case.mode == "inference":
        layer.eval()

        def infer():
            with torch.inference_mode():
                layer(x)

        return median_seconds(infer, budget)
    x.requires_grad_()

    def train_step():
        y, _ = layer(x)
        y.backward(dy)

    return median_seconds(train_step, budget)


def sgemm_rate(threads: int, n: int = 2048, budget: float = 1.0) -> float:
    """GFLOP/s of an n³ float32 matrix product through NumPy's OpenBLAS at ``threads``."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    out = np.empty((n, n), np.float32)
    with pinned_threads(threads):
        seconds = median_seconds(lambda: np.matmul(a, b, out=out), budget, min_repeats=5)
    return 2.0 * n**3 / seconds / 1e9
