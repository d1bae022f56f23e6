"""Bad input to fastseq.functional: each case raises the right exception type, and the
message names the argument. Odd-but-valid layouts (non-contiguous, Fortran order,
read-only) give the same answer and inputs are never modified."""
import numpy as np
import pytest

import fastseq
from fastseq import functional as F
from problems import forward, make_problem, run


def lstm_args(**overrides):
    p = make_problem("lstm", T=4, B=3, I=5, H=6, seed=0)
    args = dict(x=p.x, w_ih=p.w_ih, w_hh=p.w_hh, b_ih=p.b_ih, b_hh=p.b_hh, h0=p.h0, c0=p.c0)
    args.update(overrides)
    return args


def call_lstm(backend="reference", lengths=None, **overrides):
    with fastseq.use_backend(backend):
        return F.lstm_forward(**lstm_args(**overrides), lengths=lengths)


BAD_FORWARD = [
    # (overrides, lengths, exception, words the message must contain)
    (dict(x=np.zeros((4, 3))), None, ValueError, ["x", "(T, B, I)", "(4, 3)"]),
    (dict(x=np.zeros((4, 3, 5, 1))), None, ValueError, ["x", "(4, 3, 5, 1)"]),
    (dict(x=np.zeros((0, 3, 5))), None, ValueError, ["x", "T, B, I >= 1"]),
    (dict(x=np.zeros((4, 0, 5))), None, ValueError, ["x", "(4, 0, 5)"]),
    (dict(x=np.zeros((4, 3, 7))), None, ValueError, ["w_ih", "(24, 7)", "(24, 5)"]),
    (dict(w_ih=np.zeros((24, 4))), None, ValueError, ["w_ih", "(24, 5)", "(24, 4)"]),
    (dict(w_hh=np.zeros((18, 6))), None, ValueError, ["w_hh", "(G*H, H)", "(18, 6)"]),
    (dict(w_hh=np.zeros(24)), None, ValueError, ["w_hh", "(24,)"]),
    (dict(b_ih=np.zeros(23)), None, ValueError, ["b_ih", "(24,)", "(23,)"]),
    (dict(b_hh=np.zeros((1, 24))), None, ValueError, ["b_hh", "(1, 24)"]),
    (dict(b_hh=None), None, ValueError, ["b_ih", "b_hh", "both"]),
    (dict(h0=np.zeros((2, 6))), None, ValueError, ["h0", "(B, H)", "(3, 6)", "(2, 6)"]),
    (dict(c0=np.zeros((3, 5))), None, ValueError, ["c0", "(3, 6)", "(3, 5)"]),
    (dict(h0=np.zeros((1, 3, 6))), None, ValueError, ["h0", "(1, 3, 6)"]),
    (dict(), [1, 2], ValueError, ["lengths", "(3,)", "(2,)"]),
    (dict(), [1, 2, 5], ValueError, ["lengths", "1..4", "5"]),
    (dict(), [0, 2, 4], ValueError, ["lengths", "1..4", "0"]),
    (dict(), [-1, 2, 4], ValueError, ["lengths", "-1"]),
    (dict(), [1.0, 2.0, 4.0], TypeError, ["lengths", "integers", "float64"]),
    (dict(), [[1, 2, 3]], ValueError, ["lengths", "(1, 3)"]),
    (dict(x=np.zeros((4, 3, 5), dtype=np.float32)), None, TypeError, ["w_hh", "float64", "float32"]),
    (dict(h0=np.zeros((3, 6), dtype=np.float32)), None, TypeError, ["h0", "float32", "float64"]),
    (dict(x=np.zeros((4, 3, 5), dtype=np.int64)), None, TypeError, ["x", "int64", "float32 or float64"]),
    (dict(x=np.zeros((4, 3, 5), dtype=np.float16)), None, TypeError, ["x", "float16"]),
    (dict(x=np.zeros((4, 3, 5), dtype=np.complex128)), None, TypeError, ["x", "complex128"]),
    (dict(w_ih=np.zeros((24, 5), dtype=object)), None, TypeError, ["w_ih", "object"]),
    (dict(x=np.full((4, 3, 5), "a")), None, TypeError, ["x", "<U1"]),
    (dict(h0=[[1, 2], [3]]), None, TypeError, ["h0"]),
]


@pytest.mark.parametrize("overrides,lengths,exc,words", BAD_FORWARD)
def test_bad_forward_input_is_named(backend, overrides, lengths, exc, words):
    with pytest.raises(exc) as info:
        call_lstm(backend, lengths=lengths, **overrides)
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_bad_options_are_named():
    p = make_problem("rnn_tanh")
    with pytest.raises(ValueError, match="nonlinearity"):
        F.rnn_forward(p.x, p.w_ih, p.w_hh, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="reverse"):
        F.rnn_forward(p.x, p.w_ih, p.w_hh, reverse="yes")
    with pytest.raises(TypeError, match="reset_after"):
        F.gru_forward(p.x, np.zeros((18, 4)), np.zeros((18, 6)), reset_after=None)
    with pytest.raises(ValueError, match="w_hh.*G = 3"):
        F.gru_forward(p.x, p.w_ih, p.w_hh)  # RNN weights given to a GRU


def test_backward_misuse(backend):
    p = make_problem("gru", lengths="vary")
    with fastseq.use_backend(backend):
        y, h_n, ctx = F.gru_forward(p.x, p.w_ih, p.w_hh, p.b_ih, p.b_hh, p.h0)
        with pytest.raises(ValueError, match="dy.*\\(T, B, H\\)"):
            F.gru_backward(ctx, p.dy[:, :2])
        with pytest.raises(TypeError, match="dy.*float32"):
            F.gru_backward(ctx, p.dy.astype(np.float32))
        with pytest.raises(ValueError, match="dh_n.*\\(B, H\\)"):
            F.gru_backward(ctx, p.dy, p.dh_n[:, :2])
        with pytest.raises(ValueError, match="lstm_backward needs one from lstm_forward"):
            F.lstm_backward(ctx, p.dy)
        F.gru_backward(ctx, p.dy, p.dh_n)  # the failed calls above did not use it up
        with pytest.raises(ValueError, match="already used"):
            F.gru_backward(ctx, p.dy, p.dh_n)
        _, _, no_ctx = F.gru_forward(p.x, p.w_ih, p.w_hh, training=False)
        assert no_ctx is None
        with pytest.raises(TypeError, match="ctx must be the Context"):
            F.gru_backward(no_ctx, p.dy)


def test_context_from_another_backend_is_refused():
    others = [b for b in fastseq.available_backends() if b != "reference"]
    if not others:
        pytest.skip("only the reference backend is available")
    p = make_problem("rnn_tanh")
    with fastseq.use_backend("reference"):
        _, ctx = forward(p)
    with fastseq.use_backend(others[0]):
        with pytest.raises(ValueError, match="'reference' backend but the active backend is"):
            F.rnn_backward(ctx, p.dy)


@pytest.mark.parametrize("layout", ["fortran", "strided", "readonly", "lists", "big-endian"])
def test_any_layout_gives_the_same_answer(backend, layout):
    p = make_problem("lstm", lengths="vary", seed=3)
    expected = run(p, backend)
    q = make_problem("lstm", lengths="vary", seed=3)
    for name in ("x", "w_ih", "w_hh", "h0", "c0", "dy"):
        a = getattr(q, name)
        if layout == "fortran":
            a = np.asfortranarray(a)
        elif layout == "strided":
            big = np.zeros(a.shape + (2,))
            big[..., 1] = a
            a = big[..., 1]
            assert not a.flags.c_contiguous
        elif layout == "big-endian":
            a = a.astype(a.dtype.newbyteorder(">"))
        elif layout == "readonly":
            a = a.copy()
            a.setflags(write=False)
        setattr(q, name, a)
    if layout == "lists":
        q.lengths = q.lengths.tolist()
        q.x = q.x.tolist()
    got = run(q, backend)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
