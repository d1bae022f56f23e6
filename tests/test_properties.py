"""Property-based tests (hypothesis): random problems — shapes, strides, dtypes, lengths,
options, thread counts — on every backend and through the C ABI, each output and gradient
held against the float64 reference. The profiles (how many examples, which seed policy)
are in conftest.py; a plain ``pytest`` runs the bounded ``ci`` one."""
from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from problems import CELLS, GATES, assert_matches, backward, forward, make_problem, reference_of, run, tolerance

import fastseq
from fastseq import functional as F

BACKENDS = fastseq.available_backends()

# Sizes: mostly small (cheap, and where the edge tiles are), sometimes around the SIMD
# widths and tile edges (8, 16, 32 floats; batch tiles), up to 40.
EDGES = [7, 8, 9, 15, 16, 17, 23, 24, 31, 32, 33, 40]


def size(low, high):
    edges = [e for e in EDGES if e <= high]
    small = st.integers(low, min(high, 9))
    return st.one_of(small, st.sampled_from(edges)) if edges else small


ARRAYS = ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0", "dy", "dh_n", "dc_n")
LAYOUTS = ("c", "fortran", "strided", "negative")


def relayout(a: np.ndarray, layout: str, axis: int) -> np.ndarray:
    """The same values as ``a`` in another memory layout (a view where possible)."""
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "strided":  # every other element of a wider array along ``axis``
        shape = list(a.shape)
        shape[axis] *= 2
        big = np.full(shape, np.nan, a.dtype)
        index = [slice(None)] * a.ndim
        index[axis] = slice(1, None, 2)
        big[tuple(index)] = a
        return big[tuple(index)]
    if layout == "negative":  # a view with a negative stride along ``axis``
        return np.flip(np.flip(a, axis).copy(), axis)
    return a


@st.composite
def problems(draw, cells=CELLS, dtypes=(np.float32, np.float64), layouts=LAYOUTS, max_T=40):
    """A random Problem and the layouts its arrays are given in."""
    cell = draw(st.sampled_from(cells))
    dtype = draw(st.sampled_from(dtypes))
    B, I, H = draw(size(1, 40)), draw(size(1, 40)), draw(size(1, 40))
    T = draw(size(1, max(1, min(max_T, 8000 // (B * H)))))  # keeps the reference fast
    bias, init_state, grad_state = draw(st.booleans()), draw(st.booleans()), draw(st.booleans())
    lengths = draw(st.none() | st.lists(st.integers(1, T), min_size=B, max_size=B))
    lengths_dtype = draw(st.sampled_from([np.int64, np.int32, np.uint16]))
    scales = [0.5, 1.0, 3.0] + ([30.0] if dtype == np.float64 else [])  # 30 saturates the gates
    p = make_problem(cell, T, B, I, H, dtype=dtype, bias=bias, init_state=init_state,
                     lengths=lengths, reverse=draw(st.booleans()), grad_state=grad_state,
                     scale=draw(st.sampled_from(scales)), seed=draw(st.integers(0, 2**32 - 1)))
    if p.lengths is not None:
        p.lengths = p.lengths.astype(lengths_dtype)
    chosen = {}
    for name in ARRAYS:
        a = getattr(p, name)
        if a is not None and len(layouts) > 1:
            chosen[name] = (draw(st.sampled_from(layouts)), draw(st.integers(0, a.ndim - 1)))
    return p, chosen


def relaid(p, chosen):
    return replace(p, **{name: relayout(getattr(p, name), *how) for name, how in chosen.items()})


@contextlib.contextmanager
def threads(n):
    previous = fastseq.get_num_threads()
    fastseq.set_num_threads(n)
    try:
        yield
    finally:
        fastseq.set_num_threads(previous)


def snapshot(p):
    return {k: v.copy() for k, v in vars(p).items() if isinstance(v, np.ndarray)}


def assert_unchanged(p, before):
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(p, name), value, err_msg=f"{name} was modified")


def where(p, backend, chosen, n_threads):
    T, B, I = p.x.shape
    return (f"{backend} {p.cell} {p.dtype} T={T} B={B} I={I} H={p.w_hh.shape[1]} "
            f"bias={p.b_ih is not None} h0={p.h0 is not None} lengths={p.lengths} "
            f"reverse={p.reverse} layouts={chosen} threads={n_threads}")


@pytest.mark.parametrize("backend", BACKENDS)
@given(case=problems(), n_threads=st.sampled_from([1, 2]), training=st.booleans())
def test_matches_reference(backend, case, n_threads, training):
    p, chosen = case
    ref = reference_of(p, training=training)
    q = relaid(p, chosen)
    before = snapshot(q)
    with threads(n_threads):
        got = run(q, backend, training=training)
    assert_unchanged(q, before)
    for name, value in got.items():
        assert value is None or value.dtype == p.dtype, f"{name} has dtype {value.dtype}"
    tol = tolerance(p.dtype)
    assert_matches(got, ref, tol, where(p, backend, chosen, n_threads))
    if p.lengths is not None:  # past each length: y and dx are zero
        past = np.arange(p.x.shape[0])[:, None] >= p.lengths.astype(np.int64)[None, :]
        assert not np.any(got["y"][past]), "y nonzero past a length"
        if training:
            assert not np.any(got["dx"][past]), "dx nonzero past a length"


@st.composite
def targets(draw, like: dict, dtype):
    """accumulate= targets: random start values, each in a random layout."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    out = {}
    for key, shape in like.items():
        start = rng.standard_normal(shape).astype(dtype)
        out[key] = relayout(start, draw(st.sampled_from(LAYOUTS)), draw(st.integers(0, len(shape) - 1)))
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@given(case=problems(max_T=12), n_threads=st.sampled_from([1, 2]), data=st.data())
def test_accumulate_adds_the_reference_gradient(backend, case, n_threads, data):
    p, chosen = case
    ref = reference_of(p)
    G, H, I = GATES[p.cell], p.w_hh.shape[1], p.x.shape[2]
    shapes = {"dw_ih": (G * H, I), "dw_hh": (G * H, H)}
    if p.b_ih is not None:
        shapes.update(db_ih=(G * H,), db_hh=(G * H,))
    into = data.draw(targets(shapes, p.dtype), label="targets")
    start = {k: v.astype(np.float64) for k, v in into.items()}
    q = relaid(p, chosen)
    with threads(n_threads), fastseq.use_backend(backend):
        _, ctx = forward(q)
        got = backward(q, ctx, accumulate=into)
    for key, target in into.items():
        assert got[key] is target, f"{key}: not returned as the target itself"
        expected = start[key] + ref[key]
        err = fastseq.max_error(target, expected)
        assert err <= tolerance(p.dtype), f"{key}: error {err:.3g} ({where(p, backend, chosen, n_threads)})"


# ---- the C ABI, through cffi -----------------------------------------------------------------

@given(case=problems(layouts=("c",)), n_threads=st.sampled_from([1, 2]), own_scratch=st.booleans())
def test_capi_matches_reference(case, n_threads, own_scratch):
    capi_tests = pytest.importorskip("test_capi")  # skips when libfastseq.so cannot load
    p, _ = case
    if p.lengths is not None:
        p.lengths = p.lengths.astype(np.int64)  # the C ABI takes int64_t lengths
    ref = reference_of(p)
    before = snapshot(p)
    with threads(n_threads):
        got = capi_tests.capi_run(p, own_scratch=own_scratch)
    assert_unchanged(p, before)
    assert_matches(got, ref, tolerance(p.dtype), where(p, "capi", {}, n_threads))


# ---- empty shapes ----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@given(cell=st.sampled_from(CELLS), dims=st.tuples(*[st.integers(0, 3)] * 4),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_empty_shapes_are_refused(backend, cell, dims, dtype):
    """T, B, I or H = 0 is refused with a ValueError naming x (or w_hh for H), on every
    backend: the documented rule is T, B, I, H >= 1 (functional's docstring, the backend
    contract and the C header's ``all sizes >= 1``)."""
    T, B, I, H = dims
    assume(0 in dims)
    G = GATES[cell]
    x, w_ih, w_hh = np.zeros((T, B, I), dtype), np.zeros((G * H, I), dtype), np.zeros((G * H, H), dtype)
    with fastseq.use_backend(backend), pytest.raises(ValueError) as info:
        if cell == "lstm":
            F.lstm_forward(x, w_ih, w_hh)
        elif cell.startswith("gru"):
            F.gru_forward(x, w_ih, w_hh, reset_after=cell == "gru")
        else:
            F.rnn_forward(x, w_ih, w_hh, nonlinearity=cell[4:])
    name = "x" if 0 in (T, B, I) else "w_hh"
    assert name in str(info.value).replace("(", " ").split(), str(info.value)
