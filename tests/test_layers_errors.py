"""Bad input to layers: clear exceptions that name the argument at fault."""
import numpy as np
import pytest

from fastseq.linear import Embedding, Linear
from fastseq.recurrent import GRU, LSTM, RNN

T, B, I, H = 4, 2, 3, 5


# --- construction ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(input_size=0), ValueError, "input_size"),
    (dict(hidden_size=-1), ValueError, "hidden_size"),
    (dict(num_layers=0), ValueError, "num_layers"),
    (dict(num_layers=1.5), ValueError, "num_layers"),
    (dict(dropout=1.5), ValueError, "dropout"),
    (dict(dropout="0.1"), ValueError, "dropout"),
    (dict(dtype=np.int32), TypeError, "dtype"),
    (dict(dtype=np.float16), TypeError, "dtype"),
    (dict(seed="abc"), TypeError, "seed"),
    (dict(seed=1.0), TypeError, "seed"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(bias="yes"), TypeError, "bias"),
    (dict(batch_first=1), TypeError, "batch_first"),
])
def test_bad_constructor_arguments(kwargs, exc, match):
    args = dict(input_size=I, hidden_size=H)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        LSTM(**args)


def test_bad_cell_options():
    with pytest.raises(ValueError, match="nonlinearity"):
        RNN(I, H, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="reset_after"):
        GRU(I, H, reset_after="no")


# --- forward ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(I,), (1, T, B, I), (T, B, I + 1), (T, I + 1), (0, B, I), (T, 0, I)])
def test_bad_input_shapes(shape):
    with pytest.raises(ValueError, match="x"):
        GRU(I, H)(np.zeros(shape))


def test_bad_input_shape_message_follows_batch_first():
    with pytest.raises(ValueError, match=r"\(B, T, input_size\)"):
        GRU(I, H, batch_first=True)(np.zeros((T,)))


def test_bad_state_shapes():
    rnn = RNN(I, H, num_layers=2)
    x = np.zeros((T, B, I))
    with pytest.raises(ValueError, match=r"h0 must have shape \(2, 2, 5\)"):
        rnn(x, np.zeros((1, B, H)))
    with pytest.raises(ValueError, match="h0"):
        rnn(x, np.zeros((2, B + 1, H)))
    with pytest.raises(ValueError, match=r"\(2, 5\)"):
        rnn(np.zeros((T, I)), np.zeros((2, B, H)))  # unbatched input takes an unbatched state
    with pytest.raises(TypeError, match="tuple"):
        rnn(x, (np.zeros((2, B, H)), np.zeros((2, B, H))))
    with pytest.raises(TypeError, match="h0"):
        rnn(x, np.zeros((2, B, H), dtype=complex))
    lstm = LSTM(I, H, bidirectional=True)
    with pytest.raises(TypeError, match=r"pair \(h0, c0\)"):
        lstm(x, np.zeros((2, B, H)))
    with pytest.raises(ValueError, match="h0"):
        lstm(x, (np.zeros((1, B, H)), np.zeros((2, B, H))))
    with pytest.raises(ValueError, match="c0"):
        lstm(x, (np.zeros((2, B, H)), np.zeros((2, B, H + 1))))


@pytest.mark.parametrize("lengths, exc, match", [
    ([1, 2, 3], ValueError, r"shape \(B,\) = \(2,\)"),
    ([[1, 2]], ValueError, r"shape \(B,\) = \(2,\)"),
    ([1, 5], ValueError, "0..4"),
    ([-1, 2], ValueError, "0..4"),
    ([1.0, 2.0], TypeError, "integer"),
    (["a", "b"], TypeError, "integer"),
])
def test_bad_lengths(lengths, exc, match):
    with pytest.raises(exc, match=match):
        LSTM(I, H)(np.zeros((T, B, I)), lengths=lengths)


def test_unbatched_lengths():
    gru = GRU(I, H, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((T, I))
    y, h = gru(x, lengths=2)
    assert np.all(y[2:] == 0) and np.array_equal(h[0], y[1])
    with pytest.raises(ValueError, match="lengths"):
        gru(x, lengths=[1, 2])


# --- backward -----------------------------------------------------------------------------

def test_backward_misuse():
    lstm = LSTM(I, H, num_layers=2, batch_first=True)
    x = np.zeros((B, T, I))
    with pytest.raises(RuntimeError, match="forward\\(\\) has not been called"):
        lstm.backward(np.zeros((B, T, H)))
    y, _ = lstm(x)
    with pytest.raises(ValueError, match=r"dy must have the shape of y, \(2, 4, 5\)"):
        lstm.backward(np.zeros((T, B, H)))
    with pytest.raises(TypeError, match="dy"):
        lstm.backward(np.zeros(y.shape, dtype=complex))
    with pytest.raises(ValueError, match="dh_n"):
        lstm.backward(np.zeros_like(y), (np.zeros((1, B, H)), None))
    with pytest.raises(TypeError, match="pair"):
        lstm.backward(np.zeros_like(y), np.zeros((2, B, H)))
    dx, _ = lstm.backward(np.zeros_like(y))  # the failed calls did not consume the forward
    assert dx.shape == x.shape
    with pytest.raises(RuntimeError, match="already called"):
        lstm.backward(np.zeros_like(y))
    lstm.eval()
    lstm(x)
    with pytest.raises(RuntimeError, match="eval mode"):
        lstm.backward(np.zeros_like(y))


def test_rnn_backward_bad_dstate():
    rnn = RNN(I, H)
    y, _ = rnn(np.zeros((T, B, I)))
    with pytest.raises(ValueError, match="dstate"):
        rnn.backward(np.zeros_like(y), np.zeros((B, H)))


# --- state dicts ----------------------------------------------------------------------------

def test_bad_state_dicts_change_nothing():
    gru = GRU(I, H, num_layers=2, seed=0)
    before = gru.state_dict()
    sd = gru.state_dict()
    del sd["bias_hh_l1"]
    sd["weight_ih_l2"] = np.zeros((3 * H, H))
    with pytest.raises(KeyError, match=r"missing keys \['bias_hh_l1'\].*unexpected keys \['weight_ih_l2'\]"):
        gru.load_state_dict(sd)
    sd = {k: v + 1 for k, v in gru.state_dict().items()}
    sd["weight_hh_l0"] = np.zeros((H, H))
    sd["bias_ih_l1"] = np.zeros(3 * H + 1)
    with pytest.raises(ValueError, match=r"'weight_hh_l0': expected \(15, 5\), got \(5, 5\).*'bias_ih_l1'"):
        gru.load_state_dict(sd)
    sd = gru.state_dict()
    sd["bias_ih_l0"] = np.array(["x"] * 3 * H)
    with pytest.raises(TypeError, match="bias_ih_l0"):
        gru.load_state_dict(sd)
    with pytest.raises(TypeError, match="mapping"):
        gru.load_state_dict([("weight_ih_l0", np.zeros((3 * H, I)))])
    for k, v in gru.state_dict().items():
        assert np.array_equal(v, before[k]), k
    with pytest.raises(ValueError, match="shape mismatch"):  # shapes are checked when not strict too
        gru.load_state_dict({"weight_ih_l0": np.zeros((1, 1))}, strict=False)


# --- Linear and Embedding -------------------------------------------------------------------

def test_linear_and_embedding_errors():
    with pytest.raises(ValueError, match="in_features"):
        Linear(0, 3)
    lin = Linear(3, 2)
    with pytest.raises(ValueError, match=r"in_features=3"):
        lin(np.zeros((4, 2)))
    with pytest.raises(TypeError, match="x"):
        lin(np.zeros((4, 3), dtype=complex))
    with pytest.raises(RuntimeError, match="has not been called"):
        lin.backward(np.zeros((4, 2)))
    y = lin(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="dy"):
        lin.backward(np.zeros((4, 3)))
    lin.backward(np.zeros_like(y))
    with pytest.raises(RuntimeError, match="already called"):
        lin.backward(np.zeros_like(y))
    with pytest.raises(ValueError, match="padding_idx"):
        Embedding(5, 2, padding_idx=5)
    emb = Embedding(5, 2)
    with pytest.raises(IndexError, match="0..4"):
        emb(np.array([0, 5]))
    with pytest.raises(IndexError, match="0..4"):
        emb(np.array([-1]))
    with pytest.raises(TypeError, match="indices"):
        emb(np.array([0.0, 1.0]))


@pytest.mark.parametrize("batch_first", [False, True])
def test_huge_broadcast_input_is_refused_before_any_copy(batch_first):
    """T*B >= 2^31 rows: a clear ValueError from the shape, not a MemoryError from copying a
    broadcast view of a few bytes into terabytes."""
    lstm = LSTM(3, 4, batch_first=batch_first)
    x = np.broadcast_to(np.zeros(3), (2**16, 2**15 + 1, 3))
    with pytest.raises(ValueError, match="T\\*B"):
        lstm(x)
