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
    (dict(), [1, 2, 5], ValueError, ["lengths", "0..4", "5"]),
    (dict(), [-1, 2, 4], ValueError, ["lengths", "0..4", "-1"]),
    (dict(), [1.0, 2.0, 4.0], TypeError, ["lengths", "integers", "float64"]),
    (dict(), ["1", "2", "4"], TypeError, ["lengths", "integers", "0..4", "<U1"]),
    (dict(), [True, False, True], TypeError, ["lengths", "integers", "bool"]),
    (dict(), [1 + 0j, 2, 3], TypeError, ["lengths", "integers", "complex128"]),
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


@pytest.mark.parametrize("lengths", [["1", "2", "4"], [1.0, 2.0, 4.0], [1 + 0j, 2, 3], [[1], [2, 3]]])
def test_lengths_errors_say_what_lengths_must_be(lengths):
    """Not the message of the float arrays (lengths are integers, not float32 or float64)."""
    with pytest.raises(TypeError) as info:
        call_lstm(lengths=lengths)
    message = str(info.value)
    assert "lengths" in message and "integers" in message and "0..4" in message
    assert "float32 or float64" not in message


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.uint16, np.uint64])
def test_lengths_of_any_integer_dtype(backend, dtype):
    lengths = np.array([4, 2, 3])
    expected = call_lstm(backend, lengths=lengths)[:3]
    got = call_lstm(backend, lengths=lengths.astype(dtype))[:3]
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell,G", [("rnn", 1), ("lstm", 4), ("gru", 3)])
def test_huge_broadcast_views_fail_before_any_copy(backend, cell, G):
    """Sizes are checked from the shapes before anything is copied: a huge read-only
    broadcast view (non-contiguous, so it would be copied) gives the clear error, not a
    MemoryError, on every backend; nothing is modified."""
    one = np.zeros(1, np.float32)
    forward = getattr(F, f"{cell}_forward")
    cases = [
        # x with T*B >= 2^31
        (np.broadcast_to(one, (10**6, 10**5, 10**3)), np.zeros((G, 10**3), np.float32),
         np.zeros((G, 1), np.float32), ["T*B", "2^31", "T=1000000", "B=100000"]),
        # I >= 2^31 (w_ih a broadcast view too)
        (np.broadcast_to(one, (2, 1, 2**31)), np.broadcast_to(one, (G, 2**31)),
         np.zeros((G, 1), np.float32), ["I", "2^31", "I=2147483648"]),
        # 4*H >= 2^31 (w_hh a broadcast view)
        (np.zeros((2, 1, 3), np.float32), np.broadcast_to(one, (G * 2**29, 3)),
         np.broadcast_to(one, (G * 2**29, 2**29)), ["4*H", "2^31", "H=536870912"]),
        # each within the BLAS limits, but (T*B) x max(I, 4H) scalars do not fit in memory
        (np.broadcast_to(one, (2**15, 2**15, 2**30)), np.broadcast_to(one, (G, 2**30)),
         np.zeros((G, 1), np.float32), ["too large", "memory"]),
    ]
    with fastseq.use_backend(backend):
        for x, w_ih, w_hh, words in cases:
            with pytest.raises(ValueError) as info:
                forward(x, w_ih, w_hh, training=True)
            message = str(info.value)
            for word in words:
                assert word in message, f"{word!r} not in {message!r}"
    assert not one.any()


def test_checks_come_before_copies(monkeypatch):
    """A bad argument after a non-contiguous x fails without copying x."""
    copies = []
    real = np.ascontiguousarray
    monkeypatch.setattr(np, "ascontiguousarray", lambda a, *args, **kw: copies.append(a.shape) or real(a, *args, **kw))
    p = make_problem("lstm", T=4, B=3, I=5, H=6)
    with pytest.raises(ValueError, match="c0"):
        F.lstm_forward(np.asfortranarray(p.x), p.w_ih, p.w_hh, h0=p.h0.T.copy().T, c0=p.c0[:2])
    assert copies == []


MUTATIONS = {
    "x": lambda a: a.__setitem__((1, 2, 3), a[1, 2, 3] + 1),      # one element
    "w_ih": lambda a: a.__imul__(0.9),                             # an optimizer-like step
    "w_hh": lambda a: a.__setitem__((0, 0), np.nextafter(a[0, 0], np.inf)),  # one ulp
    "lengths": lambda a: a.__setitem__(0, 1),
    "h0": lambda a: a.__setitem__((2, 5), 7.0),
    "c0": lambda a: a.__setitem__(slice(None), a[::-1].copy()),    # rows reordered
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_input_modified_between_forward_and_backward_is_refused(backend, name):
    """The backward reads the forward's x, weights, lengths and states again: a change in
    place in between raises RuntimeError naming the argument (never wrong gradients), and
    leaves ctx usable once the array is restored."""
    p = make_problem("lstm", T=4, B=3, I=5, H=6, lengths=[4, 2, 3], seed=5)
    args = {k: getattr(p, k).copy() for k in ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0")}
    lengths = p.lengths.copy()
    with fastseq.use_backend(backend):
        *_, ctx = F.lstm_forward(**args, lengths=lengths)
        target = lengths if name == "lengths" else args[name]
        saved = target.copy()
        MUTATIONS[name](target)
        assert not np.array_equal(target, saved)
        with pytest.raises(RuntimeError, match=f"^{name} was modified in place between "
                                               "lstm_forward and lstm_backward"):
            F.lstm_backward(ctx, p.dy, p.dh_n, p.dc_n)
        target[...] = saved
        got = F.lstm_backward(ctx, p.dy, p.dh_n, p.dc_n)
    expected = run(p, backend)
    for key, value in got.items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)


def test_copies_made_by_the_checks_are_not_watched():
    """A list or a strided x is copied by the forward; changing the caller's object
    afterwards changes nothing and is not refused."""
    p = make_problem("rnn_tanh", seed=2)
    x_list = p.x.tolist()
    *_, ctx = F.rnn_forward(x_list, p.w_ih, p.w_hh)
    x_list[0][0][0] = 99.0
    assert [name for name, *_ in ctx._inputs] == ["w_ih", "w_hh"]
    F.rnn_backward(ctx, p.dy)
