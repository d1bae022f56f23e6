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

    @property
    def w_hh_bytes(self) -> int:
        """Bytes of the float32 recurrent weights W_hh (G·H × H): what every step streams
        at B = 1."""
        return 4 * CELLS[self.cell] * self.H * self.H

    @property
    def w_hh_passes(self) -> int:
        """How many times a call must read W_hh at least: once per step forward, and once
        more per step backward (dh_{t-1} = dgates_t · W_hh) in training."""
        return self.T if self.mode == "inference" else 2 * self.T

    def label(self) -> str:
        return f"{self.cell} {self.config} {self.mode} {self.threads}t"


def grid(quick: bool, threads: list[int], cells: list[str] | None = None,
         configs: list[tuple] | None = None) -> list[Case]:
    """Every (cell, config, mode, threads), threads innermost (a case's 1-thread row comes
    right before its 2-thread row). ``configs`` replaces the quick or full list."""
    configs = configs or (QUICK_CONFIGS if quick else FULL_CONFIGS)
    return [Case(cell, *config, mode, n)
            for cell in (cells or list(CELLS))
            for config in configs
            for mode in MODES
            for n in threads]
