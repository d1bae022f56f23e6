"""Turning measured rows into the printed table, Markdown, a JSON file and a plot.

A row (built by ``python -m fastseq.bench``) holds medians for the headline columns and,
for the spreads, per-round data: "rounds" (seconds per round of every call timed in the
case's rounds), "ratios" (per competitor, the stats.Spread of its per-round speedup
competitor/fastseq), "verdicts", "pct_sgemm" and at B = 1 "pct_bw" (Spreads, percent)
and "flags" (stats.case_flags and the thread-scaling warning).
"""
from __future__ import annotations

import json
import re

from . import stats

#: competitors in column order: (key in row["ratios"], column title)
COMPETITORS = (("torch", "vs torch"), ("ort", "vs ORT"), ("numba", "vs numba"),
               ("reference", "vs ref"))
#: competitors whose column shows the interquartile range and the verdict
WITH_VERDICT = ("torch", "ort")
JSON_VERSION = 2


def _ms(seconds):
    return "-" if seconds is None else f"{1e3 * seconds:.3g}"


def _implausible(name: str, median: float) -> bool:
    limit = stats.PLAUSIBLE_LIMIT.get(name, 5.0)
    return not 1.0 / limit <= median <= limit


def ratio_text(row: dict, name: str, x: str = "x") -> str:
    """"1.42x (1.31-1.50)" (median and interquartile range of the per-round speedups),
    "!" after an implausible one, "-" when not measured."""
    spread = row.get("ratios", {}).get(name)
    if spread is None:
        return "-"
    mark = "!" if _implausible(name, spread["median"]) else ""
    if name not in WITH_VERDICT:
        return f"{spread['median']:.2f}{x}{mark}"
    return f"{spread['median']:.2f}{x}{mark} ({spread['q1']:.2f}-{spread['q3']:.2f})"


def percent_text(spread: dict | None) -> str:
    """"63% (58-70)": median and interquartile range, "-" when not measured."""
    if spread is None:
        return "-"
    mark = "!" if spread["median"] > stats.PLAUSIBLE_PERCENT else ""
    return f"{spread['median']:.0f}%{mark} ({spread['q1']:.0f}-{spread['q3']:.0f})"


#: (pattern of a flag's text, its short form in the Markdown table's "flags" column)
_FLAG_TAGS = ((r"^yardstick moved (\d+%)", r"SGEMM moved \1"),
              (r"^vs (\w+) ([\d.]+x) is implausible", r"\1 \2 implausible"),
              (r"^(%\w+) (\d+%) is implausible", r"\1 \2 implausible"),
              (r"^(\d+)-thread SGEMM .*", r"\1t SGEMM ≤ 1t"),
              (r"^ONNX Runtime not timed.*", r"ORT not timed"))


def flag_tag(text: str) -> str:
    """The short form of a flag (stats.case_flags) for a table cell."""
    for pattern, tag in _FLAG_TAGS:
        m = re.match(pattern, text)
        if m:
            return m.expand(tag)
    return text.split(":")[0]


def _shape(r):
    return (f"{_cell(r):<5} {r['T']:>4} {r['B']:>3} {r['I']:>5} {r['H']:>5} {r['mode']:<9} "
            f"{r['threads']:>3}")


def _cell(r: dict) -> str:
    """The cell's name, with its projection size for lstmp (rows saved before P had none)."""
    return f"{r['cell']} P={r['P']}" if r.get("P") else r["cell"]


def header() -> str:
    head = (f"{'cell':<5} {'T':>4} {'B':>3} {'I':>5} {'H':>5} {'mode':<9} {'thr':>3} "
            f"{'ms':>8} {'GFLOP/s':>7} {'SGEMM':>5} {'%SGEMM (IQR)':>15} {'%BW (IQR)':>15} "
            f"{'vs torch (IQR)':>21} {'verdict':<10} {'vs ORT (IQR)':>21} {'verdict':<10} "
            f"{'vs numba':>8} {'vs ref':>8}")
    return head + "\n" + "-" * len(head)


def line(r: dict) -> str:
    """One row of the table, then one indented "!" line per flag."""
    v = r.get("verdicts", {})
    text = (f"{_shape(r)} {_ms(r['fastseq_s']):>8} {r['gflops']:>7.1f} {r['sgemm_gflops']:>5.0f} "
            f"{percent_text(r.get('pct_sgemm')):>15} {percent_text(r.get('pct_bw')):>15} "
            f"{ratio_text(r, 'torch'):>21} {v.get('torch', '-'):<10} "
            f"{ratio_text(r, 'ort'):>21} {v.get('ort', '-'):<10} "
            f"{ratio_text(r, 'numba'):>8} {ratio_text(r, 'reference'):>8}")
    return "\n".join([text] + [f"    ! {flag}" for flag in r.get("flags", [])])


def table(rows: list[dict]) -> str:
    """A fixed-width table: one line per case (and its flags). SGEMM is the yardstick's
    median GFLOP/s in the case's own rounds; %SGEMM and %BW are medians and interquartile
    ranges of per-round percentages; "vs X" is X's time over fastseq's (above 1: fastseq
    is faster), median and interquartile range of the per-round ratios."""
    return "\n".join([header()] + [line(r) for r in rows])


def markdown(rows: list[dict]) -> str:
    """The same rows as a Markdown table (what the README's speed table is)."""
    head = ("| cell | T,B,I,H | mode | thr | ms | GFLOP/s | % SGEMM (IQR) | % BW (IQR) "
            "| vs torch (IQR) | verdict | vs ORT (IQR) | verdict | vs numba | flags |")
    lines = [head, "|---|---|---|---|---:|---:|---:|---:|---:|---|---:|---|---:|---|"]
    for r in rows:
        v = r.get("verdicts", {})
        flags = "; ".join(flag_tag(f) for f in r.get("flags", []))
        lines.append(
            f"| {_cell(r)} | {r['T']},{r['B']},{r['I']},{r['H']} | {r['mode']} | {r['threads']} "
            f"| {_ms(r['fastseq_s'])} | {r['gflops']:.0f} "
            f"| {percent_text(r.get('pct_sgemm'))} | {percent_text(r.get('pct_bw'))} "
            f"| {ratio_text(r, 'torch', '×')} | {v.get('torch', '-')} "
            f"| {ratio_text(r, 'ort', '×')} | {v.get('ort', '-')} "
            f"| {ratio_text(r, 'numba', '×')} | {flags} |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    """Per competitor: the geometric mean and lowest of the median ratios, implausible ones
    left out (and counted: a summary must not carry a flagged ratio without saying so),
    and the verdict counts; then how many rows were flagged."""
    import math
    from collections import Counter

    out = []
    for name, _ in COMPETITORS:
        medians = [r["ratios"][name]["median"] for r in rows if name in r.get("ratios", {})]
        if not medians:
            continue
        ratios = [x for x in medians if not _implausible(name, x)]
        left_out = len(medians) - len(ratios)
        if ratios:
            geo = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
            text = (f"speedup vs {name}: geometric mean of medians {geo:.2f}x, lowest "
                    f"{min(ratios):.2f}x over {len(ratios)} cases")
        else:
            text = f"speedup vs {name}: no plausible ratio"
        if left_out:
            text += f" ({left_out} implausible left out)"
        if name in WITH_VERDICT:
            counts = Counter(r["verdicts"][name] for r in rows if name in r.get("verdicts", {}))
            text += "; verdicts: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
        out.append(text)
    flagged = sum(1 for r in rows if r.get("flags"))
    if flagged:
        out.append(f"{flagged} of {len(rows)} cases flagged (the '!' lines): read their "
                   "figures with their warnings")
    return "\n".join(out)


def write_json(path: str, config: dict, sgemm: dict, rows: list[dict], overhead_us: float | None,
               settings: dict | None = None, streaming: dict | None = None) -> None:
    """The run as JSON: ``streaming`` is streaming.streaming_step's result, or None."""
    with open(path, "w") as f:
        json.dump({"version": JSON_VERSION, "config": config, "settings": settings or {},
                   "sgemm_gflops": sgemm, "overhead_us": overhead_us, "streaming": streaming,
                   "cases": rows},
                  f, indent=1)


def read_json(path: str) -> dict:
    """A file write_json wrote (any version: the compare needs only each case's keys and
    "fastseq_s", and uses per-round data when present)."""
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise ValueError(f"{path}: not a fastseq.bench JSON file (no 'cases' list)")
    return data


def plot(path: str, rows: list[dict]) -> None:
    """Speedup over torch (or, without torch, over the reference) per case, as bars with
    the interquartile range of the per-round ratios."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = "torch" if any("torch" in r.get("ratios", {}) for r in rows) else "reference"
    labels = [f"{_cell(r)} {r['T']},{r['B']},{r['H']} {r['mode'][:5]} {r['threads']}t" for r in rows]
    spreads = [r.get("ratios", {}).get(key) for r in rows]
    values = [s["median"] if s else 0.0 for s in spreads]
    err = [[(s["median"] - s["q1"]) if s else 0.0 for s in spreads],
           [(s["q3"] - s["median"]) if s else 0.0 for s in spreads]]
    fig, ax = plt.subplots(figsize=(10, max(3, 0.28 * len(rows))))
    ax.barh(range(len(rows)), values, xerr=err,
            color=["tab:green" if v >= 1 else "tab:red" for v in values])
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"speedup of fastseq over {key} (median, IQR of rounds; higher is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
