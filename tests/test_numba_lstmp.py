"""The numba backend's projected LSTM (lstmp, torch's ``proj_size``) against torch.

``fastseq.backends.numba.lstm_forward(..., w_hr=...)`` and ``lstm_backward`` are called
directly (the functional layer's wiring is tested where it lives), against a single-layer,
one-direction ``torch.nn.LSTM(proj_size=P)``: lengths through
``pack_padded_sequence(enforce_sorted=False)``, the reverse direction by flipping each
sequence within its length. Every output and every gradient, float64 <= 1e-9 and
float32 <= 2e-4 (``fastseq.max_error``); and finite differences in float64.
"""
import itertools

import numpy as np
import pytest

import fastseq

if "numba" not in fastseq.available_backends():
    pytest.skip("numba is not installed", allow_module_level=True)
torch = pytest.importorskip("torch", reason="torch is not installed: torch parity tests need it")

from fastseq.backends import backend_module  # noqa: E402

nb = backend_module("numba")
TOL = {np.float64: 1e-9, np.float32: 2e-4}


def make(T=6, B=4, I=5, H=7, P=3, *, dtype=np.float64, bias=True, init_state=True,
         lengths=None, reverse=False, seed=0):
    """A random lstmp problem: the arguments of lstm_forward and the cotangents."""
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(H)
    u = lambda *shape: rng.uniform(-k, k, size=shape).astype(dtype)  # noqa: E731
    n = lambda *shape: rng.standard_normal(shape).astype(dtype)  # noqa: E731
    if lengths == "vary":
        lengths = rng.integers(1, T + 1, size=B)
        lengths[rng.integers(B)] = T
    return dict(
        x=n(T, B, I), w_ih=u(4 * H, I), w_hh=u(4 * H, P), w_hr=u(P, H),
        b_ih=u(4 * H) if bias else None, b_hh=u(4 * H) if bias else None,
        h0=0.5 * n(B, P) if init_state else None, c0=0.5 * n(B, H) if init_state else None,
        lengths=None if lengths is None else np.asarray(lengths, np.int64), reverse=reverse,
        dy=n(T, B, P), dh_n=n(B, P), dc_n=n(B, H),
    )


def numba_run(p, training=True):
    """Every output and gradient of problem ``p`` on the numba backend, by name."""
    y, h_n, c_n, reserve = nb.lstm_forward(
        p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p["h0"], p["c0"], p["lengths"],
        p["reverse"], training, w_hr=p["w_hr"])
    out = dict(y=y, h_n=h_n, c_n=c_n)
    if training:
        out.update(nb.lstm_backward(reserve, p["dy"], p["dh_n"], p["dc_n"]))
    else:
        assert reserve is None
    return out


def torch_run(p):
    """The same outputs and gradients from torch.nn.LSTM(proj_size=P), in p's dtype."""
    T, B, I = p["x"].shape
    P, H = p["w_hr"].shape
    bias = p["b_ih"] is not None
    lengths = np.full(B, T) if p["lengths"] is None else p["lengths"]
    t = lambda a: torch.from_numpy(a.copy())  # noqa: E731
    layer = torch.nn.LSTM(I, H, proj_size=P, bias=bias, dtype=t(p["x"]).dtype)
    params = dict(w_ih="weight_ih_l0", w_hh="weight_hh_l0", w_hr="weight_hr_l0")
    if bias:
        params.update(b_ih="bias_ih_l0", b_hh="bias_hh_l0")
    with torch.no_grad():
        for ours, theirs in params.items():
            getattr(layer, theirs).copy_(t(p[ours]))
    x = t(p["x"]).requires_grad_()
    h0 = (t(p["h0"]) if p["h0"] is not None else torch.zeros(B, P, dtype=x.dtype)).requires_grad_()
    c0 = (t(p["c0"]) if p["c0"] is not None else torch.zeros(B, H, dtype=x.dtype)).requires_grad_()
    # time index of step t of sequence b: t, or L-1-t read backwards (t < L; beyond, any
    # index: packing drops those steps and pad_packed_sequence returns zeros there)
    steps = torch.arange(T)[:, None].expand(T, B)
    L = torch.from_numpy(np.asarray(lengths))[None, :]
    index = torch.where(steps < L, L - 1 - steps, steps) if p["reverse"] else steps
    batch = torch.arange(B)[None, :].expand(T, B)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        x[index, batch], torch.from_numpy(np.asarray(lengths)), enforce_sorted=False)
    out, (h_n, c_n) = layer(packed, (h0[None], c0[None]))
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    y = out[index, batch]  # the reverse direction's index is its own inverse
    h_n, c_n = h_n[0], c_n[0]
    loss = ((y * t(p["dy"])).sum() + (h_n * t(p["dh_n"])).sum() + (c_n * t(p["dc_n"])).sum())
    loss.backward()
    result = dict(y=y, h_n=h_n, c_n=c_n, dx=x.grad, dh0=h0.grad, dc0=c0.grad)
    for ours, theirs in params.items():
        result["d" + ours] = getattr(layer, theirs).grad
    if not bias:
        result["db_ih"] = result["db_hh"] = None
    return {k: None if v is None else v.detach().numpy() for k, v in result.items()}


def assert_close(got, ref, tol, where=""):
    assert set(got) == set(ref), f"{where}: names differ: {sorted(got)} vs {sorted(ref)}"
    errors = {}
    for name, value in ref.items():
        if value is None:
            assert got[name] is None, f"{where}: {name} should be None"
            continue
        assert got[name].shape == value.shape, f"{where}: {name} {got[name].shape} != {value.shape}"
        assert got[name].dtype == value.dtype, f"{where}: {name} has dtype {got[name].dtype}"
        errors[name] = fastseq.max_error(got[name], value)
    bad = {k: v for k, v in errors.items() if not v <= tol}
    assert not bad, f"{where}: error above {tol:g} in {bad} (all: {errors})"


OPTIONS = list(itertools.product([True, False], [True, False], [None, "vary"], [False, True]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias,init_state,lengths,reverse", OPTIONS)
def test_every_option_matches_torch(dtype, bias, init_state, lengths, reverse):
    p = make(dtype=dtype, bias=bias, init_state=init_state, lengths=lengths, reverse=reverse,
             seed=1)
    assert_close(numba_run(p), torch_run(p), TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("T,B,I,H,P", [(1, 1, 1, 2, 1), (5, 3, 4, 9, 8), (3, 17, 6, 33, 5),
                                       (4, 2, 3, 64, 1)])
def test_shapes_match_torch(dtype, T, B, I, H, P):
    p = make(T, B, I, H, P, dtype=dtype, lengths="vary" if B > 1 else None,
             reverse=T % 2 == 1, seed=T * B + H)
    assert_close(numba_run(p), torch_run(p), TOL[dtype], where=f"{(T, B, I, H, P)}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_inference_is_the_training_forward_and_inputs_stay_untouched(dtype):
    p = make(dtype=dtype, lengths="vary", reverse=True, seed=2)
    before = {k: v.copy() for k, v in p.items() if isinstance(v, np.ndarray)}
    inferred = numba_run(p, training=False)
    trained = numba_run(p)
    for name in inferred:
        np.testing.assert_array_equal(inferred[name], trained[name], err_msg=name)
    for name, value in before.items():
        np.testing.assert_array_equal(p[name], value, err_msg=f"{name} was modified")


def test_dw_hr_is_returned_only_with_a_projection():
    p = make(seed=3)
    assert "dw_hr" in numba_run(p)
    y, h_n, c_n, reserve = nb.lstm_forward(
        p["x"], p["w_ih"], np.zeros((4 * 7, 7)), p["b_ih"], p["b_hh"], None, None, None,
        False, True)
    assert y.shape == (6, 4, 7)
    assert "dw_hr" not in nb.lstm_backward(reserve, np.ones_like(y), None, None)


def test_absent_states_and_state_gradients_are_zeros():
    p = make(init_state=False, lengths="vary", seed=5)
    zeros = dict(p, h0=np.zeros((4, 3)), c0=np.zeros((4, 7)))
    without = dict(p, dh_n=None, dc_n=None)
    assert_close(numba_run(p), numba_run(zeros), 0.0)
    assert_close(numba_run(without), torch_run(dict(p, dh_n=0 * p["dh_n"], dc_n=0 * p["dc_n"])),
                 TOL[np.float64])


def test_gradcheck():
    p = make(T=3, B=2, I=3, H=4, P=2, lengths=[3, 2], reverse=True, seed=4)
    names = ["x", "w_ih", "w_hh", "w_hr", "b_ih", "b_hh", "h0", "c0"]

    def fn(**arrays):
        q = dict(p, **arrays)
        y, h_n, c_n, reserve = nb.lstm_forward(
            q["x"], q["w_ih"], q["w_hh"], q["b_ih"], q["b_hh"], q["h0"], q["c0"], q["lengths"],
            q["reverse"], True, w_hr=q["w_hr"])
        return (y, h_n, c_n), lambda d: nb.lstm_backward(reserve, *d)

    fastseq.gradcheck(fn, {n: p[n] for n in names}, tol=1e-6)
