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
