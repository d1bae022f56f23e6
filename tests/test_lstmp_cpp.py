"""The projected LSTM (lstmp, torch's ``proj_size``) in the fused C++ kernels: forward and
every gradient against torch's ``nn.LSTM(proj_size=P)``, the same bits on 1, 2 and 3
threads, every instruction-set variant, lengths, reverse, no bias, no initial state, sizes
across the block and part boundaries, ``accumulate=``, and the arguments refused by name.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastseq
from fastseq import _core

torch = pytest.importorskip("torch")

TOL = {np.float64: 1e-9, np.float32: 2e-4}
GRADS = ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "dw_hr", "db_ih", "db_hh")


def err(got, ref):
    """max|got - ref| / max(max|ref|, 1), the suite's relative error."""
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.max(np.abs(np.asarray(got, np.float64) - ref)) / max(np.max(np.abs(ref)), 1.0))


def make(T, B, I, H, P, dtype, *, bias=True, lengths=False, states=True, seed=0):
    """Random arguments of a projected LSTM call and the gradients arriving from above."""
    rng = np.random.default_rng(seed)
    k = 1 / np.sqrt(H)
    u = lambda *shape: rng.uniform(-k, k, shape).astype(dtype)  # noqa: E731
    p = dict(x=rng.standard_normal((T, B, I)).astype(dtype), w_ih=u(4 * H, I),
             w_hh=u(4 * H, P), w_hr=u(P, H),
             b_ih=u(4 * H) if bias else None, b_hh=u(4 * H) if bias else None,
             h0=rng.standard_normal((B, P)).astype(dtype) if states else None,
             c0=rng.standard_normal((B, H)).astype(dtype) if states else None,
             lengths=rng.integers(1, T + 1, B).astype(np.int64) if lengths else None)
    if lengths:
        p["lengths"][0] = T  # the longest sequence is as long as x
    up = dict(dy=rng.standard_normal((T, B, P)).astype(dtype),
              dh_n=rng.standard_normal((B, P)).astype(dtype),
              dc_n=rng.standard_normal((B, H)).astype(dtype))
    return p, up


def run(p, up, reverse=False, accumulate=None):
    """fastseq's forward (training) and backward: (y, h_n, c_n), grads."""
    y, h_n, c_n, reserve = _core.lstm_forward(
        p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p["h0"], p["c0"], p["lengths"],
        reverse, True, w_hr=p["w_hr"])
    grads = _core.lstm_backward(reserve, up["dy"], up["dh_n"], up["dc_n"], accumulate=accumulate)
    return (y, h_n, c_n), grads


def torch_reference(p, up, reverse=False):
    """torch nn.LSTM(proj_size=P) in float64 on the same (upcast) arguments: (y, h_n, c_n),
    grads. Lengths through pack_padded_sequence; reverse by flipping each sequence within its
    own length (a differentiable gather, its own inverse)."""
    T, B, I = p["x"].shape
    P, H = p["w_hr"].shape
    t64 = lambda a: torch.tensor(np.asarray(a, np.float64))  # noqa: E731
    bias = p["b_ih"] is not None
    lstm = torch.nn.LSTM(I, H, proj_size=P, bias=bias, dtype=torch.float64)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(t64(p["w_ih"]))
        lstm.weight_hh_l0.copy_(t64(p["w_hh"]))
        lstm.weight_hr_l0.copy_(t64(p["w_hr"]))
        if bias:
            lstm.bias_ih_l0.copy_(t64(p["b_ih"]))
            lstm.bias_hh_l0.copy_(t64(p["b_hh"]))
    x = t64(p["x"]).requires_grad_()
    h0 = (t64(p["h0"]) if p["h0"] is not None else torch.zeros(B, P, dtype=torch.float64))
    c0 = (t64(p["c0"]) if p["c0"] is not None else torch.zeros(B, H, dtype=torch.float64))
    h0 = h0[None].clone().requires_grad_()
    c0 = c0[None].clone().requires_grad_()
    lengths = p["lengths"] if p["lengths"] is not None else np.full(B, T, np.int64)
    t = np.arange(T)[:, None]
    idx = np.where(t < lengths[None], lengths[None] - 1 - t, t) if reverse else np.broadcast_to(t, (T, B))
    cols = np.broadcast_to(np.arange(B)[None], (T, B))
    xin = x[torch.tensor(idx), torch.tensor(cols)]
    packed = torch.nn.utils.rnn.pack_padded_sequence(xin, torch.tensor(lengths),
                                                     enforce_sorted=False)
    out, (h_n, c_n) = lstm(packed, (h0, c0))
    y, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    y = y[torch.tensor(idx), torch.tensor(cols)]
    loss = ((y * t64(up["dy"])).sum() + (h_n[0] * t64(up["dh_n"])).sum()
            + (c_n[0] * t64(up["dc_n"])).sum())
    loss.backward()
    grads = dict(dx=x.grad, dh0=h0.grad[0], dc0=c0.grad[0], dw_ih=lstm.weight_ih_l0.grad,
                 dw_hh=lstm.weight_hh_l0.grad, dw_hr=lstm.weight_hr_l0.grad)
    if bias:
        grads.update(db_ih=lstm.bias_ih_l0.grad, db_hh=lstm.bias_hh_l0.grad)
    as_np = lambda a: a.detach().numpy()  # noqa: E731
    return tuple(as_np(a) for a in (y, h_n[0], c_n[0])), {k: as_np(v) for k, v in grads.items()}


def check_against_torch(p, up, reverse, dtype, what=""):
    (y, h_n, c_n), grads = run(p, up, reverse)
    (ry, rh, rc), rgrads = torch_reference(p, up, reverse)
    tol = TOL[dtype]
    for name, got, ref in (("y", y, ry), ("h_n", h_n, rh), ("c_n", c_n, rc)):
        assert got.dtype == dtype and got.shape == ref.shape, name
        assert err(got, ref) <= tol, f"{what} {name}: {err(got, ref):.3g}"
    assert set(k for k in grads if grads[k] is not None) == set(rgrads)
    for name, ref in rgrads.items():
        assert grads[name].shape == ref.shape, name
        assert err(grads[name], ref) <= tol, f"{what} {name}: {err(grads[name], ref):.3g}"


# (T, B, I, H, P, options): H not a multiple of 16, P not a multiple of a vector, B = 1 and
# 33, B = 64 without lengths (the input projection folded into the step product), and H = 520
# over N = 528 rows (the fixed-part products split: dW_hr's H columns, dx's rows).
CASES = [
    (5, 3, 4, 7, 3, dict()),
    (6, 33, 5, 19, 5, dict(lengths=True)),
    (4, 1, 3, 17, 9, dict(bias=False, states=False)),
    (3, 64, 8, 40, 20, dict()),
    (7, 5, 6, 33, 17, dict(lengths=True, states=False)),
]
BIG = (16, 33, 8, 520, 37, dict(lengths=True))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "T{}B{}I{}H{}P{}".format(*c[:5]))
def test_matches_torch(case, dtype, reverse):
    T, B, I, H, P, opts = case
    p, up = make(T, B, I, H, P, dtype, **opts)
    check_against_torch(p, up, reverse, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_torch_where_products_split(dtype):
    T, B, I, H, P, opts = BIG
    p, up = make(T, B, I, H, P, dtype, seed=3, **opts)
    check_against_torch(p, up, True, dtype)


@pytest.fixture
def threads():
    before = fastseq.get_num_threads()
    yield
    fastseq.set_num_threads(before)


@pytest.fixture
def isa():
    before = _core.selected_isa()
    yield
    _core.set_isa(before)


def outputs(p, up, reverse):
    (y, h_n, c_n), grads = run(p, up, reverse)
    inference = _core.lstm_forward(p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p["h0"],
                                   p["c0"], p["lengths"], reverse, False, w_hr=p["w_hr"])
    return dict(y=y, h_n=h_n, c_n=c_n, y_inference=inference[0], **grads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [CASES[1], CASES[3], BIG], ids=["lengths", "fused", "big"])
def test_same_bits_on_1_2_3_threads(case, dtype, threads):
    T, B, I, H, P, opts = case
    p, up = make(T, B, I, H, P, dtype, seed=5, **opts)
    results = []
    for n in (1, 2, 3):
        fastseq.set_num_threads(n)
        results.append(outputs(p, up, reverse=True))
    for n, r in zip((2, 3), results[1:]):
        for name, ref in results[0].items():
            if ref is None:
                assert r[name] is None
                continue
            assert np.array_equal(r[name], ref), f"{name} differs on {n} threads"
    # Inference writes the same outputs as the training forward.
    assert np.array_equal(results[0]["y"], results[0]["y_inference"])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_isa_matches_torch(dtype, isa):
    T, B, I, H, P, opts = CASES[1]
    p, up = make(T, B, I, H, P, dtype, seed=7, **opts)
    for name in fastseq.available_isas():
        fastseq.set_isa(name)
        check_against_torch(p, up, False, dtype, what=name)
        p64, up64 = make(3, 64, 8, 40, 20, dtype, seed=8)
        check_against_torch(p64, up64, True, dtype, what=name + " fused")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_accumulate_adds_every_parameter_gradient(dtype):
    T, B, I, H, P, opts = CASES[1]
    p, up = make(T, B, I, H, P, dtype, seed=9, **opts)
    _, fresh = run(p, up)
    rng = np.random.default_rng(1)
    keys = ("dw_ih", "dw_hh", "dw_hr", "db_ih", "db_hh")
    start = {k: rng.standard_normal(fresh[k].shape).astype(dtype) for k in keys}
    acc = {k: v.copy() for k, v in start.items()}
    acc["dw_hr"] = np.asfortranarray(acc["dw_hr"])  # any strides: added into afterwards
    _, grads = run(p, up, accumulate=acc)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for k in keys:
        assert grads[k] is acc[k], k
        assert err(acc[k], start[k] + fresh[k]) <= tol, k
    # The projected backward wants dw_hr too, and the plain LSTM's refuses it.
    p, up = make(T, B, I, H, P, dtype, seed=9, **opts)
    with pytest.raises(ValueError, match="no 'dw_hr'"):
        run(p, up, accumulate={k: start[k].copy() for k in keys if k != "dw_hr"})
    x, w_ih = p["x"], p["w_ih"]
    w_hh = np.zeros((4 * H, H), dtype)
    *_, reserve = _core.lstm_forward(x, w_ih, w_hh, training=True)
    with pytest.raises(ValueError, match="key 'dw_hr'"):
        _core.lstm_backward(reserve, np.zeros((T, B, H), dtype), accumulate=dict(
            dw_ih=np.zeros_like(w_ih), dw_hh=np.zeros_like(w_hh),
            dw_hr=np.zeros((P, H), dtype)))


def test_results_and_reserve_name_the_projection():
    p, up = make(4, 2, 3, 6, 2, np.float64)
    (y, h_n, c_n), grads = run(p, up)
    assert y.shape == (4, 2, 2) and h_n.shape == (2, 2) and c_n.shape == (2, 6)
    assert grads["dw_hr"].shape == (2, 6) and grads["dh0"].shape == (2, 2)
    *_, reserve = _core.lstm_forward(p["x"], p["w_ih"], p["w_hh"], w_hr=p["w_hr"],
                                     training=True)
    assert reserve.cell == "lstmp" and reserve.proj_size == 2 and "P=2" in repr(reserve)
    assert _core.lstm_forward(p["x"], p["w_ih"], p["w_hh"], w_hr=p["w_hr"])[3] is None
    # The plain LSTM's results have no dw_hr, its reserve no projection.
    w_hh = np.zeros((24, 6))
    *_, plain = _core.lstm_forward(p["x"], p["w_ih"], w_hh, training=True)
    assert plain.cell == "lstm" and plain.proj_size == 0
    assert "dw_hr" not in _core.lstm_backward(plain, np.zeros((4, 2, 6)))


def test_each_reserve_only_takes_its_own_gradients():
    # A plain LSTM's reserve refuses the projected gradients (P wide), and vice versa.
    p, up = make(4, 2, 3, 6, 2, np.float64)
    *_, plain = _core.lstm_forward(p["x"], p["w_ih"], np.zeros((24, 6)), training=True)
    with pytest.raises(ValueError, match=r"dy has shape \(4, 2, 2\), expected \(T, B, H\)"):
        _core.lstm_backward(plain, up["dy"])
    *_, projected = _core.lstm_forward(p["x"], p["w_ih"], p["w_hh"], w_hr=p["w_hr"],
                                       training=True)
    with pytest.raises(ValueError, match=r"dy has shape \(4, 2, 6\), expected \(T, B, P\)"):
        _core.lstm_backward(projected, np.zeros((4, 2, 6)))
    with pytest.raises(ValueError, match=r"dh_n has shape \(2, 6\), expected \(B, P\)"):
        _core.lstm_backward(projected, up["dy"], np.zeros((2, 6)))


@pytest.mark.parametrize("change, error, message", [
    (dict(w_hr=np.zeros((6, 6))), ValueError, r"w_hr has shape \(6, 6\), expected \(P, H\) with 0 < P < H"),
    (dict(w_hr=np.zeros((0, 6))), ValueError, r"w_hr has shape \(0, 6\)"),
    (dict(w_hr=np.zeros(6)), ValueError, r"w_hr has shape \(6,\)"),
    (dict(w_hr=np.zeros((2, 6), np.float32)), TypeError, r"w_hr has dtype float32"),
    (dict(w_hr=[[0.0] * 6] * 2), TypeError, r"w_hr must be a numpy.ndarray"),
    (dict(w_hr=np.zeros((2, 7))), ValueError, r"w_hh has shape \(24, 2\), expected \(G\*H, P\) = \(28, 2\)"),
    (dict(w_hh=np.zeros((24, 6))), ValueError, r"w_hh has shape \(24, 6\), expected \(G\*H, P\)"),
    (dict(h0=np.zeros((2, 6))), ValueError, r"h0 has shape \(2, 6\), expected \(B, P\)"),
    (dict(c0=np.zeros((2, 2))), ValueError, r"c0 has shape \(2, 2\), expected \(B, H\)"),
])
def test_bad_arguments_are_refused_by_name(change, error, message):
    p, _ = make(4, 2, 3, 6, 2, np.float64)
    p.update(change)
    with pytest.raises(error, match=message):
        _core.lstm_forward(p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p["h0"],
                           p["c0"], p["lengths"], False, True, w_hr=p["w_hr"])
