"""The oracle checked: reference gradients against finite differences, the reset-before
GRU against a hand-written step, and (when torch is importable) every output and
gradient against torch.nn.RNN/LSTM/GRU."""
import itertools

import numpy as np
import pytest

from problems import ALL_CELLS, PROJECTED, gradcheck_problem, make_problem, run, reference_of

OPTIONS = list(itertools.product([True, False], [True, False], [None, "vary"], [False, True]))


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("bias,init_state,lengths,reverse", OPTIONS)
def test_gradcheck_every_option(cell, bias, init_state, lengths, reverse):
    p = make_problem(cell, T=4, B=3, I=3, H=5, bias=bias, init_state=init_state,
                     lengths=lengths, reverse=reverse, seed=7)
    errors = gradcheck_problem(p, "reference")
    assert errors and max(errors.values()) <= 1e-6


EDGE_SHAPES = [(1, 1, 1, 1), (1, 2, 3, 1), (3, 1, 2, 17), (2, 2, 5, 3)]


# A projection needs H >= 2 (0 < P < H).
@pytest.mark.parametrize("cell,T,B,I,H", [(c, *s) for c in ALL_CELLS for s in EDGE_SHAPES
                                          if c not in PROJECTED or s[3] >= 2])
def test_gradcheck_edge_shapes(cell, T, B, I, H):
    p = make_problem(cell, T=T, B=B, I=I, H=H, lengths="vary" if B > 1 else None, seed=3)
    gradcheck_problem(p, "reference")


def test_relu_preactivations_kept_away_from_zero():
    """The relu gradcheck above is only meaningful if no pre-activation sits at the kink."""
    p = make_problem("rnn_relu", T=4, B=3, I=3, H=5, seed=7)
    h = p.h0
    for t in range(4):
        a = p.x[t] @ p.w_ih.T + p.b_ih + h @ p.w_hh.T + p.b_hh
        assert np.min(np.abs(a)) > 1e-4
        h = np.maximum(a, 0)


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


@pytest.mark.parametrize("bias", [True, False])
def test_gru_reset_before_matches_a_hand_written_step(bias):
    """Cho et al. 2014: n = tanh(W_in x + b_in + W_hn (r * h) + b_hn), checked for T = 2."""
    p = make_problem("gru_reset_before", T=2, B=3, I=4, H=5, bias=bias, seed=11)
    H = 5
    W_ir, W_iz, W_in = np.split(p.w_ih, 3)
    W_hr, W_hz, W_hn = np.split(p.w_hh, 3)
    zeros = np.zeros(3 * H)
    b_ir, b_iz, b_in = np.split(p.b_ih if bias else zeros, 3)
    b_hr, b_hz, b_hn = np.split(p.b_hh if bias else zeros, 3)
    h = p.h0
    ys = []
    for t in range(2):
        x = p.x[t]
        r = _sigmoid(x @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
        z = _sigmoid(x @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
        n = np.tanh(x @ W_in.T + b_in + (r * h) @ W_hn.T + b_hn)
        h = (1 - z) * n + z * h
        ys.append(h)
    out = run(p, "reference", training=False)
    np.testing.assert_allclose(out["y"], np.stack(ys), rtol=0, atol=1e-14)
    np.testing.assert_allclose(out["h_n"], h, rtol=0, atol=1e-14)
    # and it is a different function from PyTorch's form
    other = run(make_problem("gru", T=2, B=3, I=4, H=5, bias=bias, seed=11), "reference", training=False)
    assert np.max(np.abs(other["y"] - out["y"])) > 1e-3


def test_float32_inputs_give_float32_outputs_close_to_float64():
    p = make_problem("lstm", lengths="vary", reverse=True, dtype=np.float32)
    out = run(p, "reference")
    ref = reference_of(p)
    for name, value in out.items():
        assert value.dtype == np.float32, name
        np.testing.assert_allclose(value, ref[name], rtol=0, atol=1e-6)


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_padding_never_influences_results(cell, reverse):
    """x past each length may hold anything, NaN included (torch's packed sequences ignore it)."""
    p = make_problem(cell, T=5, B=3, lengths=[2, 5, 4], reverse=reverse, seed=12)
    expected = run(p, "reference")
    for b, L in enumerate(p.lengths):
        p.x[L:, b] = np.nan
        p.dy[L:, b] = np.nan
    got = run(p, "reference")
    for name, value in expected.items():
        if value is not None:
            np.testing.assert_array_equal(got[name], value, err_msg=name)
