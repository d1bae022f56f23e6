"""One layer object used from several threads: eval-mode forwards run concurrently and give
the serial bits; training-mode interleaving is refused with a clear RuntimeError, never a
gradient from another thread's batch. Every join has a timeout."""
from __future__ import annotations

import copy
import pickle
import threading

import numpy as np
import pytest

import fastseq

JOIN_TIMEOUT = 120.0


def run_threads(work, n):
    errors, threads = [], []

    def wrapped(k):
        try:
            work(k)
        except BaseException as exc:  # noqa: BLE001 (reported by the caller)
            errors.append(exc)

    for k in range(n):
        threads.append(threading.Thread(target=wrapped, args=(k,), daemon=True))
        threads[-1].start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
        assert not t.is_alive(), "a thread did not finish in time"
    return errors


@pytest.mark.parametrize("make", [
    lambda: fastseq.LSTM(5, 7, num_layers=2, bidirectional=True, seed=0),
    lambda: fastseq.GRU(5, 7, seed=0, dtype=np.float64),
    lambda: fastseq.Linear(5, 7, seed=0),
], ids=["lstm", "gru", "linear"])
def test_concurrent_eval_forwards_give_the_serial_bits(backend, make):
    layer = make().eval()
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((6, 3, 5)).astype(layer.dtype) for _ in range(8)]
    with fastseq.use_backend(backend):
        expected = [layer(x) for x in inputs]
    mismatches = []

    def work(k):
        with fastseq.use_backend(backend):
            for i in range(25):
                j = (k + i) % len(inputs)
                got = layer(inputs[j])
                for a, b in zip(_flat(got), _flat(expected[j])):
                    if not np.array_equal(a, b):
                        mismatches.append((k, i))

    assert run_threads(work, 4) == []
    assert mismatches == []


def _flat(out):
    if isinstance(out, np.ndarray):
        return [out]
    return [a for item in out for a in _flat(item)]


def test_backward_of_another_threads_forward_is_refused():
    """Thread A's forward, then thread B's forward (replacing A's context), then A's
    backward: A gets RuntimeError (it would have got B's gradients); B's backward works."""
    lstm = fastseq.LSTM(4, 5, seed=0)
    x_a, x_b = np.ones((3, 2, 4), np.float32), np.zeros((3, 2, 4), np.float32)
    step = [threading.Event() for _ in range(3)]
    results = {}

    def a(_):
        lstm(x_a)
        step[0].set()
        assert step[1].wait(JOIN_TIMEOUT)
        with pytest.raises(RuntimeError, match="another thread"):
            lstm.backward(np.ones((3, 2, 5), np.float32))
        results["a"] = "refused"
        step[2].set()

    def b(_):
        assert step[0].wait(JOIN_TIMEOUT)
        y, _ = lstm(x_b)
        step[1].set()
        assert step[2].wait(JOIN_TIMEOUT)
        dx, _ = lstm.backward(np.ones_like(y))
        results["b"] = dx

    errors = run_threads(lambda k: (a, b)[k](k), 2)
    assert errors == []
    assert results["a"] == "refused"
    reference = fastseq.LSTM(4, 5, seed=0)
    y, _ = reference(x_b)
    np.testing.assert_array_equal(results["b"], reference.backward(np.ones_like(y))[0])


@pytest.mark.parametrize("kind", ["lstm", "linear"])
def test_training_from_several_threads_never_gives_a_wrong_gradient(kind):
    """4 threads x 100 iterations of forward + backward on one layer, each with its own
    input: every dx returned is the one of that thread's own input; the rest are
    RuntimeErrors saying another thread is involved."""
    if kind == "lstm":
        layer, shape = fastseq.LSTM(3, 4, seed=0, dtype=np.float64), (2, 2, 3)
    else:
        layer, shape = fastseq.Linear(3, 4, seed=0, dtype=np.float64), (2, 3)
    inputs = [np.full(shape, k + 1.0) for k in range(4)]
    serial = copy.deepcopy(layer)
    expected = []
    for x in inputs:
        y = serial(x)
        y = y[0] if isinstance(y, tuple) else y
        dx = serial.backward(np.ones_like(y))
        expected.append(dx[0] if isinstance(dx, tuple) else dx)
    counts = {"ok": 0, "refused": 0}
    wrong = []
    lock = threading.Lock()

    def work(k):
        for _ in range(100):
            try:
                y = layer(inputs[k])
                y = y[0] if isinstance(y, tuple) else y
                dx = layer.backward(np.ones_like(y))
            except RuntimeError as exc:
                message = str(exc)
                if "another thread" not in message:
                    raise
                with lock:
                    counts["refused"] += 1
                continue
            dx = dx[0] if isinstance(dx, tuple) else dx
            with lock:
                counts["ok"] += 1
                if not np.array_equal(dx, expected[k]):
                    wrong.append(k)

    assert run_threads(work, 4) == []
    assert wrong == []
    assert counts["ok"] + counts["refused"] == 400 and counts["ok"] > 0


def test_a_copy_trains_independently_and_pickles():
    lstm = fastseq.LSTM(3, 4, seed=0)
    clone = pickle.loads(pickle.dumps(lstm))
    twin = copy.deepcopy(lstm)
    for layer in (clone, twin):
        assert layer._lock is not lstm._lock
        y, _ = layer(np.ones((2, 1, 3), np.float32))
        layer.backward(np.ones_like(y))


def test_a_new_forward_after_a_refusal_trains_again():
    lstm = fastseq.LSTM(2, 3, seed=0)
    x = np.ones((2, 1, 2), np.float32)
    lstm(x)
    t = threading.Thread(target=lambda: lstm(x * 2), daemon=True)
    t.start()
    t.join(JOIN_TIMEOUT)
    with pytest.raises(RuntimeError, match="another thread"):
        lstm.backward(np.ones((2, 1, 3), np.float32))
    y, _ = lstm(x)
    lstm.backward(np.ones_like(y))  # this thread's own forward: fine
