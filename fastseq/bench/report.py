"""Turning measured rows into the printed table, a JSON file and a plot."""
from __future__ import annotations

import json


def _ms(seconds):
    return "-" if seconds is None else f"{1e3 * seconds:.3f}"


def _ratio(other, ours):
    return "-" if other is None or ours is None else f"{other / ours:.2f}x"


def table(rows: list[dict]) -> str:
    """A fixed-width table: one line per case. SGEMM is the yardstick's GFLOP/s in the
    case's own rounds, the denominator of %SGEMM."""
    head = (f"{'cell':<5} {'T':>4} {'B':>3} {'I':>5} {'H':>5} {'mode':<9} {'thr':>3} "
            f"{'ms':>9} {'GFLOP/s':>8} {'SGEMM':>6} {'%SGEMM':>7} {'vs ref':>8} {'vs numba':>8} {'vs torch':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['cell']:<5} {r['T']:>4} {r['B']:>3} {r['I']:>5} {r['H']:>5} {r['mode']:<9} "
            f"{r['threads']:>3} {_ms(r['fastseq_s']):>9} {r['gflops']:>8.1f} "
            f"{r['sgemm_gflops']:>6.0f} {r['pct_sgemm']:>6.1f}% {_ratio(r.get('reference_s'), r['fastseq_s']):>8} "
            f"{_ratio(r.get('numba_s'), r['fastseq_s']):>8} {_ratio(r.get('torch_s'), r['fastseq_s']):>8}"
        )
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    """The same rows as a Markdown table (what the README's speed table is)."""
    def ms(seconds):
        return f"{1e3 * seconds:.3g}"

    head = ("| cell | T,B,I,H | mode | threads | ms | GFLOP/s | SGEMM GFLOP/s | % SGEMM "
            "| vs numba | vs torch |")
    lines = [head, "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['cell']} | {r['T']},{r['B']},{r['I']},{r['H']} | {r['mode']} | {r['threads']} "
            f"| {ms(r['fastseq_s'])} | {r['gflops']:.0f} | {r['sgemm_gflops']:.0f} "
            f"| {r['pct_sgemm']:.0f}% "
            f"| {_ratio(r.get('numba_s'), r['fastseq_s']).replace('x', '×')} "
            f"| {_ratio(r.get('torch_s'), r['fastseq_s']).replace('x', '×')} |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    """Geometric-mean speedups and the slowest case against each comparison."""
    import math

    out = []
    for key, name in (("torch_s", "torch"), ("numba_s", "numba"), ("reference_s", "reference")):
        ratios = [r[key] / r["fastseq_s"] for r in rows if r.get(key)]
        if ratios:
            geo = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
            worst = min(ratios)
            out.append(f"speedup vs {name}: geometric mean {geo:.2f}x, lowest {worst:.2f}x "
                       f"over {len(ratios)} cases")
    return "\n".join(out)


def write_json(path: str, config: dict, sgemm: dict, rows: list[dict], overhead_us: float) -> None:
    with open(path, "w") as f:
        json.dump({"config": config, "sgemm_gflops": sgemm, "overhead_us": overhead_us,
                   "cases": rows}, f, indent=2)


def plot(path: str, rows: list[dict]) -> None:
    """Speedup over torch (or, without torch, over the reference) per case, as bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = "torch_s" if any(r.get("torch_s") for r in rows) else "reference_s"
    labels = [f"{r['cell']} {r['T']},{r['B']},{r['H']} {r['mode'][:5]} {r['threads']}t" for r in rows]
    values = [(r[key] / r["fastseq_s"]) if r.get(key) else 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(10, max(3, 0.28 * len(rows))))
    ax.barh(range(len(rows)), values, color=["tab:green" if v >= 1 else "tab:red" for v in values])
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"speedup of fastseq over {key[:-2]} (higher is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
