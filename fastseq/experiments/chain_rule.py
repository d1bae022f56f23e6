"""Backpropagation through time, checked: each cell's kernel gradients against central
finite differences (``fastseq.gradcheck``) and against the NumPy reference
(``fastseq.check_against_reference``), per backend and named tensor; and a two-step
unrolled derivation of a scalar tanh RNN, printed beside the kernels' numbers.
"""
from __future__ import annotations

import math

import numpy as np

import fastseq
from fastseq import functional as F

from ._run import Run, fmt

NAME = "chain-rule"
CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")


def _problem(cell: str, T: int, B: int, I: int, H: int, rng) -> dict:
    G = {"lstm": 4, "gru": 3}.get(cell, 1)
    p = {"x": rng.standard_normal((T, B, I)), "w_ih": 0.6 * rng.standard_normal((G * H, I)),
         "w_hh": 0.6 * rng.standard_normal((G * H, H)), "b_ih": 0.1 * rng.standard_normal(G * H),
         "b_hh": 0.1 * rng.standard_normal(G * H), "h0": 0.5 * rng.standard_normal((B, H))}
    if cell == "lstm":
        p["c0"] = 0.5 * rng.standard_normal((B, H))
    return p


def cell_fn(cell: str):
    """The functional forward/backward of ``cell`` in gradcheck's protocol; the vjp returns
    the backward's own dict (dx, dw_ih, ...)."""
    def fn(**a):
        if cell == "lstm":
            y, h_n, c_n, ctx = F.lstm_forward(**a)
            return (y, h_n, c_n), lambda cot: F.lstm_backward(ctx, *cot)
        if cell == "gru":
            y, h_n, ctx = F.gru_forward(**a)
        else:
            y, h_n, ctx = F.rnn_forward(**a, nonlinearity=cell.split("_")[1])
        back = F.gru_backward if cell == "gru" else F.rnn_backward
        return (y, h_n), lambda cot: back(ctx, *cot)
    return fn


def two_step(backends) -> dict:
    """h1 = tanh(w x1 + u h0), h2 = tanh(w x2 + u h1), L = h2: by hand and by the kernels."""
    x1, x2, w, u, h0 = 0.5, -1.0, 0.8, 1.3, 0.2
    h1 = math.tanh(w * x1 + u * h0)
    h2 = math.tanh(w * x2 + u * h1)
    d2 = 1 - h2 ** 2                 # dL/da2, a2 = w x2 + u h1
    dh1 = u * d2                     # dL/dh1
    d1 = dh1 * (1 - h1 ** 2)         # dL/da1
    hand = {"h1": h1, "h2": h2, "dL/da2": d2, "dL/dh1": dh1, "dL/da1": d1,
            "dL/dw": d2 * x2 + d1 * x1, "dL/du": d2 * h1 + d1 * h0, "dL/dh0": d1 * u,
            "dL/dx1": d1 * w, "dL/dx2": d2 * w}
    kernels = {}
    for b in backends:
        with fastseq.use_backend(b):
            y, h_n, ctx = F.rnn_forward(np.array([[[x1]], [[x2]]]), np.array([[w]]),
                                        np.array([[u]]), h0=np.array([[h0]]))
            g = F.rnn_backward(ctx, np.array([[[0.0]], [[1.0]]]))
        kernels[b] = {"h1": float(y[0, 0, 0]), "h2": float(y[1, 0, 0]),
                      "dL/dw": float(g["dw_ih"][0, 0]), "dL/du": float(g["dw_hh"][0, 0]),
                      "dL/dh0": float(g["dh0"][0, 0]), "dL/dx1": float(g["dx"][0, 0, 0]),
                      "dL/dx2": float(g["dx"][1, 0, 0])}
    return {"inputs": {"x1": x1, "x2": x2, "w": w, "u": u, "h0": h0}, "by_hand": hand,
            "kernels": kernels}


def run(r: Run) -> dict:
    T, B, I, H = r.pick((3, 2, 2, 2), (5, 3, 4, 6), (7, 4, 5, 9))
    backends = fastseq.available_backends()
    bar = r.progress(len(CELLS) * (len(backends) + 2))
    results = {"T": T, "B": B, "I": I, "H": H, "backends": backends, "cells": {}}
    for cell in CELLS:
        p = _problem(cell, T, B, I, H, r.rng("problem", cell))
        entry = {"gradcheck": {}, "vs_reference": {}}
        for b in backends:
            with fastseq.use_backend(b):
                report = fastseq.gradcheck(cell_fn(cell), p, tol=1e-6, raise_exception=False)
            entry["gradcheck"][b] = {n: {"error": e, "worst_index": report.details[n]["index"]}
                                     for n, e in report.items()}
            bar.update(1, f"gradcheck {cell} {b}")
        for dtype in (np.float64, np.float32):
            q = {k: v.astype(dtype) for k, v in p.items()}
            entry["vs_reference"][np.dtype(dtype).name] = fastseq.check_against_reference(
                cell_fn(cell), q, raise_exception=False)
            bar.update(1, f"reference {cell} {np.dtype(dtype).name}")
        results["cells"][cell] = entry
    results["two_step"] = two_step(backends)
    bar.close()
    worst_fd = max(e["error"] for c in results["cells"].values()
                   for g in c["gradcheck"].values() for e in g.values())
    worst = {dt: max((e for c in results["cells"].values()
                      for g in c["vs_reference"][dt].values() for e in g.values()), default=0.0)
             for dt in ("float64", "float32")}
    results["worst_finite_difference_error"] = worst_fd
    results["worst_vs_reference"] = worst
    results["all_pass"] = bool(worst_fd <= 1e-6 and worst["float64"] <= 1e-10
                               and worst["float32"] <= 1e-4)
    r.write(results, summary(results))
    return results


def summary(res: dict) -> str:
    names = ["x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0"]
    lines = [f"(T, B, I, H) = ({res['T']}, {res['B']}, {res['I']}, {res['H']}), random inputs "
             "and weights in float64 (float32 copies for the float32 comparison). Errors are "
             "max|got − ref| / max(max|ref|, 1).", "",
             "**Against central finite differences** (`fastseq.gradcheck`, eps 1e-6, tolerance "
             "1e-6), worst error per named gradient:", "",
             "| cell | backend | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    for cell, c in res["cells"].items():
        for b, g in c["gradcheck"].items():
            lines.append(f"| {cell} | {b} | " + " | ".join(
                fmt(g[n]["error"]) if n in g else "—" for n in names) + " |")
    lines += ["", "**Against the NumPy reference** (`fastseq.check_against_reference`: "
              "outputs and every gradient; tolerance 1e-10 in float64, 1e-4 in float32), worst "
              "error over all named tensors:", "",
              "| cell | dtype | " + " | ".join(b for b in res["backends"] if b != "reference") + " |",
              "|---|---|" + "---:|" * (len(res["backends"]) - 1)]
    for cell, c in res["cells"].items():
        for dt, per in c["vs_reference"].items():
            lines.append(f"| {cell} | {dt} | " + " | ".join(
                fmt(max(per[b].values())) for b in per) + " |")
    lines += ["", f"Worst finite-difference error {fmt(res['worst_finite_difference_error'])}; "
              f"worst against the reference {fmt(res['worst_vs_reference']['float64'])} (float64), "
              f"{fmt(res['worst_vs_reference']['float32'])} (float32): "
              + ("every check passes." if res["all_pass"] else "**some checks fail**."), ""]
    t = res["two_step"]
    i, h = t["inputs"], t["by_hand"]
    lines += [
        "**The chain rule, two steps by hand.** A scalar tanh RNN, no bias: "
        f"h1 = tanh(w·x1 + u·h0), h2 = tanh(w·x2 + u·h1), loss L = h2, with x1 = {i['x1']}, "
        f"x2 = {i['x2']}, w = {i['w']}, u = {i['u']}, h0 = {i['h0']}.", "",
        "```",
        f"h1 = tanh({i['w']}·{i['x1']} + {i['u']}·{i['h0']})              = {h['h1']:.12f}",
        f"h2 = tanh({i['w']}·{i['x2']} + {i['u']}·h1)                  = {h['h2']:.12f}",
        f"dL/da2 = 1 − h2²                              = {h['dL/da2']:.12f}",
        f"dL/dh1 = dL/da2 · u                           = {h['dL/dh1']:.12f}",
        f"dL/da1 = dL/dh1 · (1 − h1²)                   = {h['dL/da1']:.12f}",
        f"dL/dw  = dL/da2 · x2 + dL/da1 · x1            = {h['dL/dw']:.12f}",
        f"dL/du  = dL/da2 · h1 + dL/da1 · h0            = {h['dL/du']:.12f}",
        f"dL/dh0 = dL/da1 · u                           = {h['dL/dh0']:.12f}",
        f"dL/dx1 = dL/da1 · w,  dL/dx2 = dL/da2 · w     = {h['dL/dx1']:.12f}, {h['dL/dx2']:.12f}",
        "```", "",
        "| quantity | by hand | " + " | ".join(t["kernels"]) + " |",
        "|---|---:|" + "---:|" * len(t["kernels"])]
    for q in ("h1", "h2", "dL/dw", "dL/du", "dL/dh0", "dL/dx1", "dL/dx2"):
        lines.append(f"| {q} | {h[q]:.15f} | " + " | ".join(
            f"{k[q]:.15f}" for k in t["kernels"].values()) + " |")
    dev = max(abs(k[q] - h[q]) for k in t["kernels"].values() for q in k)
    lines += ["", f"Largest difference between the hand derivation and a kernel: {fmt(dev)}. "
              "The weight gradients are sums over time (dL/dw collects x1 and x2, dL/du collects "
              "h0 and h1), each term the gradient that reached that step times the step's local "
              "derivative: backpropagation through time is the chain rule applied step by step."]
    return "\n".join(lines)
