"""The projected LSTM (lstmp) of the C++ kernels against torch's nn.LSTM(proj_size=P), float32,
one layer, one direction, I = H: inference (training=False; torch under no_grad) and
training (forward and backward of every input; torch ``y.backward(dy)``), on 1 and 2 threads
(torch.set_num_threads to match).

    python bench/lstmp_speed.py                  (both cases, 9 rounds)
    python bench/lstmp_speed.py --rounds 11 --threads 1

Each round times fastseq and torch one after the other (a call repeated for at least
--min-time seconds, the mean per call), so both see the same load on a shared host; the
ratio torch/fastseq of each round is the measurement, reported as its median with the
lowest and highest round.

A run (2-vCPU Sapphire Rapids KVM guest, AVX-512, shared: load average 6-7 throughout;
9 rounds; torch/fastseq median [min, max]):

    T,B,H,P          mode       1 thread            2 threads
    25,16,512,128    inference  1.32 [0.93, 2.65]   4.22 [2.22, 65.99]
    25,16,512,128    training   1.48 [0.91, 2.07]   2.45 [1.68, 55.69]
    25,1,1024,256    inference  1.04 [0.75, 1.23]   3.89 [1.31, 78.59]
    25,1,1024,256    training   2.32 [1.28, 2.58]   5.82 [2.04, 11.62]

On 2 threads torch's second thread waited on a busy host: those ratios say more about the
load than about the kernels. The input projection (one GEMM over all steps in both, ~11 ms
at B = 16) is most of the B = 16 inference; without it (I = 1) fastseq's recurrent part
took 7.0 ms against torch's 12.2 (B = 16) and 9.7 against 13.1 (B = 1, where each step
streams the 5 MB of W_hh and W_hr from L3); training 17.4 against 44.0 and 22.1 against
83.1.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import fastseq
from fastseq import _core

CASES = [(25, 16, 512, 128), (25, 1, 1024, 256)]  # (T, B, H, P), I = H


def arrays(T, B, H, P, seed=0):
    rng = np.random.default_rng(seed)
    k = 1 / np.sqrt(H)
    u = lambda *s: rng.uniform(-k, k, s).astype(np.float32)  # noqa: E731
    return dict(x=rng.standard_normal((T, B, H)).astype(np.float32), w_ih=u(4 * H, H),
                w_hh=u(4 * H, P), w_hr=u(P, H), b_ih=u(4 * H), b_hh=u(4 * H),
                dy=rng.standard_normal((T, B, P)).astype(np.float32))


def fastseq_call(a, training):
    def run():
        y, h, c, reserve = _core.lstm_forward(a["x"], a["w_ih"], a["w_hh"], a["b_ih"],
                                              a["b_hh"], training=training, w_hr=a["w_hr"])
        if training:
            _core.lstm_backward(reserve, a["dy"])
    return run


def torch_call(a, training):
    T, B, H = a["x"].shape
    P = a["w_hr"].shape[0]
    lstm = torch.nn.LSTM(H, H, proj_size=P)
    with torch.no_grad():
        for name, key in (("weight_ih_l0", "w_ih"), ("weight_hh_l0", "w_hh"),
                          ("weight_hr_l0", "w_hr"), ("bias_ih_l0", "b_ih"),
                          ("bias_hh_l0", "b_hh")):
            getattr(lstm, name).copy_(torch.from_numpy(a[key]))
    x = torch.from_numpy(a["x"])
    dy = torch.from_numpy(a["dy"])

    def run():
        if training:
            xg = x.detach().requires_grad_()
            y, _ = lstm(xg)
            y.backward(dy)
        else:
            with torch.no_grad():
                lstm(x)
    return run


def per_call(fn, min_time):
    fn()  # warm: buffers, caches
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--min-time", type=float, default=0.25)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    print(f"fastseq {fastseq.__version__} isa={_core.selected_isa()} torch {torch.__version__}")
    print(f"{'T,B,H,P':>16} {'mode':>9} {'thr':>3} {'fastseq ms':>10} {'torch ms':>9} "
          f"{'torch/fastseq median [min, max]':>32}")
    for threads in args.threads:
        fastseq.set_num_threads(threads)
        torch.set_num_threads(threads)
        for T, B, H, P in CASES:
            a = arrays(T, B, H, P)
            for training in (False, True):
                ours, theirs = fastseq_call(a, training), torch_call(a, training)
                t_ours, t_theirs, ratios = [], [], []
                for _ in range(args.rounds):
                    o = per_call(ours, args.min_time)
                    t = per_call(theirs, args.min_time)
                    t_ours.append(o)
                    t_theirs.append(t)
                    ratios.append(t / o)
                mode = "training" if training else "inference"
                print(f"{f'{T},{B},{H},{P}':>16} {mode:>9} {threads:>3} "
                      f"{1e3 * statistics.median(t_ours):>10.3f} "
                      f"{1e3 * statistics.median(t_theirs):>9.3f} "
                      f"{statistics.median(ratios):>14.2f} [{min(ratios):.2f}, {max(ratios):.2f}]",
                      flush=True)


if __name__ == "__main__":
    main()
