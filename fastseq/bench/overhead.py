"""Per-call overhead: the time of one tiny layer call (eval mode, T=1, B=1, I=H=32), where
the kernel's own work is negligible and what is left is Python, checks and dispatch."""
from __future__ import annotations

import time

import numpy as np

import fastseq


def layer_call_overhead_us(backend: str, calls: int = 5000, repeats: int = 7) -> float:
    """Median over ``repeats`` of the mean microseconds per ``lstm(x)`` call."""
    layer = fastseq.LSTM(32, 32, seed=0)
    layer.eval()
    x = np.zeros((1, 1, 32), np.float32)
    per_call = []
    with fastseq.use_backend(backend):
        for _ in range(calls // 5):  # warm-up
            layer(x)
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(calls):
                layer(x)
            per_call.append((time.perf_counter() - start) / calls * 1e6)
    return float(np.median(per_call))
