"""One step at a time: an LSTM fed one step per call with its state passed back in (T = 1,
B = 1: real-time use), ``functional.lstm_forward`` against ``torch.nn.LSTMCell`` on the
same weights. Each round times a block of steps of each in turn
(timing.alternating_rounds), so that every ratio is taken under the same load."""
from __future__ import annotations

import numpy as np

import fastseq
from fastseq import functional as F

from . import stats
from .timing import _torch, alternating_rounds

__all__ = ["streaming_step"]


def streaming_step(backend: str, hidden: int = 512, steps: int = 50, min_rounds: int = 7,
                   budget: float = 0.5, with_torch: bool = True) -> dict:
    """Microseconds per step of fastseq and, with torch (installed, and ``with_torch``), of
    torch's LSTMCell (each a Spread over the rounds, ``steps`` steps a round), and the
    per-round ratio torch / fastseq (above 1: fastseq is faster). float32, input size =
    hidden size."""
    rng = np.random.default_rng(0)
    k = 1.0 / np.sqrt(hidden)
    w_ih, w_hh = (rng.uniform(-k, k, (4 * hidden, hidden)).astype(np.float32) for _ in range(2))
    b_ih, b_hh = (rng.uniform(-k, k, 4 * hidden).astype(np.float32) for _ in range(2))
    xs = rng.standard_normal((steps, 1, 1, hidden)).astype(np.float32)

    def fastseq_steps():
        h = c = None
        with fastseq.use_backend(backend):
            for x in xs:
                _, h, c, _ = F.lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h, c, training=False)

    calls = {"fastseq": fastseq_steps}
    torch = _torch() if with_torch else None
    if torch is not None:
        cell = torch.nn.LSTMCell(hidden, hidden)
        with torch.no_grad():
            for name, value in (("weight_ih", w_ih), ("weight_hh", w_hh), ("bias_ih", b_ih),
                                ("bias_hh", b_hh)):
                getattr(cell, name).copy_(torch.from_numpy(value))
        txs = [torch.from_numpy(x[0]) for x in xs]

        def torch_steps():
            state = None
            with torch.inference_mode():
                for x in txs:
                    state = cell(x, state)

        calls["torch"] = torch_steps
    times = alternating_rounds(calls, budget, min_rounds=min_rounds)
    per_step = {name: stats.Spread.of(np.asarray(t) / steps * 1e6) for name, t in times.items()}
    result = {"hidden": hidden, "steps": steps,
              "fastseq_us": per_step["fastseq"].as_dict(), "torch_us": None, "vs_torch": None}
    if "torch" in times:
        result["torch_us"] = per_step["torch"].as_dict()
        ratios = stats.per_round_ratios(times["torch"], times["fastseq"])
        result["vs_torch"] = stats.Spread.of(ratios).as_dict()
    return result


def describe(result: dict) -> str:
    """One line for the benchmark's output."""
    f = result["fastseq_us"]
    text = (f"one step at a time, LSTM H={result['hidden']}, T=B=1, state passed back, 1 call "
            f"per step: fastseq {f['median']:.1f} us (IQR {f['q1']:.1f}-{f['q3']:.1f})")
    if result["vs_torch"] is not None:
        t, r = result["torch_us"], result["vs_torch"]
        text += (f", torch LSTMCell {t['median']:.1f} us; vs torch {r['median']:.2f}x "
                 f"(IQR {r['q1']:.2f}-{r['q3']:.2f}) {stats.verdict(stats.Spread(**r))}")
    return text
