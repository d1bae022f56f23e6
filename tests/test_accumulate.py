"""Backward's ``accumulate``: parameter gradients added into the caller's arrays (what a
layer's ``backward`` does with each parameter's ``grad``). Every backend must give
``target + gradient`` in the target itself, for any strides and even when a target shares
memory with an input or another target; bad targets are refused by name."""
import numpy as np
import pytest

import fastseq
from problems import CELLS, backward, forward, make_problem

PARAM_GRADS = ("dw_ih", "dw_hh", "db_ih", "db_hh")


def grads_of(p, backend, accumulate=None):
    with fastseq.use_backend(backend):
        _, ctx = forward(p)
        return backward(p, ctx, accumulate)


def targets_like(grads, seed, bias=True):
    rng = np.random.default_rng(seed)
    keys = PARAM_GRADS if bias else PARAM_GRADS[:2]
    return {k: rng.standard_normal(grads[k].shape).astype(grads[k].dtype) for k in keys}


def assert_added(got, start, plain, dtype):
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for key, s in start.items():
        err = fastseq.max_error(got[key], s + plain[key])
        assert err <= tol, f"{key}: error {err:.3g} above {tol:g}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bias,lengths,threads", [(True, None, 1), (False, "vary", 2),
                                                  (True, "vary", 2)])
def test_adds_into_the_targets(backend, cell, dtype, bias, lengths, threads):
    # T*B = 600 rows: the weight gradients' GEMMs run over several blocks of k
    p = make_problem(cell, T=40, B=15, I=9, H=21, dtype=dtype, bias=bias, lengths=lengths,
                     seed=3)
    previous = fastseq.get_num_threads()
    fastseq.set_num_threads(threads)
    try:
        plain = grads_of(p, backend)
        start = targets_like(plain, 4, bias)
        into = {k: v.copy() for k, v in start.items()}
        got = grads_of(p, backend, into)
    finally:
        fastseq.set_num_threads(previous)
    for key, target in into.items():
        assert got[key] is target, f"{key}: not returned as the target itself"
    assert_added(got, start, plain, dtype)
    for key in ("dx", "dh0"):  # the other gradients are unchanged by accumulate
        np.testing.assert_array_equal(got[key], plain[key])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_strided_and_aliased_targets(backend, cell):
    p = make_problem(cell, T=6, B=4, I=5, H=5, dtype=np.float64, seed=5)  # I == H
    plain = grads_of(p, backend)
    start = targets_like(plain, 6)
    # dw_ih: every other column of a wider array; db_ih and db_hh: one and the same array
    wide = np.zeros((start["dw_ih"].shape[0], 2 * start["dw_ih"].shape[1]))
    wide[:, ::2] = start["dw_ih"]
    shared_bias = start["db_ih"].copy()
    into = {"dw_ih": wide[:, ::2], "dw_hh": start["dw_hh"].copy(), "db_ih": shared_bias,
            "db_hh": shared_bias}
    got = grads_of(p, backend, into)
    assert_added({"dw_ih": got["dw_ih"], "dw_hh": got["dw_hh"]},
                 {"dw_ih": start["dw_ih"], "dw_hh": start["dw_hh"]}, plain, np.float64)
    np.testing.assert_array_equal(wide[:, 1::2], 0.0)  # the columns in between untouched
    expected_bias = start["db_ih"] + plain["db_ih"] + plain["db_hh"]  # added one after other
    assert fastseq.max_error(shared_bias, expected_bias) <= 1e-12


def test_target_sharing_memory_with_an_input(backend):
    # A target that is an input of the backward (here the weight itself, as w += dw would):
    # the gradient is computed from the weight as it was, then added.
    p = make_problem("lstm", T=5, B=3, I=4, H=6, dtype=np.float64, seed=7)
    plain = grads_of(p, backend)
    w0 = p.w_ih.copy()
    with fastseq.use_backend(backend):
        _, ctx = forward(p)
        into = {"dw_ih": p.w_ih, "dw_hh": np.zeros_like(p.w_hh), "db_ih": np.zeros_like(p.b_ih),
                "db_hh": np.zeros_like(p.b_hh)}
        backward(p, ctx, into)
    assert fastseq.max_error(p.w_ih, w0 + plain["dw_ih"]) <= 1e-12


def _refused(backend, value, bias=True):
    """Backward of a small GRU on ``backend`` with ``accumulate=value``."""
    p = make_problem("gru", T=3, B=2, I=4, H=5, dtype=np.float32, bias=bias, seed=8)
    with fastseq.use_backend(backend):
        _, ctx = forward(p)
        backward(p, ctx, value)


def _good(dtype=np.float32, H=5, I=4, G=3):
    return {"dw_ih": np.zeros((G * H, I), dtype), "dw_hh": np.zeros((G * H, H), dtype),
            "db_ih": np.zeros(G * H, dtype), "db_hh": np.zeros(G * H, dtype)}


def _bad_cases():
    ro = _good()
    ro["dw_hh"].flags.writeable = False
    no_key = _good()
    del no_key["db_hh"]
    extra = dict(_good(), dx=np.zeros((3, 2, 4), np.float32))
    return [
        ("not a dict", [np.zeros(1)], TypeError, "accumulate must be None or a dict"),
        ("missing key", no_key, ValueError, "exactly the keys"),
        ("extra key", extra, ValueError, "exactly the keys"),
        ("wrong dtype", dict(_good(), dw_ih=np.zeros((15, 4), np.float64)), TypeError,
         r"accumulate\['dw_ih'\] has dtype float64"),
        ("wrong shape", dict(_good(), dw_hh=np.zeros((15, 4), np.float32)), ValueError,
         r"accumulate\['dw_hh'\] must have shape \(15, 5\)"),
        ("not an array", dict(_good(), db_ih=[0.0] * 15), TypeError,
         r"accumulate\['db_ih'\] must be a numpy.ndarray"),
        ("read-only", ro, ValueError, r"accumulate\['dw_hh'\] is read-only"),
    ]


@pytest.mark.parametrize("what,value,error,match", _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_bad_targets_are_refused(backend, what, value, error, match):
    with pytest.raises(error, match=match):
        _refused(backend, value)


def test_bias_targets_without_bias_are_refused(backend):
    with pytest.raises(ValueError, match="had no biases"):
        _refused(backend, _good(), bias=False)


@pytest.mark.skipif("cpp" not in fastseq.available_backends(), reason="no compiled extension")
@pytest.mark.parametrize("what,value,error,match", _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_binding_refuses_bad_targets(what, value, error, match):
    # The native binding checks again (it never trusts its caller), with its own messages.
    from fastseq import _core
    p = make_problem("gru", T=3, B=2, I=4, H=5, dtype=np.float32, seed=8)
    *_, reserve = _core.gru_forward(p.x, p.w_ih, p.w_hh, p.b_ih, p.b_hh, training=True)
    native_match = {"missing key": "has no 'db_hh'", "extra key": "has key 'dx'",
                    "wrong shape": r"accumulate\['dw_hh'\] has shape \(15, 4\), expected"
                    }.get(what, match)
    with pytest.raises(error, match=native_match):
        _core.gru_backward(reserve, p.dy, accumulate=value)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_layer_backward_adds_into_grad(active_backend, cell):
    layer_class = {"rnn": fastseq.RNN, "lstm": fastseq.LSTM, "gru": fastseq.GRU}[cell]
    layer = layer_class(6, 7, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal((5, 3, 6)), rng.standard_normal((5, 3, 14))
    layer(x)
    layer.backward(dy)
    once = {name: p.grad.copy() for name, p in layer.named_parameters()}
    # grad None (created) and grad of another dtype (cast) take Parameter.accumulate
    params = dict(layer.named_parameters())
    params["weight_ih_l0"].grad = None
    params["bias_hh_l1_reverse"].grad = np.zeros(params["bias_hh_l1_reverse"].shape, np.float32)
    layer(x)
    layer.backward(dy)
    layer(x)
    layer.backward(dy)
    for name, p in layer.named_parameters():
        restarted = name in ("weight_ih_l0", "bias_hh_l1_reverse")
        expected = (2 if restarted else 3) * once[name]
        tol = 1e-6 if p.grad.dtype == np.float32 else 1e-12
        assert fastseq.max_error(p.grad, expected) <= tol, name
    assert params["bias_hh_l1_reverse"].grad.dtype == np.float32
