"""What the benchmark measures: cells, (T, B, I, H) configurations, modes, thread counts,
and the FLOP count each case is credited with."""
from __future__ import annotations

from dataclasses import dataclass

from ..cells import FAMILIES, family_gates

#: family name -> gates G (fastseq.cells), and "lstmp": the LSTM with a projection
#: (fastseq.LSTM and torch.nn.LSTM with proj_size = P), benchmarked on its own configs.
CELLS = {**{fam: family_gates(fam) for fam in FAMILIES}, "lstmp": family_gates("lstm")}

FULL_CONFIGS = [(50, 16, 256, 256), (25, 1, 512, 512), (25, 16, 512, 512),
                (50, 64, 512, 512), (100, 32, 1024, 1024)]
QUICK_CONFIGS = [(50, 16, 256, 256), (25, 1, 512, 512)]
#: lstmp's (T, B, I, H, P): the cell-contract issue's B = 16 and batch-1 cases.
PROJECTED_CONFIGS = [(25, 16, 512, 512, 128), (25, 1, 1024, 1024, 256)]
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
    P: int = 0  # lstmp's projection size; 0 for every other cell

    @property
    def config(self) -> tuple:
        return (self.T, self.B, self.I, self.H) + ((self.P,) if self.P else ())

    @property
    def out(self) -> int:
        """The width of y and h: P with a projection, else H."""
        return self.P or self.H

    @property
    def flops(self) -> float:
        """forward = 2·T·B·G·H·(I+H) (with a projection 2·T·B·(G·H·(I+P) + P·H));
        forward+backward = 3× forward (the issue's convention)."""
        G = CELLS[self.cell]
        per_row = G * self.H * (self.I + self.out) + self.P * self.H
        forward = 2.0 * self.T * self.B * per_row
        return forward if self.mode == "inference" else 3.0 * forward

    @property
    def recurrent_shape(self) -> tuple[int, int]:
        """A matrix with the elements every step's recurrent products read: W_hh (G·H × H),
        and with a projection W_hh (G·H × P) and W_hr (P × H) together, (G·H + H) × P."""
        G = CELLS[self.cell]
        return (G * self.H + self.H, self.P) if self.P else (G * self.H, self.H)

    @property
    def w_hh_bytes(self) -> int:
        """Bytes of the float32 recurrent weights (W_hh, and W_hr with a projection): what
        every step streams at B = 1."""
        rows, cols = self.recurrent_shape
        return 4 * rows * cols

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
    def configs_of(cell):
        if configs:  # --configs: 4-tuples for the plain cells, 5-tuples (with P) for lstmp
            return [c for c in configs if (len(c) == 5) == (cell == "lstmp")]
        if cell == "lstmp":
            return [] if quick else PROJECTED_CONFIGS
        return QUICK_CONFIGS if quick else FULL_CONFIGS

    return [Case(cell, *config[:4], mode, n, P=config[4] if len(config) == 5 else 0)
            for cell in (cells or list(CELLS))
            for config in configs_of(cell)
            for mode in MODES
            for n in threads]
