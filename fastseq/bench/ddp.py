"""Data-parallel throughput: ``python -m fastseq.bench.ddp`` (needs ``fastseq[mpi]``).

LSTM training steps at (T, B, I=H) = (50, 64, 256), float32 — forward, backward, Adam with
clipping — on 1 process x 1 thread, 1 process x 2 threads and 2 MPI ranks x 1 thread
(32 sequences each, one allreduce per step), with a 2048³ SGEMM at 1 and 2 threads in the
same rounds as the yardstick of what two threads can give on this host (two vCPUs that
share a core give no code 2x). Prints a table and the goal
``2 ranks >= 0.9 x (SGEMM 2-thread / 1-thread) x 1 thread``; ``--json FILE`` records it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

T, B, H = 50, 64, 256


def _step_fn(batch: int, comm=None):
    import fastseq
    from fastseq.optim import Adam, clip_grad_norm_

    rng = np.random.default_rng(0)
    lstm = fastseq.LSTM(H, H, seed=rng)
    params = list(lstm.parameters())
    opt = Adam(params, lr=1e-3)
    x = rng.standard_normal((T, batch, H)).astype(np.float32)
    dy = rng.standard_normal((T, batch, H)).astype(np.float32) / (T * B)
    if comm is not None:
        from fastseq import distributed

        distributed.broadcast_parameters(params, comm)

    def step():
        opt.zero_grad()
        lstm(x)
        lstm.backward(dy)
        if comm is not None:
            distributed.allreduce_gradients(params, comm, count=batch)
        clip_grad_norm_(params, 1.0)
        opt.step()

    return step


def _median_step(step, seconds: float, min_steps: int = 5) -> float:
    step()  # warm: buffers, caches
    times, deadline = [], time.perf_counter() + seconds
    while len(times) < min_steps or time.perf_counter() < deadline:
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def rank_main(seconds: float) -> None:
    """One rank of the 2-rank run: prints rank 0's median step time as JSON."""
    from mpi4py import MPI

    from fastseq import distributed

    comm = MPI.COMM_WORLD
    distributed.setup(comm)
    step = _step_fn(B // comm.Get_size(), comm)

    def synced():
        step()
        comm.Barrier()  # a step ends when the slowest rank's does

    median = _median_step(synced, seconds)
    info = comm.gather(distributed.info(), root=0)
    if comm.Get_rank() == 0:
        print(json.dumps({"step_s": median, "ranks": info}))


def _single(threads: int, seconds: float) -> float:
    import fastseq

    fastseq.set_num_threads(threads)
    return _median_step(_step_fn(B), seconds)


def _sgemm(threads: int) -> float:
    from .timing import sgemm_rate

    return sgemm_rate(threads, budget=1.0)


def _ranks(seconds: float, timeout: float = 300) -> dict:
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(mpiexec):
        mpiexec = "mpiexec"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    env.pop("FASTSEQ_NUM_THREADS", None)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "mpi4py", "-m",
                          "fastseq.bench.ddp", "--rank", "--seconds", str(seconds)],
                         capture_output=True, text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"mpiexec failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per measurement")
    parser.add_argument("--json", help="write the rounds and the medians here")
    parser.add_argument("--rank", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rank:
        rank_main(args.seconds)
        return 0
    from threadpoolctl import threadpool_limits

    import fastseq

    rounds = []
    for r in range(args.rounds):
        row = {"sgemm1": _sgemm(1), "sgemm2": _sgemm(2)}
        time.sleep(0.3)
        with threadpool_limits(1, user_api="blas"):
            row["single1_s"] = _single(1, args.seconds)
            row["single2_s"] = _single(2, args.seconds)
        row["ranks2_s"] = _ranks(args.seconds)["step_s"]
        rounds.append(row)
        print(f"round {r + 1}: SGEMM {row['sgemm1']:.0f}/{row['sgemm2']:.0f} GFLOP/s, step "
              f"1x1 {row['single1_s'] * 1e3:.1f} ms, 1x2 {row['single2_s'] * 1e3:.1f} ms, "
              f"2x1 {row['ranks2_s'] * 1e3:.1f} ms", flush=True)
    med = {k: float(np.median([row[k] for row in rounds])) for k in rounds[0]}
    ratios = [row["sgemm2"] / row["sgemm1"] for row in rounds]
    sgemm_ratio = float(np.median(ratios))
    rate = {k: B / med[f"{k}_s"] for k in ("single1", "single2", "ranks2")}
    goal = 0.9 * sgemm_ratio * rate["single1"]
    flops = 3 * 2 * T * B * 4 * H * (H + H)
    print(f"\nLSTM training step, (T, B, I, H) = ({T}, {B}, {H}, {H}) float32, medians of "
          f"{args.rounds} rounds; fastseq {fastseq.__version__}\n")
    print("| run | step ms | sequences/s | GFLOP/s | vs 1x1 |")
    print("|---|---:|---:|---:|---:|")
    for key, name in (("single1", "1 process x 1 thread"), ("single2", "1 process x 2 threads"),
                      ("ranks2", "2 MPI ranks x 1 thread")):
        s = med[f"{key}_s"]
        print(f"| {name} | {s * 1e3:.1f} | {rate[key]:.0f} | {flops / s / 1e9:.0f} | "
              f"{rate[key] / rate['single1']:.2f}x |")
    print(f"\nSGEMM 2-thread / 1-thread ratio: {sgemm_ratio:.2f} (rounds: "
          + ", ".join(f"{x:.2f}" for x in ratios) + ")")
    met = rate["ranks2"] >= goal
    print(f"goal: 2 ranks >= 0.9 x {sgemm_ratio:.2f} x {rate['single1']:.0f} = {goal:.0f} "
          f"sequences/s; measured {rate['ranks2']:.0f}: {'met' if met else 'NOT met'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds": rounds, "medians": med, "sequences_per_s": rate,
                       "sgemm_ratio": sgemm_ratio, "goal": goal, "met": met,
                       "config": fastseq.show_config("dicts")}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
