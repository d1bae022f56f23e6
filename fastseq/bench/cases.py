"""What the benchmark measures: cells, (T, B, I, H) configurations, modes, thread counts,
and the FLOP count each case is credited with."""
from __future__ import annotations

from dataclasses import dataclass

from ..cells import FAMILIES, family_gates

#: family name -> gates G (fastseq.cells)
CELLS = {fam: family_gates(fam) for fam in FAMILIES}

FULL_CONFIGS = [(50, 16, 256, 256), (25, 1, 512, 512), (25, 16, 512, 512),
                (50, 64, 512, 512), (100, 32, 1024, 1024)]
QUICK_CONFIGS = [(50, 16, 256, 256), (25, 1, 512, 512)]
MODES = ("inference", "training")


@dataclass(frozen=True)
class Case:
    cell: str
    T: int
    B: int
    I: int
    H: int
    mode: str
    threads: int

    @property
    def config(self) -> tuple:
        return (self.T, self.B, self.I, self.H)

    @property
    def flops(self) -> float:
        """forward = 2·T·B·G·H·(I+H); forward+backward = 3× forward (the issue's convention)."""
        forward = 2.0 * self.T * self.B * CELLS[self.cell] * self.H * (self.I + self.H)
        return forward if self.mode == "inference" else 3.0 * forward

    def label(self) -> str:
        return f"{self.cell} {self.config} {self.mode} {self.threads}t"


def grid(quick: bool, threads: list[int], cells: list[str] | None = None) -> list[Case]:
    configs = QUICK_CONFIGS if quick else FULL_CONFIGS
    return [Case(cell, *config, mode, n)
            for cell in (cells or list(CELLS))
            for config in configs
            for mode in MODES
            for n in threads]
