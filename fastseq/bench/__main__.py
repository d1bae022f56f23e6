"""``python -m fastseq.bench``: fastseq against its other backends and PyTorch.

Prints the machine, ISA, threads and BLAS, then one line per (cell, config, mode,
threads): median milliseconds (fastseq and torch timed call by call in alternation, the
Numba and reference backends apart: see timing.alternating_medians), GFLOP/s, the
percentage of a 2048³ SGEMM rate timed in the same rounds at the same thread count, and
fastseq's speedup over the reference, Numba and torch backends (when installed). Ratios
taken in one run on one machine are the figures to compare; absolute times move with the
machine's load.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import fastseq

from ..config import config_text
from . import cases as cases_mod
from . import report, timing
from .overhead import layer_call_overhead_us


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m fastseq.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="two configurations, about a minute")
    p.add_argument("--cells", nargs="+", choices=list(cases_mod.CELLS), help="cells to run (default: all)")
    p.add_argument("--threads", nargs="+", type=int, help="thread counts (default: 1 and the CPUs available)")
    p.add_argument("--backend", default=None, help="fastseq backend measured (default: the best available)")
    p.add_argument("--no-reference", action="store_true", help="skip the slow NumPy reference")
    p.add_argument("--no-torch", action="store_true", help="skip torch even when installed")
    p.add_argument("--budget", type=float, default=None, help="seconds of repeats per measurement")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    p.add_argument("--plot", metavar="FILE.png", help="also plot speedups (needs matplotlib)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = args.threads or sorted({1, min(cpus, 2)})
    budget = args.budget if args.budget is not None else (0.15 if args.quick else 0.5)
    # --budget 0 is a smoke run: no pauses
    pause, settle = (0.0, 0.0) if args.budget == 0 else (0.02, 0.2)
    backend = args.backend or fastseq.available_backends()[0]
    others = [b for b in ("numba", "reference") if b != backend and b in fastseq.available_backends()]
    if args.no_reference and "reference" in others:
        others.remove("reference")
    use_torch = not args.no_torch and timing.torch_version() is not None
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("--plot needs matplotlib (pip install matplotlib)", file=sys.stderr)
            return 2

    config = fastseq.show_config(mode="dicts")
    print(config_text(config))
    print(f"measuring backend {backend!r}; compared with {others + (['torch'] if use_torch else [])}")
    sgemm = {n: timing.sgemm_rate(n) for n in threads}
    for n, rate in sgemm.items():
        print(f"SGEMM 2048^3 (OpenBLAS via NumPy), {n} thread(s): {rate:.1f} GFLOP/s alone; "
              "each case's % SGEMM uses the SGEMM timed in its own rounds")
    print(flush=True)
    sgemm_fn, sgemm_flops = timing.sgemm_call()

    rows = []
    for case in cases_mod.grid(args.quick, threads, args.cells):
        with timing.pinned_threads(case.threads):
            # The SGEMM yardstick, fastseq and torch call by call in alternation: the host's
            # load drifts over seconds, and these are the ratios that matter (the % SGEMM
            # column and vs torch). The SGEMM's idle NumPy-BLAS workers spin for ~150 ms
            # after a threaded call: the round waits them out before fastseq's turn. The
            # Numba and reference backends also use NumPy's BLAS: timed apart, after them.
            calls = {"sgemm": sgemm_fn, "fastseq": timing.fastseq_call(case, backend)}
            if use_torch:
                calls["torch"] = timing.torch_call(case)
            time.sleep(settle)  # the previous case's Numba or reference calls
            medians = timing.alternating_medians(
                calls, budget, pause=pause,
                settle_after={"sgemm": settle if case.threads > 1 else pause})
            case_sgemm = sgemm_flops / medians.pop("sgemm") / 1e9
            for other in others:
                if other != "reference":
                    medians[other] = timing.median_seconds(
                        timing.fastseq_call(case, other), budget, settle=settle)
            ours = medians.pop("fastseq")
            row = {"cell": case.cell, "T": case.T, "B": case.B, "I": case.I, "H": case.H,
                   "mode": case.mode, "threads": case.threads, "backend": backend,
                   "fastseq_s": ours, "gflops": case.flops / ours / 1e9,
                   "sgemm_gflops": case_sgemm,
                   "pct_sgemm": 100.0 * case.flops / ours / 1e9 / case_sgemm}
            row.update({f"{name}_s": seconds for name, seconds in medians.items()})
            if "reference" in others:
                # the reference is slow: a few calls are enough for a ratio
                row["reference_s"] = timing.median_seconds(
                    timing.fastseq_call(case, "reference"), 0.0, settle=settle)
        rows.append(row)
        print(report.table([row]).splitlines()[-1] if len(rows) > 1 else report.table([row]), flush=True)

    print()
    print(report.summary(rows))
    overhead = layer_call_overhead_us(backend)
    print(f"per-call overhead, LSTM layer in eval mode at T=1, B=1, I=H=32 ({backend}): "
          f"{overhead:.1f} us")
    if args.json:
        report.write_json(args.json, config, sgemm, rows, overhead_us=overhead)
        print(f"wrote {args.json}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(report.markdown(rows) + "\n")
        print(f"wrote {args.markdown}")
    if args.plot:
        report.plot(args.plot, rows)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
