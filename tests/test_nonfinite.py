"""Non-finite values propagate: a NaN or an infinity anywhere in the inputs, the parameters,
the initial states or the incoming gradients makes every output and gradient that depends on
it non-finite, on every backend and every instruction set, for every cell. Divergence must
show; it must never come back as finite numbers (a relu derivative taken as ``h > 0``, an
activation clamp that turns NaN into its bound, a sigmoid of -inf that is not exactly 0 so
that 0 * inf becomes a finite product, ...).

The exact pattern need not match the reference's, so the checks are:

* every element the float64 reference (on the same inputs) makes non-finite is non-finite;
* per array and, for arrays with a batch axis, per sequence: NaN reaches what the structure
  of the recurrence says depends on the injected value. A value in sequence b (x, h0, c0; dy,
  dh_n, dc_n) reaches sequence b's forward outputs (not from the incoming gradients),
  sequence b's input and state gradients, and every parameter gradient; the other sequences
  stay finite. A parameter reaches everything. An infinity can vanish legitimately
  (tanh(inf) = 1, relu(-inf) = 0), so there the reference says which arrays and sequences.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import fastseq
from problems import CELLS, GATES, make_problem, run

# NumPy's "invalid value" warnings are the point here.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

# (backend, isa): the cpp backend once per instruction set this CPU runs.
_HAS_CPP = "cpp" in fastseq.available_backends()
VARIANTS = [("cpp", isa) for isa in (fastseq.available_isas() if _HAS_CPP else [])]
VARIANTS += [(b, None) for b in fastseq.available_backends() if b != "cpp"]


@pytest.fixture(params=VARIANTS, ids=[b if i is None else f"{b}-{i}" for b, i in VARIANTS])
def variant(request):
    backend, isa = request.param
    if isa is None:
        yield backend
        return
    before = fastseq.get_isa()
    fastseq.set_isa(isa)
    try:
        yield backend
    finally:
        fastseq.set_isa(before)


# H = 17: one full vector block of every ISA and a partial one, so both epilogue variants run.
T, B, I, H = 4, 3, 5, 17
LENGTHS = [4, 3, 2]
B0, T0 = 1, 1          # the sequence and (valid) step a value is injected into
UNITS = (3, 16)        # a unit in the full block and one in the partial block
BATCH_AXIS = {"y": 1, "dx": 1, "h_n": 0, "c_n": 0, "dh0": 0, "dc0": 0}
FORWARD = ("y", "h_n", "c_n")


def sites(cell):
    """(array name, index) of every place a value is injected into, for ``cell``."""
    G = GATES[cell]
    out = []
    for j in UNITS:
        out += [("x", (T0, B0, j % I)), ("h0", (B0, j)), ("dy", (T0, B0, j)), ("dh_n", (B0, j))]
        if cell == "lstm":
            out += [("c0", (B0, j)), ("dc_n", (B0, j))]
        for g in range(G):  # each gate's rows
            k = g * H + j
            out += [("w_ih", (k, j % I)), ("w_hh", (k, (j + 1) % H)), ("b_ih", (k,)),
                    ("b_hh", (k,))]
    return out


def site_ids(cell):
    return [f"{name}{list(idx)}" for name, idx in sites(cell)]


def problem(cell, dtype, reverse):
    return make_problem(cell, T=T, B=B, I=I, H=H, dtype=dtype, lengths=LENGTHS,
                        reverse=reverse, seed=21)


def inject(p, name, idx, value):
    a = getattr(p, name).copy()
    a[idx] = value
    return dataclasses.replace(p, **{name: a})


def nonfinite_map(out: dict) -> dict:
    """Per output: one bool per sequence (arrays with a batch axis) or one bool."""
    m = {}
    for name, v in out.items():
        if v is None:
            continue
        bad = ~np.isfinite(v)
        if name in BATCH_AXIS:
            m[name] = tuple(bool(x) for x in np.moveaxis(bad, BATCH_AXIS[name], 0)
                            .reshape(v.shape[BATCH_AXIS[name]], -1).any(axis=1))
        else:
            m[name] = bool(bad.any())
    return m


def expected_nan_map(out: dict, name: str) -> dict:
    """What a NaN injected into ``name`` (sequence B0, or a parameter) reaches."""
    per_row = name in ("x", "h0", "c0", "dy", "dh_n", "dc_n")
    grad_only = name in ("dy", "dh_n", "dc_n")
    m = {}
    for k, v in out.items():
        if v is None:
            continue
        reached = not (grad_only and k in FORWARD)
        if k in BATCH_AXIS:
            rows = v.shape[BATCH_AXIS[k]]
            m[k] = tuple(reached and (not per_row or b == B0) for b in range(rows))
        else:
            m[k] = reached
    return m


def assert_covers(got: dict, ref: dict, what: str):
    """Every element non-finite in ``ref`` is non-finite in ``got``, but for padding (where
    the contract says zero; the reference's dx there is 0 · w_ih, NaN for a NaN weight)."""
    valid = np.arange(T)[:, None] < np.asarray(LENGTHS)[None, :]  # (t, b) holds data
    for k, r in ref.items():
        if r is None:
            continue
        missed = ~np.isfinite(r) & np.isfinite(got[k])
        if k in ("y", "dx"):
            missed &= valid[:, :, None]
        assert not missed.any(), (
            f"{what}: {k} finite at {missed.sum()} of the {(~np.isfinite(r)).sum()} elements "
            f"the reference makes non-finite, first at {np.argwhere(missed)[0].tolist()}")


CASES = [(cell, name, idx) for cell in CELLS for name, idx in sites(cell)]
CASE_IDS = [f"{cell}-{i}" for cell in CELLS for i in site_ids(cell)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell,name,idx", CASES, ids=CASE_IDS)
def test_nan_reaches_everything_that_depends_on_it(variant, cell, name, idx, dtype):
    for reverse in (False, True):
        q = inject(problem(cell, dtype, reverse), name, idx, np.nan)
        what = f"{variant} reverse={reverse}: NaN in {name}{list(idx)}"
        out = run(q, variant)
        assert_covers(out, run(q.astype(np.float64), "reference"), what)
        got, want = nonfinite_map(out), expected_nan_map(out, name)
        assert got == want, what + ": " + ", ".join(
            f"{k} {got[k]} (want {want[k]})" for k in want if got[k] != want[k])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell,name,idx", CASES, ids=CASE_IDS)
def test_inf_is_nonfinite_where_the_reference_is(variant, cell, name, idx, dtype):
    for reverse in (False, True):
        p = problem(cell, dtype, reverse)
        for value in (np.inf, -np.inf):
            q = inject(p, name, idx, value)
            what = f"{variant} reverse={reverse}: {value} in {name}{list(idx)}"
            out, ref = run(q, variant), run(q.astype(np.float64), "reference")
            assert_covers(out, ref, what)
            got, want = nonfinite_map(out), nonfinite_map(ref)
            assert got == want, what + ": " + ", ".join(
                f"{k} {got[k]} (want {want[k]})" for k in want if got[k] != want[k])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", CELLS)
def test_single_row_products_do_not_read_a_reused_buffers_nans(variant, cell, dtype):
    """A call of one step of one sequence (T = B = 1) makes its single-row products GEMVs
    (gemm/blas.cpp), which must not read the output they overwrite: that output is a pooled
    buffer, and the NaNs a diverged call left in it must not leak into the next call."""
    poisoned = make_problem(cell, T=1, B=1, I=I, H=H, dtype=dtype)
    poisoned = dataclasses.replace(poisoned, x=np.full_like(poisoned.x, np.nan),
                                   dy=np.full_like(poisoned.dy, np.nan))
    clean = make_problem(cell, T=1, B=1, I=I, H=H, dtype=dtype, seed=1)
    ref = run(clean.astype(np.float64), "reference")
    for _ in range(2):  # the poisoned call leaves its NaN planes in the pool for the next
        run(poisoned, variant)
        got = run(clean, variant)
        for name, value in ref.items():
            if value is None:
                continue
            assert np.isfinite(got[name]).all(), f"{name} took NaN from the reused buffer"
            err = fastseq.max_error(got[name], value)
            assert err <= (1e-10 if dtype == np.float64 else 1e-4), (name, err)
