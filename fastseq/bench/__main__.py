"""``python -m fastseq.bench``: fastseq against its other backends, PyTorch and ONNX Runtime.

Prints the machine, ISA, threads and BLAS, then one line per (cell, config, mode,
threads). Each case is timed in rounds (at least --rounds, default 7): every round times
fastseq, torch, ONNX Runtime (inference only), a 2048³ SGEMM (the compute yardstick) and,
at batch 1, T GEMVs of a W_hh-sized matrix (the bandwidth bound: fastseq.bench.bandwidth)
call by call, so that every ratio is taken per round under the same load. Columns: median
ms and GFLOP/s; "%SGEMM" (the case's GFLOP/s over the yardstick's in the same round) and
"%BW" (the bound's time over fastseq's, B = 1 only), median and interquartile range;
"vs torch" and "vs ORT", the competitor's time over fastseq's per round (above 1: fastseq
is faster), median and interquartile range, and a verdict: "faster" when the median
ratio is >= 1.0 and its lower quartile >= 0.95, "slower" when the median is < 1.0 and the
upper quartile < 1/0.95, "unclear" otherwise. The Numba backend (its products use NumPy's
OpenBLAS, whose idle workers spin for 150 ms) is timed against fastseq in rounds of its
own, and the slow NumPy reference in 3 such rounds.

After the table: the per-call overhead (a tiny LSTM layer call, fastseq.bench.overhead)
and one step at a time (an LSTM at H = 512 fed one step per call with its state passed
back, against torch's LSTMCell, in alternating rounds: fastseq.bench.streaming).

A "!" line under a row is a warning: the SGEMM yardstick moved by more than --margin
across the case's rounds, a ratio or percentage is implausible (it is also marked "!"),
or the 2-thread SGEMM was no faster than the 1-thread one (the host's load moved).

    --cases SEL [SEL ...]   rows to run, e.g. "cell=lstm B=1" "mode=training threads=2"
                            (keys cell, mode, threads, T, B, I, H, shape=TxBxIxH; terms
                            AND, comma-separated values OR, several selectors: union)
    --json NEW.json         save the run (with every round's times)
    --compare OLD.json      then print each case's change against a saved run
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import fastseq

from ..config import config_text
from . import bandwidth, compare, report, stats, timing
from . import cases as cases_mod
from . import ort as ort_mod
from .overhead import layer_call_overhead_us
from .streaming import describe as describe_streaming, streaming_step
from .select import parse_selector, parse_shape, select


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m fastseq.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="two of the five configurations")
    p.add_argument("--cells", nargs="+", choices=list(cases_mod.CELLS), help="cells to run (default: all)")
    p.add_argument("--threads", nargs="+", type=int, help="thread counts (default: 1 and the CPUs available)")
    p.add_argument("--backend", default=None, help="fastseq backend measured (default: the best available)")
    p.add_argument("--no-reference", action="store_true", help="skip the slow NumPy reference")
    p.add_argument("--no-torch", action="store_true", help="skip torch even when installed")
    p.add_argument("--no-ort", action="store_true", help="skip ONNX Runtime even when installed")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds of rounds per call timed, beyond --rounds (default 0.5, --quick 0.15)")
    p.add_argument("--rounds", type=int, default=stats.VERDICT_MIN_ROUNDS,
                   help=f"minimum rounds per case (default {stats.VERDICT_MIN_ROUNDS}; "
                        "fewer gives no verdict)")
    p.add_argument("--max-rounds", type=int, default=50, help="maximum rounds per case")
    p.add_argument("--margin", type=float, default=stats.YARDSTICK_MARGIN,
                   help="flag a case whose SGEMM yardstick moved more than this fraction "
                        f"(max/min - 1) across its rounds (default {stats.YARDSTICK_MARGIN})")
    p.add_argument("--cases", nargs="+", metavar="SEL", help="select rows (see above)")
    p.add_argument("--configs", nargs="+", metavar="T,B,I,H[,P]",
                   help="configurations to run instead of the grid's")
    p.add_argument("--sgemm-size", type=int, default=2048, help="n of the n³ SGEMM yardstick")
    p.add_argument("--compare", metavar="OLD.json", help="print the change against a saved --json run")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    p.add_argument("--plot", metavar="FILE.png", help="also plot speedups (needs matplotlib)")
    args = p.parse_args(argv)
    try:
        for selector in args.cases or []:
            parse_selector(selector)
        args.configs = [parse_shape(c) for c in args.configs] if args.configs else None
    except ValueError as e:
        p.error(str(e))
    if args.rounds < 1 or args.max_rounds < args.rounds:
        p.error(f"--rounds must be >= 1 and <= --max-rounds; got {args.rounds}, {args.max_rounds}")
    return args


class Run:
    """What every case of one run shares: the backends, competitors and timing settings."""

    def __init__(self, args, backend, others, use_torch, use_ort):
        self.args, self.backend, self.others = args, backend, others
        self.use_torch, self.use_ort = use_torch, use_ort
        self.budget = args.budget if args.budget is not None else (0.15 if args.quick else 0.5)
        # --budget 0 is a smoke run: no pauses
        self.pause, self.settle = (0.0, 0.0) if args.budget == 0 else (0.02, 0.2)
        self.sgemm_fn, self.sgemm_flops = timing.sgemm_call(args.sgemm_size)

    def rounds(self, calls, settle_after, min_rounds=None, max_rounds=None, budget=None):
        return timing.alternating_rounds(
            calls, self.budget if budget is None else budget, pause=self.pause,
            min_rounds=min_rounds or self.args.rounds,
            max_rounds=max_rounds or self.args.max_rounds, settle_after=settle_after)

    def blas_settle(self, threads):
        """The sleep after a call into NumPy's OpenBLAS: its idle workers spin for about
        150 ms after a threaded call, none after a 1-thread one."""
        return self.settle if threads > 1 else self.pause


def measure(run: Run, case: cases_mod.Case) -> dict:
    """One case: its rounds (fastseq, torch, ORT, SGEMM, GEMV bound), then fastseq
    against Numba and against the reference in rounds of their own; the row."""
    fastseq_fn = timing.fastseq_call(case, run.backend)
    calls = {"fastseq": fastseq_fn}
    problems = []
    x, _ = timing.case_inputs(case)
    module = timing.torch_module(case) if run.use_torch else None
    if module is not None:
        calls["torch"] = timing.torch_call(case, module)
    if run.use_ort and case.mode == "inference":
        try:
            calls["ort"], _ = ort_mod.ort_call(case, module, x)
        except Exception as e:  # a competitor that fails to build must not end the run
            problems.append(f"ONNX Runtime not timed: {type(e).__name__}: {e}")
    # The SGEMM and GEMV use the same OpenBLAS pool, back to back; the round waits its
    # idle workers out after the last of them, before fastseq's turn.
    calls["sgemm"] = run.sgemm_fn
    settle_after = {"sgemm": run.blas_settle(case.threads)}
    if case.B == 1:
        calls["gemv"], gemv_bytes = bandwidth.gemv_call(case)
        settle_after = {"sgemm": run.pause, "gemv": run.blas_settle(case.threads)}
    time.sleep(run.settle)  # the previous case's Numba or reference calls
    rounds = run.rounds(calls, settle_after)
    f = np.asarray(rounds["fastseq"])
    sgemm_rates = run.sgemm_flops / np.asarray(rounds["sgemm"]) / 1e9
    row = {"cell": case.cell, "T": case.T, "B": case.B, "I": case.I, "H": case.H, "P": case.P,
           "mode": case.mode, "threads": case.threads, "backend": run.backend,
           "fastseq_s": float(np.median(f)), "gflops": case.flops / float(np.median(f)) / 1e9,
           "sgemm_gflops": float(np.median(sgemm_rates)),
           "pct_sgemm": stats.Spread.of(100 * case.flops / f / 1e9 / sgemm_rates).as_dict(),
           "pct_bw": None, "ratios": {}, "verdicts": {}}
    if case.B == 1:
        g = np.asarray(rounds["gemv"])
        row["pct_bw"] = stats.Spread.of(100 * g / f).as_dict()
        row["gemv_gbps"] = float(np.median(gemv_bytes / g / 1e9))
    for name in ("torch", "ort"):
        if name in rounds:
            spread = stats.Spread.of(stats.per_round_ratios(rounds[name], f))
            row[f"{name}_s"] = float(np.median(rounds[name]))
            row["ratios"][name] = spread.as_dict()
            row["verdicts"][name] = stats.verdict(spread)  # no verdict below 7 rounds
    for other in run.others:
        if case.P and not getattr(fastseq.backends.backend_module(other), "PROJECTION", False):
            problems.append(f"{other} not timed: it has no LSTM projection")
            continue
        # Numba's products and the reference's use NumPy's OpenBLAS: paired with fastseq
        # in rounds of their own, waiting its workers out; the reference is slow, 3 rounds.
        slow = other == "reference"
        pair = run.rounds({"fastseq": fastseq_fn, other: timing.fastseq_call(case, other)},
                          {other: run.blas_settle(case.threads)},
                          min_rounds=3 if slow else None, max_rounds=3 if slow else None,
                          budget=0.0 if slow else None)
        rounds[f"{other}_fastseq"], rounds[other] = pair["fastseq"], pair[other]
        row[f"{other}_s"] = float(np.median(pair[other]))
        row["ratios"][other] = stats.Spread.of(
            stats.per_round_ratios(pair[other], pair["fastseq"])).as_dict()
    row["rounds"] = {name: [float(t) for t in times] for name, times in rounds.items()}
    row["flags"] = problems + stats.case_flags(row, run.args.margin)
    return row


def main(argv=None) -> int:
    args = parse(argv)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = args.threads or sorted({1, min(cpus, 2)})
    backend = args.backend or fastseq.available_backends()[0]
    others = [b for b in ("numba", "reference") if b != backend and b in fastseq.available_backends()]
    if args.no_reference and "reference" in others:
        others.remove("reference")
    use_torch = not args.no_torch and timing.torch_version() is not None
    ort_reason = "ONNX Runtime skipped: --no-ort" if args.no_ort else ort_mod.unavailable()
    if ort_reason is None and not use_torch:
        ort_reason = "ONNX Runtime skipped: its model is exported from torch, and torch is off (--no-torch)"
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("--plot needs matplotlib (pip install matplotlib)", file=sys.stderr)
            return 2
    old = None
    if args.compare:
        try:
            old = report.read_json(args.compare)
        except (OSError, ValueError) as e:
            print(f"--compare: cannot read {args.compare}: {e}", file=sys.stderr)
            return 2
    case_list = select(cases_mod.grid(args.quick, threads, args.cells, args.configs), args.cases)
    if not case_list:
        print("--cases selected no case of the grid", file=sys.stderr)
        return 2

    config = fastseq.show_config(mode="dicts")
    print(config_text(config))
    competitors = others + (["torch"] if use_torch else []) + ([] if ort_reason else ["onnxruntime"])
    print(f"measuring backend {backend!r}; compared with {competitors}")
    if ort_reason:
        print(ort_reason)
    n = args.sgemm_size
    sgemm = {t: timing.sgemm_rate(t, n) for t in threads}
    for t, rate in sgemm.items():
        print(f"SGEMM {n}^3 (OpenBLAS via NumPy), {t} thread(s): {rate:.1f} GFLOP/s alone; "
              "each case's %SGEMM uses the SGEMM timed in its own rounds")
    for t in threads:
        warning = stats.thread_scaling_flag(sgemm.get(1, 0.0), sgemm[t], t) if 1 in sgemm else None
        if warning:
            print(f"! {warning}")
    print(f"{len(case_list)} cases, at least {args.rounds} rounds each", flush=True)
    print()

    run = Run(args, backend, others, use_torch, ort_reason is None)
    settings = {"rounds": args.rounds, "max_rounds": args.max_rounds, "budget": run.budget,
                "margin": args.margin, "sgemm_size": n, "threads": threads,
                "competitors": competitors, "ort_skipped": ort_reason,
                "environment": {k: os.environ[k] for k in ("FASTSEQ_ISA", "OPENBLAS_CORETYPE")
                                if k in os.environ}}

    def save(rows, overhead=None, streaming=None):
        if args.json:
            report.write_json(args.json, config, sgemm, rows, overhead_us=overhead,
                              settings=settings, streaming=streaming)

    rows = []
    one_thread_sgemm = {}  # (cell, config, mode) -> the 1-thread row's SGEMM median
    print(report.header(), flush=True)
    for case in case_list:
        with timing.pinned_threads(case.threads):
            row = measure(run, case)
        key = (case.cell, case.config, case.mode)
        if case.threads == 1:
            one_thread_sgemm[key] = row["sgemm_gflops"]
        elif key in one_thread_sgemm:
            warning = stats.thread_scaling_flag(one_thread_sgemm[key], row["sgemm_gflops"], case.threads)
            if warning:
                row["flags"].append(warning)
        rows.append(row)
        print(report.line(row), flush=True)
        save(rows)  # after every case: a run stopped half-way keeps what it measured

    print()
    print(report.summary(rows))
    # a smoke run (--budget 0) takes a tenth of the calls
    overhead = layer_call_overhead_us(backend, calls=500 if args.budget == 0 else 5000)
    print(f"per-call overhead, LSTM layer in eval mode at T=1, B=1, I=H=32 ({backend}): "
          f"{overhead:.1f} us")
    with timing.pinned_threads(1):
        stream = streaming_step(backend, steps=5 if args.budget == 0 else 50,
                                budget=max(run.budget, 0.01), min_rounds=args.rounds,
                                with_torch=use_torch)
    print(describe_streaming(stream))
    if args.json:
        save(rows, overhead, stream)
        print(f"wrote {args.json}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(report.markdown(rows) + "\n")
        print(f"wrote {args.markdown}")
    if args.plot:
        report.plot(args.plot, rows)
        print(f"wrote {args.plot}")
    if old is not None:
        text, _ = compare.compare(old["cases"], rows)
        print()
        print(f"against {args.compare} (speedup = old time / new time; normalised: each run's "
              "time divided by its own yardstick, the GEMV bound at B = 1, else the SGEMM)")
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
