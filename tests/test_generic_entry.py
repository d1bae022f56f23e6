"""The generic entry points of the bindings, ``_core.forward(cell, x, params, ...)`` and
``_core.backward(reserve, ...)``: every cell of the C++ registry by name, with the same bits
as its family's function, and clear refusals (the C ABI's generic calls have their own
tests in test_capi_generic.py)."""
import numpy as np
import pytest


_core = pytest.importorskip("fastseq._core", reason="the compiled extension is not built")

CELLS = {c["name"]: c for c in _core.cell_registry()}
OPTION = {"rnn_tanh": {"nonlinearity": "tanh"}, "rnn_relu": {"nonlinearity": "relu"},
          "gru": {"reset_after": True}, "gru_reset_before": {"reset_after": False}}


def arrays(cell, dtype, T=5, B=3, I=4, H=6, P=2, lengths=True):
    rng = np.random.default_rng(len(cell))
    info = CELLS[cell]
    G, W = info["gates"], (P if info["projected"] else H)
    r = lambda *shape: rng.standard_normal(shape).astype(dtype)  # noqa: E731
    params = {"w_ih": r(G * H, I), "w_hh": r(G * H, W), "b_ih": r(G * H), "b_hh": r(G * H)}
    if info["projected"]:
        params["w_hr"] = r(P, H)
    states = {"h0": r(B, W)}
    if info["states"] == 2:
        states["c0"] = r(B, H)
    grads = {"dh_n": r(B, W), **({"dc_n": r(B, H)} if info["states"] == 2 else {})}
    return r(T, B, I), params, states, np.array([5, 1, 3]) if lengths else None, r(T, B, W), grads


def family_call(cell, x, params, states, lengths, reverse):
    info = CELLS[cell]
    kw = dict(lengths=lengths, reverse=reverse, training=True, **OPTION.get(cell, {}))
    p = dict(params)
    if info["family"] == "lstm":
        out = _core.lstm_forward(x, p.pop("w_ih"), p.pop("w_hh"), p.pop("b_ih"), p.pop("b_hh"),
                                 states["h0"], states["c0"], w_hr=p.pop("w_hr", None), **kw)
        return out
    y, h, res = getattr(_core, f"{info['family']}_forward")(
        x, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], states["h0"], **kw)
    return y, h, None, res


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cell", list(CELLS))
def test_same_bits_as_the_family_function(cell, dtype, reverse):
    x, params, states, lengths, dy, grads = arrays(cell, dtype)
    got = _core.forward(cell, x, params, lengths=lengths, reverse=reverse, training=True, **states)
    want = family_call(cell, x, params, states, lengths, reverse)
    for g, w in zip(got[:3], want[:3]):
        assert (g is None and w is None) or np.array_equal(g, w)
    assert got[3].cell == cell
    g_back = _core.backward(got[3], dy, **grads)
    backward = getattr(_core, f"{CELLS[cell]['family']}_backward")
    w_back = backward(want[3], dy, *grads.values())
    assert g_back.keys() == w_back.keys()
    for key in w_back:
        assert np.array_equal(g_back[key], w_back[key]), key


def test_no_bias_and_inference():
    x, params, states, lengths, _, _ = arrays("lstm", np.float64)
    del params["b_ih"], params["b_hh"]
    y, h, c, reserve = _core.forward("lstm", x, params, **states)
    assert reserve is None
    want = _core.lstm_forward(x, params["w_ih"], params["w_hh"], None, None, states["h0"],
                              states["c0"])
    assert np.array_equal(y, want[0]) and np.array_equal(h, want[1]) and np.array_equal(c, want[2])


def test_refusals_name_the_problem():
    x, params, states, _, dy, _ = arrays("gru", np.float64)
    with pytest.raises(ValueError, match="cell must be one of .*'lstmp'.*got 'lstn'"):
        _core.forward("lstn", x, params)
    with pytest.raises(ValueError, match="params has 'w_hr', which a gru cell does not take"):
        _core.forward("gru", x, {**params, "w_hr": params["w_ih"]})
    with pytest.raises(ValueError, match="params has no 'w_hh'"):
        _core.forward("gru", x, {"w_ih": params["w_ih"]})
    with pytest.raises(ValueError, match="c0 is given, but a gru cell has no cell state"):
        _core.forward("gru", x, params, c0=states["h0"])
    x, params, states, _, dy, _ = arrays("lstmp", np.float64)
    with pytest.raises(ValueError, match="params has no 'w_hr'"):
        _core.forward("lstmp", x, {k: v for k, v in params.items() if k != "w_hr"})
    with pytest.raises(ValueError, match="params has 'w_hr', which a lstm cell does not take"):
        _core.forward("lstm", x, params)
    x, params, states, _, dy, grads = arrays("rnn_tanh", np.float32)
    _, _, _, reserve = _core.forward("rnn_tanh", x, params, training=True, **states)
    with pytest.raises(ValueError, match="dc_n is given, but a rnn_tanh cell"):
        _core.backward(reserve, dy, grads["dh_n"], grads["dh_n"])
    with pytest.raises(TypeError, match="reserve must be the Reserve"):
        _core.backward("not a reserve", dy)
    _core.backward(reserve, dy)
    with pytest.raises(ValueError, match="already used"):
        _core.backward(reserve, dy)
