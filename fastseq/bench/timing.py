"""Timers: one call of a case per implementation (inference: a forward in eval mode;
training: forward + backward), timed in alternation (alternating_rounds) or alone
(median_seconds); the SGEMM reference rate.
Thread counts are pinned for fastseq, NumPy's BLAS and torch alike."""
from __future__ import annotations

import contextlib
import time
import warnings
from typing import Callable

import numpy as np

import fastseq

from .cases import Case


def median_seconds(fn: Callable[[], object], budget: float, min_repeats: int = 3,
                   max_repeats: int = 50, settle: float = 0.2) -> float:
    """Median wall time of ``fn`` after one untimed call, repeating within ``budget`` s.

    It first sleeps ``settle`` seconds, so that the idle workers of whatever ran before
    (NumPy's OpenBLAS spins for about 85 ms of CPU within 150 ms of a call) have stopped.
    """
    if settle > 0:
        time.sleep(settle)
    return alternating_medians({"fn": fn}, budget, pause=0.0, min_rounds=min_repeats,
                               max_rounds=max_repeats)["fn"]


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


def case_inputs(case: Case, dtype=np.float32):
    """The seeded input x (T, B, I) and output gradient dy (T, B, H or P) every implementation
    of ``case`` is called with."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((case.T, case.B, case.I)).astype(dtype)
    dy = rng.standard_normal((case.T, case.B, case.out)).astype(dtype)
    return x, dy


def fastseq_call(case: Case, backend: str) -> Callable[[], object]:
    """One call of ``case`` through the layer API (fastseq.RNN/LSTM/GRU) on ``backend``:
    a forward in eval mode, or a forward and backward."""
    layer_class = {"rnn": fastseq.RNN, "lstm": fastseq.LSTM, "lstmp": fastseq.LSTM,
                   "gru": fastseq.GRU}[case.cell]
    extra = {"proj_size": case.P} if case.P else {}
    layer = layer_class(case.I, case.H, dtype=np.float32, seed=0, **extra)
    x, dy = case_inputs(case)
    if case.mode == "inference":
        layer.eval()

        def infer():
            with fastseq.use_backend(backend):
                layer(x)

        return infer

    def train_step():
        with fastseq.use_backend(backend):
            layer(x)
            layer.backward(dy)

    return train_step


def torch_module(case: Case):
    """The torch.nn.RNN/LSTM/GRU of ``case`` (float32, seeded), or None without torch:
    what torch_call times and what ort.ort_call exports to ONNX."""
    torch = _torch()
    if torch is None:
        return None
    layer_class = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "lstmp": torch.nn.LSTM,
                   "gru": torch.nn.GRU}[case.cell]
    extra = {"proj_size": case.P} if case.P else {}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return layer_class(case.I, case.H, **extra)


def torch_call(case: Case, layer=None) -> Callable[[], object] | None:
    """The same call through torch.nn (``layer``, or torch_module(case)), or None without
    torch."""
    torch = _torch()
    if torch is None:
        return None
    layer = layer if layer is not None else torch_module(case)
    x_np, dy_np = case_inputs(case)
    x, dy = torch.from_numpy(x_np), torch.from_numpy(dy_np)
    if case.mode == "inference":
        layer.eval()

        def call():
            with torch.inference_mode():
                layer(x)
    else:
        x.requires_grad_()

        def call():
            y, _ = layer(x)
            y.backward(dy)

    if case.P:
        # torch warns, once, that its oneDNN path has no projection and it runs the LSTM
        # step by step instead: that is the comparison the benchmark means to make. Called
        # once here with the warning silenced, so the timed calls never warn.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
            call()
    return call


def alternating_rounds(calls: dict[str, Callable[[], object]], budget: float,
                       pause: float = 0.02, min_rounds: int = 7, max_rounds: int = 50,
                       settle_after: dict[str, float] | None = None) -> dict[str, list[float]]:
    """Wall times of each call, measured in rounds that time every call once, in order.

    Returns ``{name: [seconds of round 0, round 1, ...]}``, all lists of the same length,
    so that ``a[i] / b[i]`` is a ratio taken under the same load (stats.per_round_ratios).
    On a shared host the load drifts over seconds; alternating call by call puts every
    implementation under the same drift, so the ratios between them hold even when the
    absolute times move. Between two calls the process sleeps ``pause`` seconds: a
    multithreaded library's idle workers keep spinning for a while after its call (torch's
    OpenMP pool 5-10 ms of CPU, fastseq's team at most 2 ms), and timed right after, the
    next implementation's threads would share their cores with those spinners (measured
    without the pause: an LSTM (25,16,512) on 2 threads, 7 ms alone, 13 ms after each torch
    call). NumPy's OpenBLAS spins for about 150 ms, too long to wait out between every two
    calls: give its name a longer sleep in ``settle_after`` (seconds after that call
    instead of ``pause``). Rounds go on until ``budget`` seconds per call have passed,
    at least ``min_rounds`` and at most ``max_rounds`` of them.
    """
    settle_after = settle_after or {}
    for fn in calls.values():
        fn()  # warm-up: compilation, first-touch of buffers
    times: dict[str, list[float]] = {name: [] for name in calls}
    deadline = time.perf_counter() + budget * len(calls)
    rounds = 0
    while rounds < max_rounds and (rounds < min_rounds or time.perf_counter() < deadline):
        for name, fn in calls.items():
            if pause > 0:
                time.sleep(pause)
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
            if settle_after.get(name, 0) > pause:
                time.sleep(settle_after[name] - pause)
        rounds += 1
    return times


def alternating_medians(calls: dict[str, Callable[[], object]], budget: float,
                        pause: float = 0.02, min_rounds: int = 5, max_rounds: int = 50,
                        settle_after: dict[str, float] | None = None) -> dict[str, float]:
    """The median of each call's times from alternating_rounds (same arguments)."""
    times = alternating_rounds(calls, budget, pause=pause, min_rounds=min_rounds,
                               max_rounds=max_rounds, settle_after=settle_after)
    return {name: float(np.median(t)) for name, t in times.items()}


def sgemm_call(n: int = 2048) -> tuple[Callable[[], object], float]:
    """An n³ float32 matrix product through NumPy's OpenBLAS, and its FLOP count: the
    yardstick of the "% SGEMM" column, at whatever thread count is pinned around it."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    out = np.empty((n, n), np.float32)
    return (lambda: np.matmul(a, b, out=out)), 2.0 * n**3


def sgemm_rate(threads: int, n: int = 2048, budget: float = 1.0) -> float:
    """GFLOP/s of sgemm_call(n) alone at ``threads``."""
    fn, flops = sgemm_call(n)
    with pinned_threads(threads):
        seconds = median_seconds(fn, budget, min_repeats=5)
    return flops / seconds / 1e9
