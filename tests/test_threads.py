"""fastseq's thread pool: the thread-count API reaches libfastseq, OpenBLAS stays at one
thread, and concurrent callers from Python threads never deadlock or mix teams (a call that
finds the pool busy runs on its own thread) and get the single-caller results."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import fastseq
from problems import make_problem, run

_core = pytest.importorskip("fastseq._core")


def test_set_num_threads_reaches_the_pool():
    before = fastseq.get_num_threads()
    try:
        fastseq.set_num_threads(1)
        assert _core.get_num_threads() == 1
        fastseq.set_num_threads(3)
        assert _core.get_num_threads() == 3
    finally:
        fastseq.set_num_threads(before)
    with pytest.raises(ValueError):
        fastseq.set_num_threads(0)


def test_openblas_stays_single_threaded_through_kernel_calls():
    p = make_problem("lstm", T=3, B=4, I=5, H=40, dtype=np.float32)
    run(p, "cpp")
    assert _core.blas_num_threads() == 1


@pytest.mark.parametrize("cell", ["lstm", "gru_reset_before"])
def test_concurrent_callers_get_the_same_results(cell):
    p = make_problem(cell, T=8, B=9, I=16, H=80, dtype=np.float64, lengths="vary", seed=5)
    before = fastseq.get_num_threads()
    fastseq.set_num_threads(2)
    try:
        expected = run(p, "cpp")
        results, errors = [None] * 6, []

        def work(i):
            try:
                for _ in range(5):
                    results[i] = run(p, "cpp")
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(i,)) for i in range(len(results))]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=120)
        assert not any(w.is_alive() for w in workers), "a kernel call deadlocked"
        assert not errors, errors
    finally:
        fastseq.set_num_threads(before)
    assert not _core.pool_busy()
    for got in results:
        for name, value in expected.items():
            if value is not None:
                # 1 or 2 threads give the same step-loop bits; the large products agree to
                # rounding whichever team size ran them.
                np.testing.assert_allclose(got[name], value, rtol=1e-12, atol=1e-12, err_msg=name)


def test_set_num_threads_takes_any_integer_in_range():
    before = fastseq.get_num_threads()
    try:
        for n in (np.int64(2), np.uint8(1), np.int32(3)):
            fastseq.set_num_threads(n)
            assert fastseq.get_num_threads() == int(n) == _core.get_num_threads()
            assert type(fastseq.get_num_threads()) is int
        fastseq.set_num_threads(4096)
        assert _core.get_num_threads() == 4096
    finally:
        fastseq.set_num_threads(before)
    for bad in (2**40, 4097, 0, -1, np.int64(-3)):
        with pytest.raises(ValueError, match=r"n must be in 1\.\.4096"):
            fastseq.set_num_threads(bad)
    for bad in (2.0, "2", True, np.bool_(True), None):
        with pytest.raises(TypeError, match="n must be an integer"):
            fastseq.set_num_threads(bad)
    assert fastseq.get_num_threads() == before


@pytest.mark.parametrize("value", ["99999999999", "0", "-2", "abc", "4097", "1.5"])
def test_bad_environment_thread_count_warns_and_uses_the_default(value):
    from subprocesses import run_python

    code = (
        "import json, os, warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import fastseq\n"
        "    n = fastseq.get_num_threads()\n"
        "print(json.dumps(dict(n=n, cpus=len(os.sched_getaffinity(0)),\n"
        "    messages=[f'{w.category.__name__}: {w.message}' for w in caught])))\n"
    )
    result = run_python(code, {"FASTSEQ_NUM_THREADS": value})
    assert result["n"] == result["cpus"]
    assert len(result["messages"]) == 1, result["messages"]
    message = result["messages"][0]
    assert message.startswith("RuntimeWarning: ") and "FASTSEQ_NUM_THREADS" in message
    assert repr(value) in message and "1..4096" in message
