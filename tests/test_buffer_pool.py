"""The compiled kernels' buffer pool (csrc/runtime/buffer_pool.*, fastseq.empty_cache):
scratch and reserves are given back and reused, a reused buffer's old contents (NaN
included) never reach a later result, and the pool stays within its limits."""
from __future__ import annotations

import os
import platform

import numpy as np
import pytest

import fastseq
from subprocesses import run_python
from problems import (CELLS, assert_matches, backward, forward, make_problem, reference_of,
                      run, tolerance)

pytest.importorskip("fastseq._core")

MAX_KEPT_BYTES = 1 << 30


def poisoned(p):
    """``p`` with every input NaN: whatever buffers it leaves behind hold NaN."""
    q = p.astype(p.dtype)
    for name, value in vars(q).items():
        if isinstance(value, np.ndarray) and name != "lengths":
            value[...] = np.nan
    return q


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", CELLS)
def test_reused_buffers_holding_nan_do_not_reach_results(cell, dtype):
    fastseq.empty_cache()
    # A bigger problem first, forward and backward, so that its NaN-filled scratch and reserve
    # are the buffers the pool hands to the checked problem next.
    big = make_problem(cell, T=9, B=5, I=7, H=40, dtype=dtype, seed=1)
    out = run(poisoned(big), "cpp")
    assert np.isnan(out["y"]).all()
    assert fastseq.cached_bytes() > 0
    for lengths, reverse in [(None, False), ("vary", True), ("vary", False)]:
        p = make_problem(cell, T=7, B=4, I=5, H=33, dtype=dtype, lengths=lengths,
                         reverse=reverse, seed=2)
        for training in (True, False):
            run(poisoned(big), "cpp", training=training)
            assert_matches(run(p, "cpp", training=training), reference_of(p, training=training),
                           tolerance(dtype), f"{cell} lengths={lengths} reverse={reverse}")


def test_buffers_come_back_and_empty_cache_frees_them():
    fastseq.empty_cache()
    assert fastseq.cached_bytes() == 0
    p = make_problem("lstm", T=20, B=8, I=16, H=64, dtype=np.float32)
    run(p, "cpp", training=False)
    after_inference = fastseq.cached_bytes()
    assert after_inference > 0  # the forward's scratch came back
    with fastseq.use_backend("cpp"):
        _, ctx = forward(p)
        held = fastseq.cached_bytes()
        backward(p, ctx)
        # Backward gives the reserve back as soon as it has used it, not when ctx goes.
        assert fastseq.cached_bytes() > held
    freed = fastseq.empty_cache()
    assert freed > 0 and fastseq.cached_bytes() == 0
    assert fastseq.empty_cache() == 0


def test_repeated_calls_reuse_instead_of_growing():
    fastseq.empty_cache()
    p = make_problem("gru", T=10, B=6, I=12, H=48, dtype=np.float32)
    run(p, "cpp")
    steady = fastseq.cached_bytes()
    for _ in range(20):
        run(p, "cpp")
    assert fastseq.cached_bytes() == steady


def test_pool_stays_within_its_limits():
    fastseq.empty_cache()
    # Many different sizes: more buffers than the pool keeps.
    for H in range(8, 8 + 16 * 12, 12):
        run(make_problem("rnn_tanh", T=3, B=2, I=4, H=H, dtype=np.float32), "cpp")
    assert 0 < fastseq.cached_bytes() <= MAX_KEPT_BYTES
    fastseq.empty_cache()


_FAULTS_SCRIPT = r"""
import json, resource, numpy as np, fastseq
from fastseq import _core, functional as F
fastseq.set_backend("cpp")
fastseq.set_num_threads(1)
T, B, H = 50, 16, 256
rng = np.random.default_rng(0)
x = rng.standard_normal((T, B, H), dtype=np.float32)
w_ih = rng.standard_normal((4 * H, H), dtype=np.float32) * 0.05
w_hh = rng.standard_normal((4 * H, H), dtype=np.float32) * 0.05
b = np.zeros(4 * H, np.float32)
def step():
    y, h, c, ctx = F.lstm_forward(x, w_ih, w_hh, b, b, training=True)
    F.lstm_backward(ctx, y)
    temps = [np.ones(w_ih.shape, np.float32) for _ in range(4)]  # an optimizer's temporaries
    del temps
for _ in range(5):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc heuristics only")
@pytest.mark.skipif("asan" in os.environ.get("LD_PRELOAD", ""),
                    reason="under ASan (tools/sanitize.sh) malloc is ASan's, not glibc's")
@pytest.mark.skipif(any(k == "GLIBC_TUNABLES" or k.startswith("MALLOC_") for k in os.environ),
                    reason="malloc's thresholds set by the environment, not its heuristic")
def test_kept_buffers_do_not_make_malloc_return_other_temporaries_to_the_os():
    # glibc learns from the big blocks a program frees to keep such blocks in its heap; the
    # pool never frees its buffers, so (before buffer_pool.cpp showed it their sizes) the
    # 1 MiB temporaries around each training step went back to the OS and faulted in again:
    # about 1700 page faults per step here, 0 after. A fresh process: the heuristic depends
    # on the process's history.
    faults_per_step = run_python(_FAULTS_SCRIPT, timeout=300)
    assert faults_per_step < 100, f"{faults_per_step} page faults per training step"
