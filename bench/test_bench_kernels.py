"""pytest-benchmark suite of the sequence kernels: cpp against the reference, Numba (when
available), PyTorch (when installed) and ONNX Runtime (inference, when torch, onnx and
onnxruntime are installed), float32, single layer, single direction, on the same
configurations as ``python -m fastseq.bench`` (fastseq.bench.cases.FULL_CONFIGS).

    python -m pytest bench/test_bench_kernels.py --benchmark-sort=name
    FASTSEQ_BENCH_THREADS=2 python -m pytest bench/ ...        (default: 1 thread)
    python -m pytest bench/ -k "lstm and 25x1x512x512"       (a subset: ids are TxBxIxH)
    FASTSEQ_ISA=avx2 python -m pytest bench/ ...               (another kernel variant)

Regressions (docs/performance.md has the recipe): save a baseline with
``--benchmark-save=NAME``, compare a later run with ``--benchmark-compare`` and
``--benchmark-compare-fail=median:10%``.

Each benchmark group is one (cell, mode, T, B, I, H): its rows are the backends, so the
table pytest-benchmark prints shows the ratios directly. "fwd" is inference
(training=False); "fwd+bwd" is a training forward followed by the backward of every
input (torch: ``y.backward(dy)`` with x, h0 and the parameters requiring gradients).
fastseq's threads and torch's are pinned to the same count. These are regression
numbers, not the user-facing comparison (that is ``python -m fastseq.bench``, which
alternates the implementations round by round; here each is timed apart, so a busy host
moves them apart).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import fastseq
from fastseq import backends
from fastseq.bench import ort as ort_bench
from fastseq.bench.cases import FULL_CONFIGS, Case

try:
    import torch
except ImportError:  # torch is never required
    torch = None

pytest.importorskip("pytest_benchmark")

CONFIGS = FULL_CONFIGS
CELLS = {"rnn_tanh": 1, "lstm": 4, "gru": 3}
CASE_CELL = {"rnn_tanh": "rnn", "lstm": "lstm", "gru": "gru"}  # fastseq.bench.cases names
MODES = ["fwd", "fwd+bwd"]
THREADS = int(os.environ.get("FASTSEQ_BENCH_THREADS", "1"))
BACKENDS = [b for b in ("cpp", "numba", "reference") if b in fastseq.available_backends()]
if torch is not None:
    BACKENDS.append("torch")
ORT_SKIPPED = ort_bench.unavailable()
if ORT_SKIPPED is None:
    BACKENDS.append("ort")


@pytest.fixture(scope="module", autouse=True)
def pin_threads():
    previous = fastseq.get_num_threads()
    fastseq.set_num_threads(THREADS)
    if torch is not None:
        torch_previous = torch.get_num_threads()
        torch.set_num_threads(THREADS)
    yield
    fastseq.set_num_threads(previous)
    if torch is not None:
        torch.set_num_threads(torch_previous)


def problem(cell, T, B, I, H, seed=0):
    rng = np.random.default_rng(seed)
    G = CELLS[cell]
    k = np.float32(1 / np.sqrt(H))
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return dict(
        x=f32(rng.standard_normal((T, B, I))),
        w_ih=f32(rng.uniform(-k, k, (G * H, I))), w_hh=f32(rng.uniform(-k, k, (G * H, H))),
        b_ih=f32(rng.uniform(-k, k, G * H)), b_hh=f32(rng.uniform(-k, k, G * H)),
        h0=f32(rng.standard_normal((B, H)) * 0.5),
    ), f32(rng.standard_normal((T, B, H)))


def fastseq_call(name, cell, mode, a, dy):
    mod = backends.backend_module(name)
    B, H = a["h0"].shape
    if cell == "lstm":
        fwd, bwd = mod.lstm_forward, mod.lstm_backward
        args = dict(a, c0=np.zeros((B, H), np.float32))
    elif cell == "gru":
        fwd, bwd = mod.gru_forward, mod.gru_backward
        args = dict(a, reset_after=True)
    else:
        fwd, bwd = mod.rnn_forward, mod.rnn_backward
        args = dict(a, nonlinearity="tanh")
    if mode == "fwd":
        return lambda: fwd(**args, lengths=None, reverse=False, training=False)

    def train():
        out = fwd(**args, lengths=None, reverse=False, training=True)
        return bwd(out[-1], dy, None, None) if cell == "lstm" else bwd(out[-1], dy, None)

    return train


def torch_module(cell, a):
    """torch.nn.RNN/LSTM/GRU holding the problem's weights."""
    T, B, I = a["x"].shape
    H = a["w_hh"].shape[1]
    kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn_tanh": torch.nn.RNN}[cell]
    m = kind(I, H)
    with torch.no_grad():
        for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
            getattr(m, f"{'weight' if name[0] == 'w' else 'bias'}_{name[2:]}_l0").copy_(
                torch.from_numpy(a[name]))
    return m


def ort_call(cell, mode, a):
    """ONNX Runtime's session on the exported torch module, IO bound once
    (fastseq.bench.ort; its initial state is zero rather than h0: the same work)."""
    T, B, I = a["x"].shape
    H = a["w_hh"].shape[1]
    case = Case(CASE_CELL[cell], T, B, I, H, "inference", THREADS)
    infer, _ = ort_bench.ort_call(case, torch_module(cell, a), a["x"])
    return infer


def torch_call(cell, mode, a, dy):
    m = torch_module(cell, a)
    x, h0, dyt = (torch.from_numpy(a["x"]), torch.from_numpy(a["h0"])[None],
                  torch.from_numpy(dy))
    state = (h0, torch.zeros_like(h0)) if cell == "lstm" else h0
    if mode == "fwd":
        def infer():
            with torch.inference_mode():
                return m(x, state)
        return infer
    xg = x.clone().requires_grad_(True)
    hg = h0.clone().requires_grad_(True)
    state_g = (hg, torch.zeros_like(hg)) if cell == "lstm" else hg

    def train():
        for p in m.parameters():
            p.grad = None
        xg.grad = hg.grad = None
        y, _ = m(xg, state_g)
        y.backward(dyt)

    return train


# Slow backends get fewer rounds: the NumPy reference takes seconds at the largest size.
ROUNDS = {"cpp": 7, "numba": 7, "torch": 7, "ort": 7, "reference": 1}


# ONNX Runtime is an inference engine: no fwd+bwd rows for it.
BACKEND_MODES = [(b, m) for m in MODES for b in BACKENDS if not (b == "ort" and m != "fwd")]


@pytest.mark.parametrize("backend,mode", BACKEND_MODES, ids=[f"{b}-{m}" for b, m in BACKEND_MODES])
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("T,B,I,H", CONFIGS, ids=[f"{t}x{b}x{i}x{h}" for t, b, i, h in CONFIGS])
def test_kernel(benchmark, backend, mode, cell, T, B, I, H):
    a, dy = problem(cell, T, B, I, H)
    if backend == "ort":
        fn = ort_call(cell, mode, a)
    elif backend == "torch":
        fn = torch_call(cell, mode, a, dy)
    else:
        fn = fastseq_call(backend, cell, mode, a, dy)
    G = CELLS[cell]
    flops = 2 * T * B * G * H * (I + H) * (3 if mode == "fwd+bwd" else 1)
    benchmark.group = f"{cell} {mode} T={T} B={B} I={I} H={H} threads={THREADS}"
    benchmark.extra_info.update(backend=backend, gflop=flops / 1e9, threads=THREADS)
    rounds = ROUNDS[backend]
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1 if rounds > 2 else 0)
