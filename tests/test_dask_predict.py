"""fastseq.dask.predict on a LocalCluster of two worker processes: the same bits as the same
length buckets run here, in the input order; a worker killed mid-run leaves the result
complete; resident memory per worker stays flat over 100 batches; threadpoolctl limits
fastseq inside a worker. Skipped, with the reason, where the `dask` extra is missing."""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

import fastseq
from subprocesses import run_python

MISSING = "the dask extra is not installed (pip install 'fastseq[dask]')"
pytest.importorskip("distributed", reason=MISSING)
import dask.array as da  # noqa: E402
import dask.bag as db  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

from fastseq import dask as fdask  # noqa: E402

I, H, N, PARTS, BATCH = 8, 16, 240, 8, 16


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=50)
    with Client(cluster) as c:
        c.wait_for_workers(2, timeout=60)
        yield c
    cluster.close(timeout=30)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    model = fastseq.LSTM(I, H, seed=rng)
    lengths = rng.integers(1, 40, N)
    seqs = [rng.standard_normal((int(n), I)).astype(np.float32) for n in lengths]
    return model, seqs


def _local(model, parts, fn=None):
    """The same buckets, here, on the workers' thread count (1: two workers, two CPUs)."""
    local = fastseq.LSTM(I, H)
    local.load_state_dict(model.state_dict())
    local.eval()
    previous = fastseq.get_num_threads()
    fastseq.set_num_threads(1)
    try:
        return [y for part in parts for y in fdask.predict_sequences(local, part, BATCH, fn)]
    finally:
        fastseq.set_num_threads(previous)


def _parts(seqs):
    size = len(seqs) // PARTS
    return [seqs[i * size:(i + 1) * size] for i in range(PARTS)]


def _same(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)


def test_bag_equals_local_buckets_bit_for_bit_in_input_order(client, data):
    model, seqs = data
    got = fdask.predict(model, db.from_sequence(seqs, npartitions=PARTS), batch_size=BATCH)
    got = client.compute(got).result(timeout=60)
    _same(got, _local(model, _parts(seqs)))
    assert [y.shape[0] for y in got] == [s.shape[0] for s in seqs]  # input order
    cpus = len(os.sched_getaffinity(0))
    if "FASTSEQ_NUM_THREADS" not in os.environ:  # each worker's share of the CPUs
        assert set(client.run(fastseq.get_num_threads).values()) == {max(1, cpus // 2)}


def test_padded_array_with_lengths(client, data):
    model, seqs = data
    T = max(s.shape[0] for s in seqs)
    x = np.zeros((N, T, I), np.float32)
    lengths = np.array([s.shape[0] for s in seqs])
    for i, s in enumerate(seqs):
        x[i, :s.shape[0]] = s
    y = fdask.predict(model, da.from_array(x, chunks=(N // PARTS, T, I)), lengths=lengths,
                      batch_size=BATCH)
    y = client.compute(y).result(timeout=60)
    assert y.shape == (N, T, H)
    for i, want in enumerate(_local(model, _parts(seqs))):
        assert np.array_equal(y[i, :lengths[i]], want) and not y[i, lengths[i]:].any()


def _slow(model, x, lengths):
    time.sleep(0.05)
    return fdask.default_apply(model, x, lengths)


def test_a_killed_worker_leaves_the_result_complete(client, data):
    model, seqs = data
    bag = fdask.predict(model, db.from_sequence(seqs, npartitions=PARTS), batch_size=4, fn=_slow)
    future = client.compute(bag)
    pids = client.run(os.getpid)
    time.sleep(1.0)  # 60 batches of >= 50 ms on two workers: well inside the run
    victim = sorted(pids.values())[0]
    os.kill(victim, signal.SIGKILL)
    got = future.result(timeout=90)
    want = [y for part in _parts(seqs) for y in
            fdask.predict_sequences(_eval_copy(model), part, 4)]
    _same(got, want)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it
    assert victim not in client.run(os.getpid).values()


def _eval_copy(model):
    local = fastseq.LSTM(I, H)
    local.load_state_dict(model.state_dict())
    return local.eval()


def test_worker_memory_stays_flat_over_100_batches(client, data):
    model, seqs = data
    bag = db.from_sequence(seqs, npartitions=PARTS)

    def rss():
        import psutil

        return psutil.Process().memory_info().rss

    samples = []
    for _ in range(7):  # 7 rounds of 240 / 16 = 15 batches: 105 batches
        client.compute(fdask.predict(model, bag, batch_size=BATCH)).result(timeout=60)
        samples.append(max(client.run(rss).values()))
    growth = samples[-1] - samples[1]  # the first round warms caches up
    print("worker RSS MiB per round:", [round(s / 2**20, 1) for s in samples])
    assert growth < 8 * 2**20, [s / 2**20 for s in samples]


def _limited():
    import threadpoolctl

    import fastseq as fs

    before = fs.get_num_threads()
    with threadpoolctl.threadpool_limits(1):
        inside = fs.get_num_threads()
    listed = [i["internal_api"] for i in threadpoolctl.threadpool_info()]
    return before, inside, fs.get_num_threads(), "fastseq" in listed


def test_threadpool_limits_caps_fastseq_inside_a_worker(client):
    def prepare():
        import fastseq as fs

        fs.set_num_threads(2)

    client.run(prepare)
    before, inside, after, listed = client.submit(_limited, pure=False).result(timeout=60)
    assert (before, inside, after, listed) == (2, 1, 2, True)


def test_import_without_the_extra_names_it():
    result = run_python(
        "import sys, json\n"
        "sys.modules['dask'] = None\n"
        "import fastseq\n"
        "try:\n"
        "    import fastseq.dask\n"
        "except ImportError as exc:\n"
        "    print(json.dumps(str(exc)))\n", timeout=120)
    assert "fastseq[dask]" in result


def test_dask_predict_example_runs():
    import subprocess
    import sys

    from subprocesses import PACKAGE_PARENT, child_env

    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "examples", "dask_predict.py")
    result = subprocess.run([sys.executable, script, "--sequences", "96", "--partitions", "4",
                             "--max-length", "20", "--batch", "8"], capture_output=True,
                            text=True, timeout=120, env=child_env(), cwd=PACKAGE_PARENT)
    assert result.returncode == 0, result.stderr
    assert "96 sequences" in result.stdout and "bitwise equal" in result.stdout
