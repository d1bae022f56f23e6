"""fastseq.distributed: the gradient arena, sharding, and `mpiexec -n 2` runs (two ranks
train exactly as one process on the combined batch; an exception on one rank aborts the
job). Skipped, with the reason, where the `mpi` extra (mpi4py, mpich) is not installed."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import fastseq
from subprocesses import PACKAGE_PARENT, child_env, run_python

MISSING = "the mpi extra is not installed (pip install 'fastseq[mpi]')"
pytest.importorskip("mpi4py", reason=MISSING)
from fastseq import distributed  # noqa: E402  (imports mpi4py only; MPI starts on first use)

HERE = os.path.dirname(os.path.abspath(__file__))


def _mpiexec():
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.path.exists(beside) else shutil.which("mpiexec")


def run_mpi(n, args, timeout=120):
    """``mpiexec -n n python -m mpi4py args...``; killed with all its ranks at ``timeout``."""
    mpiexec = _mpiexec()
    if mpiexec is None:
        pytest.skip(f"no mpiexec: {MISSING}")
    proc = subprocess.Popen([mpiexec, "-n", str(n), sys.executable, "-m", "mpi4py", *args],
                            cwd=PACKAGE_PARENT, env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"mpiexec did not finish in {timeout} s:\n{out}\n{err}")
    return proc.returncode, out, err


# --- without MPI ----------------------------------------------------------------------
@pytest.mark.parametrize("n,size", [(7, 2), (2, 3), (0, 2), (10, 1), (64, 5)])
def test_shard_range_covers_once_and_evenly(n, size):
    parts = [distributed.shard_range(n, r, size) for r in range(size)]
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    counts = [stop - start for start, stop in parts]
    assert max(counts) - min(counts) <= 1 and counts == sorted(counts, reverse=True)


def test_shard_splits_a_tuple_at_the_same_positions_and_time_major_batches():
    x, t = np.arange(14).reshape(7, 2), np.arange(7)
    parts = [distributed.shard((x, t), rank=r, size=2) for r in range(2)]
    assert [len(p[1]) for p in parts] == [4, 3]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), x)
    assert (parts[1][0][:, 0] // 2 == parts[1][1]).all()
    tbi = np.zeros((5, 7, 3))
    assert distributed.shard(tbi, rank=1, size=2, axis=1).shape == (5, 3, 3)
    with pytest.raises(ValueError, match="one length"):
        distributed.shard((x, t[:5]), rank=0, size=2)


def test_arena_grads_are_views_that_survive_zeroing_and_backward():
    rng = np.random.default_rng(0)
    model = fastseq.LSTM(3, 5, num_layers=2, seed=rng)
    head = fastseq.Linear(5, 2, dtype=np.float64, seed=rng)  # a second dtype: two buffers
    params = [*model.parameters(), *head.parameters()]
    for p in params:
        p.grad[...] = 1.0
    arena = distributed.GradientArena(params)
    assert set(arena.buffers) == {np.dtype(np.float64), np.dtype(np.float32)}
    for p in params:  # values kept, now views of one buffer per dtype
        assert np.shares_memory(p.grad, arena.buffers[p.dtype]) and (p.grad == 1).all()
    assert arena.gradients(np.float32).size == sum(p.size for p in model.parameters())
    model.zero_grad()
    y, _ = model(rng.standard_normal((4, 2, 3)))
    model.backward(np.ones_like(y))
    assert all(np.shares_memory(p.grad, arena.buffers[p.dtype]) for p in params)
    assert np.abs(arena.gradients(np.float32)).sum() > 0
    # Replaced or dropped grads are put back into their views, values kept.
    before = params[0].grad.copy()
    params[0].grad = before.copy()
    params[1].grad = None
    assert arena.attach() == 2
    np.testing.assert_array_equal(params[0].grad, before)
    assert (params[1].grad == 0).all() and np.shares_memory(params[1].grad, arena.buffers[np.dtype(np.float32)])
    assert distributed.arena_for(params) is distributed.arena_for(params)


def test_show_config_without_setup_has_no_rank():
    assert fastseq.show_config("dicts")["distributed"] == {}


# --- with mpiexec ---------------------------------------------------------------------
def test_two_ranks_train_as_one_process_on_the_combined_batch(tmp_path):
    """20 Adam steps with clipping, global batches of 7 variable-length sequences split 4/3:
    per-step losses and final weights equal one process's (float64 1e-12, float32 1e-5)."""
    sys.path.insert(0, HERE)
    try:
        import ddp_train
    finally:
        sys.path.remove(HERE)
    out = tmp_path / "ddp.npz"
    rc, stdout, stderr = run_mpi(2, [os.path.join(HERE, "ddp_train.py"), str(out)])
    assert rc == 0, f"{stdout}\n{stderr}"
    got = np.load(out)
    for dtype, tol in (("float64", 1e-12), ("float32", 1e-5)):
        losses, state = ddp_train.train(dtype)
        assert fastseq.max_error(got[f"{dtype}/losses"], losses) <= tol, dtype
        for name, value in state.items():
            assert fastseq.max_error(got[f"{dtype}/{name}"], value) <= tol, (dtype, name)
    report = __import__("json").loads(stdout.strip().splitlines()[-1])
    assert [i["rank"] for i in report["infos"]] == [0, 1]
    assert all(i["size"] == 2 and i["local_size"] == 2 for i in report["infos"])
    cpus = len(os.sched_getaffinity(0))
    if "FASTSEQ_NUM_THREADS" not in os.environ:  # the default: CPUs / ranks on the node
        assert all(i["threads"] == max(1, cpus // 2) for i in report["infos"])
    assert report["config"]["rank"] == 0  # show_config reports the rank and threads


def test_an_exception_on_one_rank_aborts_the_job(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(
        "from mpi4py import MPI\n"
        "import numpy as np, fastseq\n"
        "from fastseq import distributed\n"
        "comm = MPI.COMM_WORLD\n"
        "p = fastseq.Parameter(np.zeros(3))\n"
        "if comm.Get_rank() == 1:\n"
        "    raise ValueError('rank 1 fails on purpose')\n"
        "distributed.allreduce_gradients([p], comm, count=1)  # rank 0 waits here\n"
    )
    start = time.monotonic()
    rc, stdout, stderr = run_mpi(2, [str(script)], timeout=60)
    assert rc != 0
    assert "rank 1 fails on purpose" in stderr
    assert time.monotonic() - start < 60


def test_import_without_the_extra_names_it():
    result = run_python(
        "import sys, json\n"
        "sys.modules['mpi4py'] = None\n"
        "import fastseq\n"
        "try:\n"
        "    import fastseq.distributed\n"
        "except ImportError as exc:\n"
        "    print(json.dumps(str(exc)))\n", timeout=120)
    assert "fastseq[mpi]" in result


def test_char_lm_ddp_example_runs():
    script = os.path.join(os.path.dirname(HERE), "examples", "char_lm_ddp.py")
    rc, out, err = run_mpi(2, [script, "--steps", "4", "--log-every", "2", "--hidden", "8",
                               "--bptt", "16", "--batch", "5", "--sample-chars", "20"])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("2 ranks x ")
    assert sum(line.startswith("step ") for line in lines) == 2  # rank 0 only
    assert any(line.startswith("validation loss") for line in lines)
