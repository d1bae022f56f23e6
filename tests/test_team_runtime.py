"""Where a kernel's team runs changes no bit: fastseq's own pool, torch's OpenMP threads
(``fastseq.torch.use_torch_threads``), members that share one CPU (the work is claimed, so
an unscheduled member's share is done by the others), and a forked child (back on the pool).
"""
from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import fastseq
from problems import ALL_CELLS, make_problem, run
from subprocesses import run_python

_core = pytest.importorskip("fastseq._core")

# Shapes whose steps are large enough for a team (loops/tuning.hpp kMinTeamStepFlops), with
# units, the large products and rows cut into several items each.
SHAPES = [dict(T=5, B=16, I=24, H=80), dict(T=4, B=70, I=20, H=144)]


def _problems():
    for cell in ALL_CELLS:
        for shape in SHAPES:
            for lengths in (None, "vary"):
                yield make_problem(cell, **shape, dtype=np.float32, lengths=lengths, seed=7)


def _results(problems, threads):
    before = fastseq.get_num_threads()
    try:
        fastseq.set_num_threads(threads)
        return [run(p, "cpp") for p in problems]
    finally:
        fastseq.set_num_threads(before)


def _assert_same_bits(got, expected, how):
    for g, e in zip(got, expected):
        for name, value in e.items():
            if value is not None:
                np.testing.assert_array_equal(g[name], value, err_msg=f"{name}, {how}")


@pytest.fixture
def torch_threads():
    """fastseq.torch imported, its teams on torch's OpenMP threads; afterwards as before."""
    pytest.importorskip("torch", reason="the torch extra is not installed")
    import fastseq.torch as ft

    was = _core.using_openmp()
    if not ft.use_torch_threads(True):
        pytest.skip("torch's parallel backend is not OpenMP with GNU entry points")
    yield ft
    ft.use_torch_threads(was)


def test_import_runs_teams_on_torch_threads(torch_threads):
    assert _core.using_openmp()
    from fastseq.config import config_text

    assert "the host's OpenMP threads" in config_text()
    torch_threads.use_torch_threads(False)
    assert not _core.using_openmp()
    assert torch_threads.use_torch_threads(True) and _core.using_openmp()


def test_same_bits_on_torch_threads_and_on_the_pool(torch_threads):
    problems = list(_problems())
    torch_threads.use_torch_threads(False)
    expected = _results(problems, 1)
    on_pool = {n: _results(problems, n) for n in (2, 3)}
    torch_threads.use_torch_threads(True)
    for n in (1, 2, 3):
        _assert_same_bits(_results(problems, n), expected, f"torch's threads, {n} threads")
    for n, got in on_pool.items():
        _assert_same_bits(got, expected, f"fastseq's pool, {n} threads")


def test_concurrent_callers_on_torch_threads(torch_threads):
    """Each caller gets its own OpenMP team and its own claim counters."""
    problems = [make_problem(c, T=6, B=16, I=16, H=96, lengths="vary", seed=5)
                for c in ("lstm", "gru_reset_before", "rnn_tanh")]
    expected = _results(problems, 1)
    before = fastseq.get_num_threads()
    fastseq.set_num_threads(2)
    results, errors = [None] * 4, []

    def work(i):
        try:
            for _ in range(5):
                results[i] = [run(p, "cpp") for p in problems]
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    try:
        workers = [threading.Thread(target=work, args=(i,)) for i in range(len(results))]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=300)
        assert not any(w.is_alive() for w in workers), "a kernel call deadlocked"
    finally:
        fastseq.set_num_threads(before)
    assert not errors, errors
    for got in results:
        _assert_same_bits(got, expected, "concurrent callers")


# The child imports this directory's problems.py: from its path, as the child runs from the
# tested package's parent (the source tree, or site-packages in CI).
_TESTS = os.path.dirname(os.path.abspath(__file__))
_CHILD_COMMON = f"""
import json, os, sys
import numpy as np
sys.path.insert(0, {_TESTS!r})
import fastseq
from fastseq import _core
from problems import make_problem, run
problems = [make_problem(c, T=5, B=16, I=24, H=80, dtype=np.float32, lengths="vary", seed=3)
            for c in ("lstm", "gru", "rnn_relu", "lstmp")]
def results(threads):
    fastseq.set_num_threads(threads)
    return [{{k: v.tobytes().hex() for k, v in run(p, "cpp").items() if v is not None}}
            for p in problems]
"""


@pytest.mark.parametrize("runtime", ["pool", "torch"])
def test_same_bits_when_team_members_share_one_cpu(runtime):
    """Pinned to one CPU, a team of 2 or 3 has members the OS runs in turns: the others
    claim an absent member's share. Same bits as 1 thread, and no stall (the timeout)."""
    if runtime == "torch":
        pytest.importorskip("torch", reason="the torch extra is not installed")
    code = _CHILD_COMMON + f"""
if {runtime == "torch"}:
    import fastseq.torch
    assert _core.using_openmp() == fastseq.torch.use_torch_threads()
os.sched_setaffinity(0, {{min(os.sched_getaffinity(0))}})
one = results(1)
print(json.dumps({{"same": all(results(n) == one for n in (2, 3, 2))}}))
"""
    assert run_python(code, timeout=180) == {"same": True}


def test_a_member_that_never_comes_leaves_its_share_to_the_others():
    """OMP_THREAD_LIMIT=1: OpenMP gives a team of 2 or 3 only its first member, which then
    claims every share (each phase's items, the steps' groups, the products' parts)."""
    pytest.importorskip("torch", reason="the torch extra is not installed")
    code = _CHILD_COMMON + """
import fastseq.torch
if not fastseq.torch.use_torch_threads():
    print(json.dumps({"same": "no OpenMP teams here"}))
    sys.exit(0)
one = results(1)
print(json.dumps({"same": all(results(n) == one for n in (2, 3))}))
"""
    got = run_python(code, env={"OMP_THREAD_LIMIT": "1"}, timeout=180)
    if got["same"] == "no OpenMP teams here":
        pytest.skip("torch's parallel backend is not OpenMP with GNU entry points")
    assert got == {"same": True}


def test_forked_child_runs_teams_on_the_pool():
    """A child forked after teams ran on torch's OpenMP threads does not use them (libgomp's
    workers are not in the child): it is back on fastseq's pool, with the parent's bits."""
    pytest.importorskip("torch", reason="the torch extra is not installed")
    code = _CHILD_COMMON + """
import fastseq.torch
fastseq.torch.use_torch_threads(True)
parent = results(2)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    ok = (not _core.using_openmp()) and results(2) == parent
    os.write(w, b"1" if ok else b"0")
    os._exit(0)
os.close(w)
import select
ready, _, _ = select.select([r], [], [], 300)
answer = os.read(r, 1) if ready else b"timeout"
os.waitpid(pid, 0)
print(json.dumps({"child": answer.decode()}))
"""
    assert run_python(code, timeout=180) == {"child": "1"}
