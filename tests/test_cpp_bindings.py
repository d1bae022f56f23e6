"""The cpp backend's own promises, straight into ``fastseq._core`` (no functional layer in
front): every bad argument is refused with the right exception naming it, any strides or
alignment are accepted, the reserve refuses another configuration, kernels release the GIL
and give the same bits from two threads at once, and saturating inputs stay finite.
Agreement with the reference on every option is tests/test_backends.py's job."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import fastseq
from fastseq.backends import reference

_core = pytest.importorskip("fastseq._core")
cpp = fastseq.backends.backend_module("cpp") if "cpp" in fastseq.available_backends() else None
pytestmark = pytest.mark.skipif(cpp is None, reason="the cpp backend does not load")

# The projection cell (lstmp) is held to torch on every backend by tests/test_lstmp.py and,
# the C++ kernels in more depth, by tests/test_lstmp_cpp.py; make() here builds no w_hr.
GATES = {name: cell.gates for name, cell in fastseq.cells.CELLS.items()
         if "w_hr" not in cell.parameters}
CELLS = tuple(GATES)


def make(cell, T=5, B=3, I=4, H=6, dtype=np.float64, bias=True, state=True, lengths=None,
         scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    k = 1 / np.sqrt(H)
    a = dict(
        x=scale * rng.standard_normal((T, B, I)),
        w_ih=rng.uniform(-k, k, (G * H, I)), w_hh=rng.uniform(-k, k, (G * H, H)),
        b_ih=rng.uniform(-k, k, G * H) if bias else None,
        b_hh=rng.uniform(-k, k, G * H) if bias else None,
        h0=0.5 * rng.standard_normal((B, H)) if state else None,
    )
    a = {n: (None if v is None else v.astype(dtype)) for n, v in a.items()}
    if cell == "lstm":
        a["c0"] = (0.5 * rng.standard_normal((B, H))).astype(dtype) if state else None
    a["lengths"] = None if lengths is None else np.asarray(lengths, dtype=np.int64)
    grads = dict(dy=rng.standard_normal((T, B, H)).astype(dtype),
                 dh_n=rng.standard_normal((B, H)).astype(dtype))
    if cell == "lstm":
        grads["dc_n"] = rng.standard_normal((B, H)).astype(dtype)
    return a, grads


def family(cell):
    return "lstm" if cell == "lstm" else "gru" if cell.startswith("gru") else "rnn"


def options(cell):
    if cell.startswith("rnn"):
        return {"nonlinearity": cell[4:]}
    if cell.startswith("gru"):
        return {"reset_after": cell == "gru"}
    return {}


def run(mod, cell, args, grads, reverse=False, training=True):
    """All outputs and gradients by name."""
    fam = family(cell)
    out = getattr(mod, f"{fam}_forward")(**args, reverse=reverse, training=training,
                                         **options(cell))
    res = dict(zip(("y", "h_n", "c_n") if fam == "lstm" else ("y", "h_n"), out[:-1]))
    if training:
        res.update(getattr(mod, f"{fam}_backward")(out[-1], **grads))
    return res


def max_err(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1.0))


# --------------------------------------------------------------------------- bad input


def lstm_args(**change):
    a, _ = make("lstm", dtype=np.float32)
    a.update(change)
    return a


F32 = np.float32


@pytest.mark.parametrize("fn", ["core", "backend"])
@pytest.mark.parametrize("change,exc,words", [
    (dict(x=[[[1.0]]]), TypeError, ["x", "numpy.ndarray", "list"]),
    (dict(x=np.zeros((5, 3, 4), np.int64)), TypeError, ["x", "int64", "float32 or float64"]),
    (dict(x=np.zeros((5, 3, 4), np.float16)), TypeError, ["x", "float16"]),
    (dict(x=np.zeros((5, 3, 4), ">f4")), TypeError, ["x", ">f4"]),
    (dict(x=np.zeros((5, 3), F32)), ValueError, ["x", "(5, 3)", "(T, B, I)"]),
    (dict(x=np.zeros((0, 3, 4), F32)), ValueError, ["x", "(0, 3, 4)", ">= 1"]),
    (dict(w_ih=np.zeros((24, 4))), TypeError, ["w_ih", "float64", "float32"]),
    (dict(w_ih=np.zeros((24, 5), F32)), ValueError, ["w_ih", "(24, 5)", "(24, 4)"]),
    (dict(w_hh=np.zeros((20, 6), F32)), ValueError, ["w_hh", "(20, 6)", "(24, 6)"]),
    (dict(w_hh=np.zeros(24, F32)), ValueError, ["w_hh", "(24,)"]),
    (dict(b_ih=np.zeros(23, F32)), ValueError, ["b_ih", "(23,)", "(24,)"]),
    (dict(b_hh=np.zeros((24, 1), F32)), ValueError, ["b_hh", "(24, 1)", "(24,)"]),
    (dict(b_hh=None), ValueError, ["b_ih", "b_hh", "both"]),
    (dict(b_ih=np.zeros(24)), TypeError, ["b_ih", "float64"]),
    (dict(h0=np.zeros((3, 5), F32)), ValueError, ["h0", "(3, 5)", "(3, 6)"]),
    (dict(c0=np.zeros((2, 6), F32)), ValueError, ["c0", "(2, 6)", "(3, 6)"]),
    (dict(c0=np.zeros((3, 6))), TypeError, ["c0", "float64"]),
    (dict(lengths=np.array([1, 2, 3], np.int32)), TypeError, ["lengths", "int32", "int64"]),
    (dict(lengths=np.array([1.0, 2, 3])), TypeError, ["lengths", "float64"]),
    (dict(lengths=np.array([1, 2], np.int64)), ValueError, ["lengths", "(2,)", "(3,)"]),
    (dict(lengths=np.array([1, 6, 3], np.int64)), ValueError, ["lengths[1] = 6", "0..5"]),
    (dict(lengths=np.array([-1, 2, 3], np.int64)), ValueError, ["lengths[0] = -1", "0..5"]),
])
def test_bad_forward_arguments_are_refused(fn, change, exc, words):
    f = _core.lstm_forward if fn == "core" else cpp.lstm_forward
    with pytest.raises(exc) as info:
        f(**lstm_args(**change), training=True)
    for w in words:
        assert w in str(info.value), f"{w!r} not in {info.value}"


def test_bad_flags_are_refused():
    a, _ = make("rnn_tanh")
    with pytest.raises(ValueError, match="nonlinearity"):
        _core.rnn_forward(**a, nonlinearity="sigmoid")
    with pytest.raises(TypeError):
        _core.rnn_forward(**a, reverse="yes")


@pytest.mark.parametrize("cell", CELLS)
def test_reserve_from_another_configuration_is_refused(cell):
    a, g = make(cell, dtype=np.float32)
    fam = family(cell)
    fwd, bwd = getattr(_core, f"{fam}_forward"), getattr(_core, f"{fam}_backward")
    out = fwd(**a, training=True, **options(cell))
    reserve = out[-1]
    assert isinstance(reserve, _core.Reserve)
    assert reserve.shape == (5, 3, 4, 6) and reserve.dtype == np.float32
    assert reserve.cell == cell and not reserve.consumed and reserve.nbytes > 0
    # Another cell's backward.
    other = "gru" if fam != "gru" else "lstm"
    with pytest.raises(ValueError, match=f"comes from a {cell} forward"):
        getattr(_core, f"{other}_backward")(reserve, g["dy"])
    # Gradients of another shape or dtype than the forward's.
    with pytest.raises(ValueError, match=r"dy has shape \(5, 3, 7\), expected \(T, B, H\) = \(5, 3, 6\)"):
        bwd(reserve, np.zeros((5, 3, 7), np.float32))
    with pytest.raises(ValueError, match=r"dy has shape \(4, 3, 6\)"):
        bwd(reserve, np.zeros((4, 3, 6), np.float32))
    with pytest.raises(TypeError, match="dy has dtype float64, expected float32"):
        bwd(reserve, g["dy"].astype(np.float64))
    with pytest.raises(ValueError, match=r"dh_n has shape \(3, 5\)"):
        bwd(reserve, g["dy"], np.zeros((3, 5), np.float32))
    if cell == "lstm":
        with pytest.raises(ValueError, match=r"dc_n has shape \(1, 6\)"):
            bwd(reserve, g["dy"], None, np.zeros((1, 6), np.float32))
    # Not a reserve at all.
    for bad in (None, np.zeros(10, np.float32), "reserve"):
        with pytest.raises(TypeError, match="reserve must be the Reserve"):
            bwd(bad, g["dy"])
    # None of the refusals consumed it; the first real backward does, the second is refused.
    assert not reserve.consumed
    bwd(reserve, **g)
    assert reserve.consumed and "consumed" in repr(reserve)
    with pytest.raises(ValueError, match="already used"):
        bwd(reserve, **g)


def test_inference_returns_no_reserve():
    a, _ = make("gru")
    y, h_n, reserve = _core.gru_forward(**a, training=False)
    assert reserve is None and y.shape == (5, 3, 6) and h_n.shape == (3, 6)


# --------------------------------------------------------------------------- layouts


def strided(a, kind):
    """The same values as a, laid out differently in memory."""
    if a is None:
        return None
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "negative":
        b = np.flip(a, axis=0).copy()
        return np.flip(b, axis=0)
    if kind == "every_other":
        b = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        b[..., ::2] = a
        return b[..., ::2]
    if kind == "misaligned":
        raw = np.zeros(a.nbytes + 1, np.uint8)
        b = np.frombuffer(raw.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
        b[...] = a
        assert not b.flags.aligned
        return b
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["fortran", "negative", "every_other", "misaligned"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_any_strides_give_the_contiguous_bits(cell, kind):
    a, g = make(cell, T=4, B=3, I=5, H=7, lengths=[4, 2, 3], dtype=np.float32)
    want = run(_core, cell, a, g, reverse=True)
    a2 = {n: (v if n == "lengths" else strided(v, kind)) for n, v in a.items()}
    a2["lengths"] = strided(a["lengths"], kind)
    g2 = {n: strided(v, kind) for n, v in g.items()}
    before = {n: v.copy() for n, v in {**a2, **g2}.items() if v is not None}
    got = run(_core, cell, a2, g2, reverse=True)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        if got[name] is not None:
            assert got[name].flags.c_contiguous and got[name].dtype == np.float32
    for n, v in before.items():
        np.testing.assert_array_equal({**a2, **g2}[n], v, err_msg=f"{n} was modified")


@pytest.mark.parametrize("cell", CELLS)
def test_core_matches_reference_directly(cell):
    a, g = make(cell, T=6, B=4, I=3, H=5, lengths=[6, 1, 4, 3], seed=3)
    for reverse in (False, True):
        got = run(_core, cell, a, g, reverse=reverse)
        ref = run(reference, cell, a, g, reverse=reverse)
        for name in ref:
            if ref[name] is None:
                assert got[name] is None, name
            else:
                assert max_err(got[name], ref[name]) <= 1e-10, (name, reverse)


# --------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("dtype,tol", [(np.float64, 4e-16), (np.float32, 3e-7)])
def test_tanh_error_bound_and_exact_saturation(dtype, tol):
    # A one-unit RNN with w_ih = 1 and w_hh = 0 computes y = tanh(x): the activation alone.
    x = np.concatenate([np.linspace(-20, 20, 40001), [-1e4, 1e4, -1e30, 1e30, -np.inf, np.inf]])
    x = x.astype(dtype).reshape(-1, 1, 1)
    one, zero = np.ones((1, 1), dtype), np.zeros((1, 1), dtype)
    y, _, _ = _core.rnn_forward(x, one, zero)
    exact = np.tanh(x.astype(np.float64))
    assert np.max(np.abs(y[:-6] - exact[:-6])) <= tol
    np.testing.assert_array_equal(y[-6:].ravel(), np.array([-1, 1, -1, 1, -1, 1], dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_reset_before", "rnn_tanh"])
def test_saturating_inputs_stay_finite(cell, dtype):
    a, g = make(cell, T=8, B=4, I=6, H=10, dtype=dtype, scale=1e4, lengths=[8, 3, 5, 1])
    a["w_hh"] *= 50  # saturate through the recurrence too
    for reverse in (False, True):
        got = run(_core, cell, a, g, reverse=reverse)
        for name, v in got.items():
            if v is not None:
                assert np.all(np.isfinite(v)), f"{name} not finite (reverse={reverse})"


def test_nan_propagates_and_stays_in_its_sequence():
    a, g = make("gru", T=4, B=2)
    a["x"][1, 0, 2] = np.nan
    y, h_n, _ = _core.gru_forward(**a)
    assert np.isnan(y[1:, 0]).all() and np.isfinite(y[:, 1]).all()


# --------------------------------------------------------------------------- threads, bits


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_bits_every_run(cell, dtype):
    a, g = make(cell, T=9, B=5, I=7, H=33, dtype=dtype, lengths=[9, 2, 5, 9, 1], seed=5)
    first = run(_core, cell, a, g, reverse=True)
    for _ in range(2):
        again = run(_core, cell, a, g, reverse=True)
        for name in first:
            np.testing.assert_array_equal(again[name], first[name], err_msg=name)


def test_two_threads_at_once_give_the_sequential_bits():
    jobs = [("lstm", 1), ("gru", 2), ("gru_reset_before", 3), ("rnn_tanh", 4)]
    problems = [make(cell, T=30, B=16, I=64, H=96, dtype=np.float32, lengths=None if s % 2 else
                     np.random.default_rng(s).integers(1, 31, 16), seed=s) for cell, s in jobs]
    sequential = [run(_core, cell, *p, reverse=bool(s % 2)) for (cell, s), p in zip(jobs, problems)]
    results = [[] for _ in jobs]
    start = threading.Barrier(2)

    def work(indices):
        start.wait()
        for _ in range(3):
            for k in indices:
                cell, s = jobs[k]
                results[k].append(run(_core, cell, *problems[k], reverse=bool(s % 2)))

    threads = [threading.Thread(target=work, args=(ks,)) for ks in ([0, 1, 2, 3], [3, 2, 1, 0])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(len(jobs)):
        assert len(results[k]) == 6
        for res in results[k]:
            for name, value in sequential[k].items():
                np.testing.assert_array_equal(res[name], value, err_msg=f"{jobs[k]} {name}")


def test_kernels_release_the_gil():
    # While one thread is inside a long kernel, another thread keeps running Python.
    a, _ = make("lstm", T=400, B=32, I=128, H=128, dtype=np.float32)
    ticks = []
    done = threading.Event()

    def kernel():
        _core.lstm_forward(**a)
        done.set()

    t = threading.Thread(target=kernel)
    t.start()
    while not done.is_set():
        ticks.append(1)
        done.wait(0.0005)
    t.join()
    assert len(ticks) > 3
