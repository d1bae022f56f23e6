"""Command line: ``python -m fastseq.experiments NAME [--quick] [--out DIR] [--seed N]``."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from . import EXPERIMENTS, run_experiment
from ._run import PLOT_MISSING, have_matplotlib


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastseq.experiments",
        description="Measure the textbook claims about RNN, LSTM and GRU with fastseq. Each "
                    "experiment writes NAME.json, NAME.md and NAME.png into --out.")
    parser.add_argument("name", choices=[*EXPERIMENTS, "all"])
    parser.add_argument("--quick", action="store_true",
                        help="smaller budgets: `all --quick` takes under 5 minutes on 2 cores")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # CI: seconds
    parser.add_argument("--out", default="experiments", help="output directory (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1,
                        help="fastseq threads, and NumPy's BLAS threads when threadpoolctl is "
                             "installed (default: %(default)s; the models are small and on a "
                             "shared host one thread is the steadier choice)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)
    import fastseq

    fastseq.set_num_threads(args.threads)
    limit_blas(args.threads)
    size = "smoke" if args.smoke else "quick" if args.quick else "full"
    names = list(EXPERIMENTS) if args.name == "all" else [args.name]
    if not have_matplotlib():
        print(f"fastseq.experiments: {PLOT_MISSING}; writing JSON and markdown only",
              file=sys.stderr)
    start = time.perf_counter()
    for name in names:
        run_experiment(name, size, args.seed, args.out, progress=not args.no_progress)
        written = [e for e in ("json", "md", "png")
                   if os.path.exists(os.path.join(args.out, f"{name}.{e}"))]
        print(f"{name}: wrote {os.path.join(args.out, name)}.{{{','.join(written)}}}",
              file=sys.stderr)
    if args.name == "all":
        write_index(args.out, names, size, args.seed, time.perf_counter() - start)
        print(f"index: {os.path.join(args.out, 'index.md')}", file=sys.stderr)
    return 0


def limit_blas(threads: int) -> None:
    """Cap NumPy's BLAS (the heads, the losses) at ``threads`` too. Left alone, OpenBLAS
    spins up a thread per core for the small products of the models' heads; on a shared
    2-core host that made the copy task 5-8x slower (245 against 30 ms per step for its five
    runs at T = 25, measured with one core busy elsewhere)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("fastseq.experiments: NumPy's BLAS threads are not capped (`pip install "
              "threadpoolctl` caps them at --threads); on a busy host `memory` can run "
              "several times slower", file=sys.stderr)
        return
    threadpool_limits(limits=threads, user_api="blas")


def write_index(out: str, names: list, size: str, seed: int, seconds: float) -> None:
    """index.md: every experiment's summary (with its plot) in order, and the run's time."""
    flag = {"full": "", "quick": " --quick", "smoke": " --smoke"}[size]
    import fastseq

    flag += f" --seed {seed} --threads {fastseq.get_num_threads()}"
    parts = [f"# fastseq experiments\n\n`python -m fastseq.experiments all{flag}` "
             f"took {seconds / 60:.1f} minutes.\n"]
    for name in names:
        with open(os.path.join(out, f"{name}.md")) as f:
            parts.append("#" + f.read())  # each summary's title becomes a section
    with open(os.path.join(out, "index.md"), "w") as f:
        f.write("\n".join(parts))
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump({"command": f"python -m fastseq.experiments all{flag}",
                   "seconds": round(seconds, 1), "experiments": names}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
