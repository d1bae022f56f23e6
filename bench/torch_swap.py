"""Swap torch.nn.LSTM for fastseq.torch.LSTM in a torch training step: how much faster?

One training step = forward, an MSE loss, backward, torch.optim.Adam's step, on a float32
single-layer LSTM at (T, B, H = I) = (25, 16, 512) and (50, 16, 256), 1 and 2 threads
(``torch.set_num_threads`` and ``fastseq.set_num_threads`` both). Each model trains in a
process of its own, as a user's would: in one process the two would share malloc's state
and torch's OpenMP threads, and each would change what the other costs (a user's process
holds only one of them). The two processes stay alive through a case and take turns in
alternating rounds (the order flips every round, so slow drift of a shared host hits both
sides): a round runs ``--steps`` steps of one model, then of the other, while the idle
process waits in a blocking read; the per-step time of a round is its total over steps.
Reported: the median per-step time of each, and the median ratio torch / fastseq over rounds
(> 1: fastseq is faster) with its spread (interquartile range, min-max).

    python bench/torch_swap.py [--rounds 9] [--steps 5] [--cases 50,16,256 ...]
                               [--threads 1 2] [--own-pool] [--json FILE]

(against the installed fastseq; from a source tree, prefix ``PYTHONPATH=.``).

fastseq.torch runs fastseq's kernel teams on torch's OpenMP threads
(``fastseq.torch.use_torch_threads``); ``--own-pool`` times them on fastseq's own pool
instead, whose threads then share the CPUs with torch's idle OpenMP workers, which spin
after each of torch's parallel operations (libgomp's GOMP_SPINCOUNT): the JSON records
the choice, OMP_WAIT_POLICY and GOMP_SPINCOUNT.

Not a unit test: timing on a shared host belongs to a script run by hand.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import time

CASES = [(25, 16, 512), (50, 16, 256)]


def make_step(cls, T, B, H, seed=0):
    """A closure running one training step of a fresh ``cls(H, H)`` model."""
    import torch

    torch.manual_seed(seed)
    model = cls(H, H)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(T, B, H, generator=g)
    target = torch.randn(T, B, H, generator=g)

    def step():
        opt.zero_grad()
        y, _ = model(x)
        loss = torch.nn.functional.mse_loss(y, target)
        loss.backward()
        opt.step()
        return loss

    return step


def time_steps(step, n):
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n


def worker(conn, which, T, B, H, threads, own_pool):
    """One model in its own process: builds it, warms it up, then runs as many steps as
    each message asks and answers with the time per step; None ends it."""
    import torch

    import fastseq
    import fastseq.torch

    fastseq.torch.use_torch_threads(not own_pool)
    torch.set_num_threads(threads)
    fastseq.set_num_threads(threads)
    cls = fastseq.torch.LSTM if which == "fastseq" else torch.nn.LSTM
    step = make_step(cls, T, B, H)
    time_steps(step, 2)  # warm-up: allocations, OpenBLAS/oneDNN first calls
    conn.send("ready")
    while (n := conn.recv()) is not None:
        conn.send(time_steps(step, n))


def measure(T, B, H, threads, rounds, steps, own_pool):
    context = multiprocessing.get_context("spawn")
    sides = {}
    for which in ("fastseq", "torch"):
        ours, theirs = context.Pipe()
        process = context.Process(target=worker, args=(theirs, which, T, B, H, threads, own_pool))
        process.start()
        sides[which] = (process, ours, [])
    try:
        for _, conn, _ in sides.values():
            if conn.recv() != "ready":
                raise RuntimeError("a worker did not start")
        order = list(sides.values())
        for r in range(rounds):
            for _, conn, times in (order if r % 2 == 0 else order[::-1]):
                time.sleep(0.05)  # let the other side's idle threads stop spinning
                conn.send(steps)
                times.append(conn.recv())
    finally:
        for process, conn, _ in sides.values():
            try:
                conn.send(None)
            except OSError:
                pass
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    t_ours, t_theirs = sides["fastseq"][2], sides["torch"][2]
    ratios = [b / a for a, b in zip(t_ours, t_theirs)]
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {
        "T": T, "B": B, "H": H, "threads": threads, "rounds": rounds, "steps": steps,
        "fastseq_ms": 1e3 * statistics.median(t_ours),
        "torch_ms": 1e3 * statistics.median(t_theirs),
        "ratio_median": statistics.median(ratios),
        "ratio_q1": quartiles[0], "ratio_q3": quartiles[2],
        "ratio_min": min(ratios), "ratio_max": max(ratios), "ratios": ratios,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--own-pool", action="store_true",
                        help="run fastseq's teams on its own pool, not on torch's threads")
    parser.add_argument("--cases", nargs="+", metavar="T,B,H",
                        help="the shapes to time (default: " +
                        " ".join(",".join(map(str, c)) for c in CASES) + ")")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    if args.rounds < 1 or args.steps < 1 or min(args.threads) < 1:
        parser.error("--rounds, --steps and --threads must be >= 1")
    try:
        cases = [tuple(int(v) for v in c.split(",")) for c in args.cases] if args.cases else CASES
    except ValueError:
        parser.error("--cases takes T,B,H triples of integers, e.g. 50,16,256")
    if any(len(c) != 3 or min(c) < 1 for c in cases):
        parser.error("--cases takes T,B,H triples of positive integers, e.g. 50,16,256")
    print(f"fastseq's teams on {'fastseq' if args.own_pool else 'torch'}'s threads; "
          "each model in its own process")
    results = []
    print("| T,B,H=I | threads | fastseq.torch ms | torch.nn ms | torch/fastseq median | IQR | min-max |")
    print("|---|---:|---:|---:|---:|---|---|")
    for threads in args.threads:
        for T, B, H in cases:
            r = measure(T, B, H, threads, args.rounds, args.steps, args.own_pool)
            results.append(r)
            print(f"| {T},{B},{H} | {threads} | {r['fastseq_ms']:.2f} | {r['torch_ms']:.2f} "
                  f"| {r['ratio_median']:.2f}x | {r['ratio_q1']:.2f}-{r['ratio_q3']:.2f} "
                  f"| {r['ratio_min']:.2f}-{r['ratio_max']:.2f} |",
                  flush=True)
    if args.json:
        import fastseq
        import torch

        with open(args.json, "w") as f:
            env = {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
            json.dump({"torch": torch.__version__, "fastseq": fastseq.__version__,
                       "teams_on_torch_threads": not args.own_pool, "separate_processes": True,
                       "environment": env, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
