"""A first look: one LSTM layer forward and backward on every backend this machine has,
timed, and checked against the NumPy reference."""
import time

import numpy as np

import fastseq
from fastseq import functional as F

T, B, I, H = 25, 16, 128, 128
rng = np.random.default_rng(0)
k = 1 / np.sqrt(H)
x = rng.standard_normal((T, B, I)).astype(np.float32)
w_ih, w_hh = (rng.uniform(-k, k, (4 * H, n)).astype(np.float32) for n in (I, H))
b_ih, b_hh = (rng.uniform(-k, k, 4 * H).astype(np.float32) for _ in range(2))
dy = rng.standard_normal((T, B, H)).astype(np.float32)


def step():
    y, h_n, c_n, ctx = F.lstm_forward(x, w_ih, w_hh, b_ih, b_hh)
    return y, F.lstm_backward(ctx, dy)


print(f"fastseq {fastseq.__version__}: LSTM (T, B, I, H) = {(T, B, I, H)}, float32, forward + backward")
results = {}
for name in fastseq.available_backends():
    with fastseq.use_backend(name):
        step()  # warm-up (and Numba's compilation)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            results[name] = step()
            times.append(time.perf_counter() - t0)
    print(f"  {name:<10} {1e3 * np.median(times):8.2f} ms (median of 5)")

ref_y, ref_g = results["reference"]
for name, (y, g) in results.items():
    err = max([fastseq.max_error(y, ref_y)] + [fastseq.max_error(g[n], ref_g[n]) for n in ref_g])
    print(f"  {name:<10} max error vs reference: {err:.1e}")
