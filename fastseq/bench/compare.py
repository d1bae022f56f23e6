"""``--compare OLD.json``: each case's change against a saved run (``--json OLD.json``).

Cases are matched on (cell, T, B, I, H, mode, threads); cases in only one run are listed
apart. For each match it prints fastseq's median time then and now, the speedup
old/new (above 1: faster now), the same with each run's time normalised by its own
yardstick of the case's class (what is left of the change once the host's load is divided
out): at B = 1 the GEMV bandwidth bound (%BW now over %BW then), otherwise the SGEMM
(%SGEMM). Measured on the shared host, the same commit run twice a few minutes apart:
the B = 1 cases' %SGEMM moved by up to 2.8x between the runs while their %BW moved by
at most 1.37x (a GEMV and a batch-1 step suffer the same memory traffic of the other
processes; an SGEMM does not). Then a call:

- "faster" when the new run's per-round times lie below the old run's (new upper quartile
  under the old lower quartile) AND the normalised figures agree (new %BW's or %SGEMM's
  lower quartile above the old one's upper quartile);
- "slower" the other way round;
- "within spread" otherwise: the change is not larger than either run's own noise, or the
  raw and normalised figures disagree (the host's load moved between the runs).

Files without per-round data (written before the spreads) get the raw ratio and no call.
"""
from __future__ import annotations

from . import stats

KEY = ("cell", "T", "B", "I", "H", "mode", "threads")


def case_key(row: dict) -> tuple:
    return tuple(row[k] for k in KEY)


def _label(key: tuple) -> str:
    cell, T, B, I, H, mode, threads = key
    return f"{cell:<5} {T:>4} {B:>3} {I:>5} {H:>5} {mode:<9} {threads:>3}"


def yardstick(old: dict, new: dict) -> str | None:
    """The key both rows are normalised by: "pct_bw" when both have it (B = 1), else
    "pct_sgemm" when both have its spread, else None (files written before the spreads)."""
    for key in ("pct_bw", "pct_sgemm"):
        if isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
            return key
    return None


def change(old: dict, new: dict) -> dict:
    """The comparison of one case's two rows (see the module docstring)."""
    out = {"old_s": old["fastseq_s"], "new_s": new["fastseq_s"],
           "speedup": old["fastseq_s"] / new["fastseq_s"]}
    key = yardstick(old, new)
    old_pct, new_pct = (old[key], new[key]) if key else (None, None)
    if key:
        out["normalised_by"] = {"pct_bw": "GEMV", "pct_sgemm": "SGEMM"}[key]
        out["normalised_speedup"] = new_pct["median"] / old_pct["median"]
    old_rounds = old.get("rounds", {}).get("fastseq")
    new_rounds = new.get("rounds", {}).get("fastseq")
    if not (old_rounds and new_rounds and old_pct and new_pct):
        out["call"] = "no rounds"
        return out
    t_old, t_new = stats.Spread.of(old_rounds), stats.Spread.of(new_rounds)
    if t_new.q3 < t_old.q1 and new_pct["q1"] > old_pct["q3"]:
        out["call"] = "faster"
    elif t_new.q1 > t_old.q3 and new_pct["q3"] < old_pct["q1"]:
        out["call"] = "slower"
    else:
        out["call"] = "within spread"
    return out


def compare(old_rows: list[dict], new_rows: list[dict]) -> tuple[str, list[dict]]:
    """The printed comparison and its per-case records (new-run order)."""
    old_by_key = {case_key(r): r for r in old_rows}
    new_keys = {case_key(r) for r in new_rows}
    head = (f"{'cell':<5} {'T':>4} {'B':>3} {'I':>5} {'H':>5} {'mode':<9} {'thr':>3} "
            f"{'old ms':>8} {'new ms':>8} {'speedup':>8} {'normalised':>16}  call")
    lines = [head, "-" * len(head)]
    records = []
    for row in new_rows:
        key = case_key(row)
        if key not in old_by_key:
            continue
        c = change(old_by_key[key], row)
        records.append({"case": dict(zip(KEY, key)), **c})
        norm = "-" if "normalised_speedup" not in c else \
            f"{c['normalised_speedup']:.2f}x by {c['normalised_by']}"
        lines.append(f"{_label(key)} {1e3 * c['old_s']:>8.3g} {1e3 * c['new_s']:>8.3g} "
                     f"{c['speedup']:>7.2f}x {norm:>16}  {c['call']}")
    only_new = [r for r in new_rows if case_key(r) not in old_by_key]
    only_old = [r for r in old_rows if case_key(r) not in new_keys]
    for rows, where in ((only_new, "only in this run"), (only_old, "only in the saved run")):
        if rows:
            lines.append(f"{len(rows)} case(s) {where}: " + "; ".join(
                f"{r['cell']} ({r['T']},{r['B']},{r['I']},{r['H']}) {r['mode']} {r['threads']}t"
                for r in rows[:6]) + (" ..." if len(rows) > 6 else ""))
    if not records:
        lines.append("no case in common with the saved run")
    return "\n".join(lines), records
