"""What a batch-1 call is made of, against its bandwidth bound ("%BW" of python -m fastseq.bench).

    python bench/bound_parts.py                                   (LSTMP (25,1,1024,1024), P = 256)
    python bench/bound_parts.py --cell lstm --config 25,1,512,512 --threads 1 2 --rounds 9

The bound (fastseq.bench.bandwidth) is the time to stream the recurrent weights (W_hh, and
W_hr with a projection) once per step. A call must also do the input projection Gx = X·W_ihᵀ,
2·T·B·I·G·H FLOPs, which the bound leaves out. Each round times, in alternation:

  call       the layer call of the case (python -m fastseq.bench's own)
  I=1        the same call with one input feature: the projection costs next to nothing,
             so this is the steps, their packing and epilogues, and the call's overhead
  bound      T GEMVs of the recurrent weights (2·T in training)
  sgemm      a 2048³ SGEMM, the compute yardstick

and prints their medians (interquartile range), %BW of both calls, and the projection's
floor: its FLOPs at the SGEMM rate of the same round, as a fraction of the bound. A call
cannot take less than (the steps) + (that floor), so the %BW it can reach is at most
bound / (I=1 call + floor), and at most bound / floor however fast the steps are.
"""
from __future__ import annotations

import argparse

from fastseq.bench import bandwidth, timing
from fastseq.bench.cases import CELLS, Case
from fastseq.bench.stats import Spread, per_round_ratios


def measure(case: Case, rounds: int, budget: float) -> dict[str, list[float]]:
    bare = Case(case.cell, case.T, case.B, 1, case.H, case.mode, case.threads, P=case.P)
    with timing.pinned_threads(case.threads):
        calls = {"call": timing.fastseq_call(case, "cpp"), "I=1": timing.fastseq_call(bare, "cpp")}
        calls["bound"], _ = bandwidth.gemv_call(case)
        calls["sgemm"], sgemm_flops = timing.sgemm_call()
        # On more than one thread NumPy's OpenBLAS workers spin for ~150 ms after a call,
        # on the CPUs fastseq's team wants: the next call waits them out (as the bench does).
        settle = 0.2 if case.threads > 1 else 0.0
        settle_after = {"bound": settle, "sgemm": settle}
        per = {name: [] for name in calls}
        for _ in range(rounds):
            medians = timing.alternating_medians(calls, budget, pause=0.02, min_rounds=3,
                                                 max_rounds=20, settle_after=settle_after)
            for name, seconds in medians.items():
                per[name].append(seconds)
    G = CELLS[case.cell]
    projection_flops = 2.0 * case.T * case.B * case.I * G * case.H
    passes = 3.0 if case.mode == "training" else 1.0  # forward, dx and dW_ih: three products
    per["floor"] = [passes * projection_flops * s / sgemm_flops for s in per["sgemm"]]
    per["gflops"] = [sgemm_flops / s / 1e9 for s in per["sgemm"]]
    return per


def report(case: Case, per: dict[str, list[float]]) -> None:
    print(f"{case.cell} {','.join(map(str, case.config))} {case.mode}, {case.threads} thread(s), "
          f"{len(per['call'])} rounds; median (interquartile range)")
    for name, what in (("call", "the call"), ("I=1", "the call at I = 1"),
                       ("bound", "the bound"), ("floor", "the projection at the SGEMM rate")):
        ms = Spread.of(per[name]).scaled(1e3)
        print(f"  {what:34s} {ms.median:8.3f} ms ({ms.q1:.3f}-{ms.q3:.3f})")
    g = Spread.of(per["gflops"])
    print(f"  {'SGEMM yardstick':34s} {g.median:8.1f} GFLOP/s ({g.q1:.1f}-{g.q3:.1f})")
    steps_and_floor = [s + f for s, f in zip(per["I=1"], per["floor"])]
    for label, numerator, denominator in (
            ("%BW of the call", per["bound"], per["call"]),
            ("%BW of the call at I = 1", per["bound"], per["I=1"]),
            ("projection floor / bound", per["floor"], per["bound"]),
            ("%BW at most, the steps as now", per["bound"], steps_and_floor)):
        pct = Spread.of(per_round_ratios(numerator, denominator)).scaled(100)
        print(f"  {label:34s} {pct.median:7.0f} % ({pct.q1:.0f}-{pct.q3:.0f})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", default="lstmp", choices=sorted(CELLS))
    parser.add_argument("--config", default="25,1,1024,1024,256", metavar="T,B,I,H[,P]")
    parser.add_argument("--mode", default=["inference"], nargs="+",
                        choices=["inference", "training"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--budget", type=float, default=1.5, help="seconds per round")
    args = parser.parse_args(argv)
    T, B, I, H, *rest = (int(v) for v in args.config.split(","))
    P = rest[0] if rest else 0
    if (args.cell == "lstmp") != bool(P):
        parser.error("--config: lstmp takes T,B,I,H,P (P > 0); the other cells T,B,I,H")
    if B != 1:
        parser.error("--config: the bound is a batch-1 figure (B = 1)")
    for mode in args.mode:
        for threads in args.threads:
            case = Case(args.cell, T, B, I, H, mode, threads, P=P)
            report(case, measure(case, args.rounds, args.budget))


if __name__ == "__main__":
    main()
