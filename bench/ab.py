"""A/B speed of two fastseq builds, each in its own process, alternating A-B-A-B.

The regression rule of the cell-contract and performance issues: the old and the new build
installed side by side (two environments, or two source trees with their built extension),
timed in separate processes, alternating over >= 7 rounds; each case's time is divided by
a float32 SGEMM of a fixed size timed in the same process and round, so that a host whose
load moves between rounds moves both. Ratios are printed as A/B (old/new) of the
SGEMM-normalised times, paired by round: above 1 the new build is faster. A case regresses
when that median is below 0.97 and the interquartile ranges of the two sides' normalised
times do not overlap.

    python bench/ab.py --a /path/to/old/tree --b /path/to/new/tree --rounds 9
    python bench/ab.py --a-python /venvA/bin/python --b-python /venvB/bin/python

A tree is put first on PYTHONPATH (it must hold ``fastseq/`` with its built ``_core``); a
python is an interpreter with fastseq installed. Environment variables the child should see
(FASTSEQ_ISA, OPENBLAS_CORETYPE) pass through: set them on this command; --a-env and
--b-env set one side's only (one build under two settings).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

#: (cell, T, B, H, mode, threads). Cells as fastseq.cells names; lstmp has P = H / 4.
DEFAULT_CASES = [
    (cell, T, B, H, mode, threads)
    for cell, T, B, H in [
        ("lstm", 25, 1, 512), ("lstm", 25, 16, 512), ("lstm", 50, 16, 256),
        ("lstm", 50, 64, 512), ("gru", 25, 16, 512), ("rnn_tanh", 50, 64, 512),
        ("gru_reset_before", 25, 16, 512), ("rnn_tanh", 25, 1, 512), ("lstmp", 25, 16, 512),
    ]
    for mode in ("inference", "training")
    for threads in (1, 2)
]

_CHILD = r"""
import json, sys, time
import numpy as np
import fastseq
from fastseq import functional as F
try:
    from fastseq.cells import CELLS
    # (family, gates, the family call's option); the LSTM's option (projection) is no
    # keyword (w_hr is), and these cases have none.
    CELLS = {name: (c.family, c.gates, dict([c.option]) if c.option and c.family != "lstm" else {})
             for name, c in CELLS.items()}
except ImportError:  # a build from before fastseq/cells.py (the cell contract)
    CELLS = {"rnn_tanh": ("rnn", 1, {"nonlinearity": "tanh"}),
             "rnn_relu": ("rnn", 1, {"nonlinearity": "relu"}),
             "lstm": ("lstm", 4, {}), "gru": ("gru", 3, {"reset_after": True}),
             "gru_reset_before": ("gru", 3, {"reset_after": False})}
spec = json.loads(sys.argv[1])
reps = spec["reps"]

def best(fn):
    fn()
    t = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); t = min(t, time.perf_counter() - t0)
    return t

rng = np.random.default_rng(0)
a = rng.standard_normal((512, 512), dtype=np.float32)
b = rng.standard_normal((512, 512), dtype=np.float32)
out = {"where": fastseq.__file__, "cases": []}
for cell_name, T, B, H, mode, threads in spec["cases"]:
    fastseq.set_num_threads(threads)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(threads):
        sgemm = best(lambda: a @ b)
    # lstmp: the LSTM with a projection of P = H / 4 (w_hr, a keyword of lstm_forward).
    family, G, kw = CELLS["lstm" if cell_name == "lstmp" else cell_name]
    P = H // 4 if cell_name == "lstmp" else H  # the width of h
    x = rng.standard_normal((T, B, H), dtype=np.float32) * 0.5
    w_ih = rng.standard_normal((G * H, H), dtype=np.float32) / H ** 0.5
    w_hh = rng.standard_normal((G * H, P), dtype=np.float32) / P ** 0.5
    if cell_name == "lstmp":
        kw = {"w_hr": rng.standard_normal((P, H), dtype=np.float32) / H ** 0.5}
    b_ih = np.zeros(G * H, np.float32); b_hh = np.zeros(G * H, np.float32)
    fwd = getattr(F, family + "_forward")
    bwd = getattr(F, family + "_backward")
    dy = np.ones((T, B, P), np.float32)
    if mode == "inference":
        fn = lambda: fwd(x, w_ih, w_hh, b_ih, b_hh, training=False, **kw)
    else:
        def fn():
            res = fwd(x, w_ih, w_hh, b_ih, b_hh, training=True, **kw)
            bwd(res[-1], dy)
    out["cases"].append({"t": best(fn), "sgemm": sgemm})
print(json.dumps(out))
"""


def _child(python: str, tree: str | None, cases, reps: int, extra_env: list) -> dict:
    env = dict(os.environ)
    env.update(item.split("=", 1) for item in extra_env)
    if tree:
        env["PYTHONPATH"] = tree + os.pathsep + env.get("PYTHONPATH", "")
    spec = json.dumps({"cases": cases, "reps": reps})
    res = subprocess.run([python, "-c", _CHILD, spec], env=env, capture_output=True, text=True,
                         cwd="/", check=False)
    if res.returncode != 0:
        sys.exit(f"child failed ({python}, {tree}):\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", help="old source tree (put first on PYTHONPATH)")
    ap.add_argument("--b", help="new source tree")
    ap.add_argument("--a-python", default=sys.executable)
    ap.add_argument("--b-python", default=sys.executable)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--reps", type=int, default=5, help="timings per case per round (best kept)")
    ap.add_argument("--cases", help="JSON list of [cell, T, B, H, mode, threads]")
    ap.add_argument("--json", help="write every round's times here")
    ap.add_argument("--a-env", action="append", default=[], metavar="NAME=VALUE",
                    help="an environment variable for A's processes only (repeatable): "
                         "one build A/B under two settings")
    ap.add_argument("--b-env", action="append", default=[], metavar="NAME=VALUE")
    args = ap.parse_args(argv)
    cases = json.loads(args.cases) if args.cases else DEFAULT_CASES
    runs = {"a": [], "b": []}
    for r in range(args.rounds):
        for side in ("a", "b") if r % 2 == 0 else ("b", "a"):
            tree = args.a if side == "a" else args.b
            python = args.a_python if side == "a" else args.b_python
            extra_env = args.a_env if side == "a" else args.b_env
            runs[side].append(_child(python, tree, cases, args.reps, extra_env))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"A: {runs['a'][0]['where']} {' '.join(args.a_env)}\n"
          f"B: {runs['b'][0]['where']} {' '.join(args.b_env)}")
    print(f"{'case':42s} {'A ms':>8s} {'B ms':>8s}  A/B (SGEMM-normalised): q1  median  q3   verdict")
    worst = []
    for i, case in enumerate(cases):
        na = np.array([run["cases"][i]["t"] / run["cases"][i]["sgemm"] for run in runs["a"]])
        nb = np.array([run["cases"][i]["t"] / run["cases"][i]["sgemm"] for run in runs["b"]])
        ratio = na / nb  # paired by round: A and B ran back to back
        q1, med, q3 = np.percentile(ratio, [25, 50, 75])
        aq = np.percentile(na, [25, 75]); bq = np.percentile(nb, [25, 75])
        overlap = not (bq[0] > aq[1] or aq[0] > bq[1])
        verdict = "REGRESSED" if med < 0.97 and not overlap else (
            "faster" if med > 1.03 and not overlap else "same")
        ta = np.median([run["cases"][i]["t"] for run in runs["a"]]) * 1e3
        tb = np.median([run["cases"][i]["t"] for run in runs["b"]]) * 1e3
        name = "{} ({},{},{}) {} {}t".format(*case)
        print(f"{name:42s} {ta:8.2f} {tb:8.2f}  {q1:5.2f}  {med:5.2f}  {q3:5.2f}   {verdict}")
        worst.append(med)
    print(f"geometric mean A/B: {np.exp(np.mean(np.log(worst))):.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cases": cases, "runs": runs}, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
