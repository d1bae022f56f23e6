"""Per-round statistics and the rules that judge them: the spread of a case's per-round
ratios, the verdict rule ("faster" / "slower" / "unclear"), and the flags that say when a
case's figures are not to be trusted (the yardstick moved, a ratio is implausible, the
2-thread SGEMM was no faster than the 1-thread one).

Every ratio is taken per round: round i's time of the competitor over round i's time of
fastseq, both timed in the same round (timing.alternating_rounds), so the host's drift
over seconds cancels out of each ratio; their spread says how much it did not.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: The verdict rule needs at least this many rounds (the CLI's default --rounds).
VERDICT_MIN_ROUNDS = 7
#: "faster": median ratio >= 1.0 and lower quartile >= FASTER_Q1.
FASTER_Q1 = 0.95
#: "slower", the mirror image: median < 1.0 and upper quartile < 1 / FASTER_Q1.
SLOWER_Q3 = 1.0 / FASTER_Q1
#: A case's SGEMM yardstick may move by this much (max / min - 1 over its rounds) before
#: the case is flagged: beyond it the host's load changed during the case.
YARDSTICK_MARGIN = 0.25
#: Median speedups outside [1 / limit, limit] are flagged as implausible. Two compiled
#: implementations of the same recurrence (torch, ONNX Runtime, Numba's BLAS-backed loop)
#: have never differed by 5x on this benchmark's shapes; the NumPy reference (a Python
#: loop over steps, timed in 3 rounds) may well be 10x slower, but not more without a look.
PLAUSIBLE_LIMIT = {"torch": 5.0, "ort": 5.0, "numba": 5.0, "reference": 10.0}
#: %SGEMM or %BW above this is implausible: fastseq's step products are not faster than
#: OpenBLAS's SGEMM by a fifth, nor can a kernel read W_hh faster than a GEMV does.
PLAUSIBLE_PERCENT = 120.0


@dataclass(frozen=True)
class Spread:
    """Five-number summary of per-round values (quartiles by linear interpolation,
    NumPy's default percentile method)."""

    min: float
    q1: float
    median: float
    q3: float
    max: float
    n: int

    @classmethod
    def of(cls, values) -> Spread:
        v = np.asarray(values, dtype=float)
        if v.ndim != 1 or v.size == 0:
            raise ValueError(f"values must be a non-empty 1-D sequence; got shape {v.shape}")
        q = np.percentile(v, [0, 25, 50, 75, 100])
        return cls(*(float(x) for x in q), n=int(v.size))

    def as_dict(self) -> dict:
        return asdict(self)

    def scaled(self, factor: float) -> Spread:
        return Spread(self.min * factor, self.q1 * factor, self.median * factor,
                      self.q3 * factor, self.max * factor, self.n)


def per_round_ratios(numerator, denominator) -> np.ndarray:
    """numerator[i] / denominator[i]: the paired ratio of each round."""
    a, b = np.asarray(numerator, float), np.asarray(denominator, float)
    if a.shape != b.shape:
        raise ValueError(f"paired rounds needed: {a.shape} vs {b.shape}")
    return a / b


def verdict(ratios: Spread, min_rounds: int = VERDICT_MIN_ROUNDS) -> str:
    """fastseq against a competitor from the spread of per-round speedups
    (competitor time / fastseq time): "faster" when the median is >= 1.0 and the lower
    quartile >= 0.95; "slower" when the median is < 1.0 and the upper quartile < 1/0.95;
    "unclear" otherwise; "few rounds" below ``min_rounds`` rounds (no verdict)."""
    if ratios.n < min_rounds:
        return "few rounds"
    if ratios.median >= 1.0 and ratios.q1 >= FASTER_Q1:
        return "faster"
    if ratios.median < 1.0 and ratios.q3 < SLOWER_Q3:
        return "slower"
    return "unclear"


def yardstick_drift(sgemm_seconds) -> float:
    """How far the SGEMM yardstick moved over a case's rounds: max / min - 1 of its times."""
    t = np.asarray(sgemm_seconds, float)
    return float(t.max() / t.min() - 1.0)


def case_flags(row: dict, margin: float = YARDSTICK_MARGIN) -> list[str]:
    """The warnings one measured row earns (see the module constants). ``row`` as built by
    ``python -m fastseq.bench``: "rounds" (per-round seconds), "ratios" (Spread dicts per
    competitor), "pct_sgemm" and, at B = 1, "pct_bw" (Spread dicts)."""
    flags = []
    drift = yardstick_drift(row["rounds"]["sgemm"])
    if drift > margin:
        flags.append(f"yardstick moved {100 * drift:.0f}% across the case's rounds (margin "
                     f"{100 * margin:.0f}%): the host's load changed; ms and %SGEMM are "
                     "unreliable, the per-round ratios less so")
    for name, spread in row.get("ratios", {}).items():
        limit = PLAUSIBLE_LIMIT.get(name, 5.0)
        median = spread["median"]
        if not 1.0 / limit <= median <= limit:
            flags.append(f"vs {name} {median:.2f}x is implausible (outside "
                         f"{1 / limit:.2g}-{limit:.0f}x): check that both sides do the same work")
    for key, what in (("pct_sgemm", "%SGEMM"), ("pct_bw", "%BW")):
        spread = row.get(key)
        if spread and spread["median"] > PLAUSIBLE_PERCENT:
            flags.append(f"{what} {spread['median']:.0f}% is implausible (above "
                         f"{PLAUSIBLE_PERCENT:.0f}%): the yardstick ran slow in this case's rounds")
    return flags


def thread_scaling_flag(sgemm_1t: float, sgemm_nt: float, threads: int) -> str | None:
    """A warning when the n-thread SGEMM rate (GFLOP/s) is not above the 1-thread one:
    on an idle machine 2 threads run it ~1.9x faster, so the host's load moved."""
    if threads > 1 and sgemm_nt <= sgemm_1t:
        return (f"{threads}-thread SGEMM {sgemm_nt:.0f} GFLOP/s is not faster than 1-thread "
                f"{sgemm_1t:.0f}: the host's load moved (other processes took a core); "
                f"compare this row with its 1-thread row with care")
    return None
