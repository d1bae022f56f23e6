"""Test problems: random recurrent-layer inputs, and one function that runs a problem
forward and backward through ``fastseq.functional`` on a chosen backend, returning
every output and gradient by name. Shared by the kernel, reference and torch tests.

``CELLS`` are the cells every backend runs, the suites' parametrization; the projection
cell (lstmp) runs in test_lstmp.py over its own ``PROJECTION_BACKENDS`` until every
backend has it (then it joins ``CELLS``). ``ALL_CELLS`` lists every cell of the package:
the reference tests, which run on the reference backend only, use it."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

import fastseq
from fastseq import functional as F

GATES = {name: cell.gates for name, cell in fastseq.cells.CELLS.items()}
ALL_CELLS = tuple(GATES)
#: The cells with a projection (a ``w_hr`` parameter).
PROJECTED = tuple(n for n, c in fastseq.cells.CELLS.items() if "w_hr" in c.parameters)
CELLS = tuple(n for n in ALL_CELLS if n not in PROJECTED)
#: The LSTM family's cells, which take c0 and return c_n.
LSTM_CELLS = tuple(n for n, c in fastseq.cells.CELLS.items() if c.family == "lstm")


@dataclass
class Problem:
    cell: str
    x: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray | None
    b_hh: np.ndarray | None
    h0: np.ndarray | None
    c0: np.ndarray | None
    lengths: np.ndarray | None
    reverse: bool
    dy: np.ndarray
    dh_n: np.ndarray | None
    dc_n: np.ndarray | None
    w_hr: np.ndarray | None = None  # the projection's (P, H), lstmp only
    tags: dict = field(default_factory=dict)

    @property
    def dtype(self):
        return self.x.dtype

    def astype(self, dtype) -> "Problem":
        """The same problem with every array cast to ``dtype`` (lengths stay integers)."""
        cast = {k: (None if v is None else v.astype(dtype))
                for k, v in vars(self).items()
                if isinstance(v, np.ndarray) and k != "lengths"}
        return replace(self, **cast)


def make_problem(cell, T=5, B=3, I=4, H=6, *, dtype=np.float64, bias=True, init_state=True,
                 lengths=None, reverse=False, grad_state=True, scale=1.0, seed=0,
                 P=None) -> Problem:
    """A random problem. ``lengths``: None, "vary" (random in 1..T, unsorted, one equal to T)
    or an explicit list. ``scale`` multiplies x (large values saturate the gates).
    ``P``: the projection size of lstmp (default max(1, H // 2); H must be >= 2)."""
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    k = 1.0 / np.sqrt(H)
    u = lambda *shape: rng.uniform(-k, k, size=shape)  # noqa: E731  (torch's initialisation)
    n = lambda *shape: rng.standard_normal(shape)  # noqa: E731
    if isinstance(lengths, str) and lengths == "vary":
        lengths = rng.integers(1, T + 1, size=B)
        lengths[rng.integers(B)] = T
    if lengths is not None:
        lengths = np.asarray(lengths, dtype=np.int64)
    has_c = cell in LSTM_CELLS
    # E: the width of h and y, the projection size P for lstmp, else H.
    E = (P if P is not None else max(1, H // 2)) if cell in PROJECTED else H
    p = Problem(
        cell=cell, x=scale * n(T, B, I), w_ih=u(G * H, I), w_hh=u(G * H, E),
        b_ih=u(G * H) if bias else None, b_hh=u(G * H) if bias else None,
        h0=0.5 * n(B, E) if init_state else None,
        c0=0.5 * n(B, H) if (init_state and has_c) else None,
        lengths=lengths, reverse=reverse, dy=n(T, B, E),
        dh_n=n(B, E) if grad_state else None,
        dc_n=n(B, H) if (grad_state and has_c) else None,
        w_hr=u(E, H) if cell in PROJECTED else None,
    )
    return p.astype(dtype)


def forward(p: Problem, training=True):
    """Run the forward of ``p`` on the active backend: (outputs dict, ctx)."""
    common = dict(lengths=p.lengths, reverse=p.reverse, training=training)
    args = (p.x, p.w_ih, p.w_hh, p.b_ih, p.b_hh, p.h0)
    if p.cell in LSTM_CELLS:
        y, h_n, c_n, ctx = F.lstm_forward(*args, p.c0, w_hr=p.w_hr, **common)
        return {"y": y, "h_n": h_n, "c_n": c_n}, ctx
    if p.cell.startswith("gru"):
        y, h_n, ctx = F.gru_forward(*args, reset_after=p.cell == "gru", **common)
    else:
        y, h_n, ctx = F.rnn_forward(*args, nonlinearity=p.cell[4:], **common)
    return {"y": y, "h_n": h_n}, ctx


def backward(p: Problem, ctx, accumulate=None, **kw):
    """The family's backward of ``p`` (``kw``: its other keywords, e.g. need_dx)."""
    if p.cell in LSTM_CELLS:
        return F.lstm_backward(ctx, p.dy, p.dh_n, p.dc_n, accumulate=accumulate, **kw)
    if p.cell.startswith("gru"):
        return F.gru_backward(ctx, p.dy, p.dh_n, accumulate=accumulate, **kw)
    return F.rnn_backward(ctx, p.dy, p.dh_n, accumulate=accumulate, **kw)


def run(p: Problem, backend: str, training=True) -> dict:
    """Every output and (when training) every gradient of ``p`` on ``backend``, by name."""
    with fastseq.use_backend(backend):
        out, ctx = forward(p, training=training)
        if training:
            out.update(backward(p, ctx))
    return out


def assert_same_bits_for_any_thread_count(p: Problem, backend: str = "cpp") -> None:
    """The README's determinism contract: every output and gradient of ``p`` has the same
    bits on 2 threads again, and on 1 and 3 threads, as on 2."""
    before = fastseq.get_num_threads()
    try:
        fastseq.set_num_threads(2)
        first = run(p, backend)
        results = {"2 again": run(p, backend)}
        for n in (1, 3):
            fastseq.set_num_threads(n)
            results[f"{n} threads"] = run(p, backend)
    finally:
        fastseq.set_num_threads(before)
    for how, got in results.items():
        for name, value in first.items():
            if value is not None:
                np.testing.assert_array_equal(got[name], value, err_msg=f"{name}, {how}")


def assert_matches(got: dict, ref: dict, tol: float, where: str = "") -> dict:
    """Compare every named tensor; fail listing each one above ``tol``."""
    assert set(got) == set(ref), f"{where}: names differ: {sorted(got)} vs {sorted(ref)}"
    errors = {}
    for name in ref:
        if ref[name] is None or got[name] is None:
            assert ref[name] is None and got[name] is None, f"{where}: {name} is None on one side only"
            continue
        assert got[name].shape == ref[name].shape, f"{where}: {name} shape {got[name].shape} != {ref[name].shape}"
        errors[name] = fastseq.max_error(got[name], ref[name])
    bad = {k: v for k, v in errors.items() if not v <= tol}
    assert not bad, f"{where}: error above {tol:g} in {bad} (all: {errors})"
    return errors


def tolerance(dtype) -> float:
    """Backend vs the float64 reference: 1e-10 in float64, 1e-4 in float32."""
    return 1e-10 if np.dtype(dtype) == np.float64 else 1e-4


def reference_of(p: Problem, training=True) -> dict:
    """The float64 reference on the same (possibly float32-rounded) inputs."""
    return run(p.astype(np.float64), "reference", training=training)


def gradcheck_problem(p: Problem, backend: str, tol: float = 1e-6) -> dict:
    """``fastseq.gradcheck`` of every input and parameter of ``p`` on ``backend`` (float64)."""
    names = [n for n in ("x", "w_ih", "w_hh", "w_hr", "b_ih", "b_hh", "h0", "c0")
             if getattr(p, n) is not None]
    grad_name = {n: "d" + n for n in names}

    def fn(**arrays):
        q = replace(p, **arrays)
        with fastseq.use_backend(backend):
            out, ctx = forward(q)
        keys = ["y", "h_n"] + (["c_n"] if p.cell in LSTM_CELLS else [])

        def vjp(cotangents):
            d = dict(zip(keys, cotangents))
            q2 = replace(q, dy=d["y"], dh_n=d["h_n"], dc_n=d.get("c_n"))
            with fastseq.use_backend(backend):
                g = backward(q2, ctx)
            return {n: g[grad_name[n]] for n in names}

        return tuple(out[k] for k in keys), vjp

    return fastseq.gradcheck(fn, {n: getattr(p, n) for n in names}, tol=tol)
