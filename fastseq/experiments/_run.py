"""What every experiment shares: sizes (smoke, quick, full), seeding, a progress bar with an
ETA on stderr, and writing the JSON, markdown summary and PNG plot of a run.

matplotlib is optional (the ``plot`` extra) and imported only when a plot is drawn.
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from typing import Any, Callable

import numpy as np

import fastseq

SIZES = ("smoke", "quick", "full")
PLOT_MISSING = "plots need matplotlib: `pip install fastseq[plot]`"


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def machine() -> str:
    """The CPU model line of /proc/cpuinfo (or platform's guess) and the CPUs usable."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cpus} CPUs usable"


class Progress:
    """A progress bar with an ETA on stderr, in work units (steps times sequence length).

    On a terminal it redraws one line; otherwise it prints a line every 10 %.
    """

    def __init__(self, label: str, total: float, enabled: bool = True, stream=None):
        self.label, self.total = label, max(float(total), 1e-9)
        self.done, self.start = 0.0, time.perf_counter()
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_draw, self._last_decile = 0.0, -1

    def update(self, units: float = 1.0, note: str = "") -> None:
        self.done = min(self.done + units, self.total)
        if not self.enabled:
            return
        now = time.perf_counter()
        frac = self.done / self.total
        decile = int(frac * 10)
        if self.tty and now - self._last_draw < 0.2 and frac < 1:
            return
        if not self.tty and decile == self._last_decile:
            return
        self._last_draw, self._last_decile = now, decile
        self._draw(frac, now - self.start, note)

    def _draw(self, frac: float, elapsed: float, note: str) -> None:
        eta = elapsed * (1 - frac) / frac if frac > 0 else math.nan
        bar = "#" * int(24 * frac) + "." * (24 - int(24 * frac))
        text = (f"[{self.label}] {bar} {100 * frac:5.1f}%  {_clock(elapsed)} elapsed, "
                f"ETA {_clock(eta)}  {note}")
        end = "" if self.tty and frac < 1 else "\n"
        self.stream.write(("\r" + text.ljust(100)) if self.tty else text)
        self.stream.write(end)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.done < self.total:
            self.done = self.total
            self._draw(1.0, time.perf_counter() - self.start, "")


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(round(seconds))
    return f"{seconds // 60:d}:{seconds % 60:02d}"


class Run:
    """One experiment's run: its size, seed, output directory, and the files it writes."""

    def __init__(self, name: str, size: str, seed: int, out: str, progress: bool = True,
                 plots: bool = True):
        if size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {size!r}")
        self.name, self.size, self.seed, self.out = name, size, int(seed), out
        self.show_progress, self.plots = progress, plots
        self.start = time.perf_counter()
        os.makedirs(out, exist_ok=True)

    def pick(self, smoke, quick, full):
        """The value for this run's size."""
        return {"smoke": smoke, "quick": quick, "full": full}[self.size]

    def rng(self, *keys: int | str) -> np.random.Generator:
        """A Generator for one part of the experiment: the seed and the part's keys, so that
        each part's draws do not depend on what ran before it."""
        words = [self.seed] + [k if isinstance(k, int) else _hash(k) for k in keys]
        return np.random.default_rng(words)

    def progress(self, total: float) -> Progress:
        return Progress(self.name, total, enabled=self.show_progress)

    def command(self) -> str:
        quick = {"quick": " --quick", "smoke": " --smoke", "full": ""}[self.size]
        return (f"python -m fastseq.experiments {self.name}{quick} --seed {self.seed} "
                f"--threads {fastseq.get_num_threads()}")

    def meta(self) -> dict[str, Any]:
        return {
            "experiment": self.name, "size": self.size, "seed": self.seed,
            "command": self.command(),
            "backend": fastseq.get_backend(), "threads": fastseq.get_num_threads(),
            "isa": fastseq.get_isa(), "fastseq": fastseq.__version__,
            "numpy": np.__version__, "machine": machine(),
            "seconds": round(time.perf_counter() - self.start, 1),
        }

    def path(self, ext: str) -> str:
        return os.path.join(self.out, f"{self.name}.{ext}")

    def write(self, results: dict, summary: str, plot: Callable | None = None) -> dict:
        """Write ``NAME.json`` (meta + results), ``NAME.png`` (``plot(fig_factory, path)``
        when matplotlib is importable) and ``NAME.md`` (the summary, headed by the command
        and machine, with the plot). Returns the JSON's content."""
        plot_note = None
        if plot is not None and self.plots:
            if have_matplotlib():
                import matplotlib

                matplotlib.use("Agg")
                import matplotlib.pyplot as plt

                plot(plt, self.path("png"))
                plt.close("all")
            else:
                plot_note = PLOT_MISSING
        meta = self.meta()
        data = {"meta": meta, "results": results}
        with open(self.path("json"), "w") as f:
            json.dump(_jsonable(data), f, indent=1, allow_nan=True)
            f.write("\n")
        head = (f"# {self.name}\n\n`{meta['command']}` — backend {meta['backend']}, "
                f"{meta['threads']} thread(s), ISA {meta['isa']}, {meta['machine']}; "
                f"{meta['seconds']} s.\n\n")
        if plot is not None and self.plots:
            head += (f"![{self.name}]({self.name}.png)\n\n" if plot_note is None
                     else f"(No plot: {plot_note}.)\n\n")
        with open(self.path("md"), "w") as f:
            f.write(head + summary.rstrip() + "\n")
        return data


def _hash(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode())


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value


def fmt(x: float, digits: int = 3) -> str:
    """A number for the summaries: 3 significant digits, scientific when tiny or huge."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if x == 0:
        return "0"
    if abs(x) < 1e-3 or abs(x) >= 1e5:
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"
