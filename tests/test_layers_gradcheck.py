"""Central-difference gradient checks of whole layers (float64), dropout included:
the layer's generator is reseeded before every forward so each sees the same masks."""
import numpy as np

from fastseq.checking import gradcheck
from fastseq.recurrent import GRU, LSTM, RNN

T, B, I, H = 4, 2, 3, 2


def check_layer(layer, batched=True, lengths=None, with_state=True, seed=0):
    """gradcheck of x, the initial state and every parameter of ``layer``."""
    rng = np.random.default_rng(seed)
    D = layer.num_directions
    x_shape = (B, T, I) if layer.batch_first else (T, B, I)
    s_shape = (layer.num_layers * D, B, H)
    if not batched:
        x_shape, s_shape = (T, I), (layer.num_layers * D, H)
    lstm = isinstance(layer, LSTM)
    inputs = {"x": rng.standard_normal(x_shape)}
    if with_state:
        inputs["h0"] = rng.standard_normal(s_shape)
        if lstm:
            inputs["c0"] = rng.standard_normal(s_shape)
    names = [n for n, _ in layer.named_parameters()]
    inputs.update(layer.state_dict())

    def fn(x, h0=None, c0=None, **params):
        layer.load_state_dict(params)
        layer.generator = np.random.default_rng(1234)  # the same dropout masks every call
        state = (h0, c0) if lstm and h0 is not None else h0
        y, st = layer(x, state, lengths=lengths)
        outputs = (y,) + (st if lstm else (st,))

        def vjp(cot):
            layer.zero_grad()
            dstate = tuple(cot[1:]) if lstm else cot[1]
            dx, dst0 = layer.backward(cot[0], dstate)
            grads = {"x": dx}
            if h0 is not None:
                grads["h0"] = dst0[0] if lstm else dst0
                if lstm:
                    grads["c0"] = dst0[1]
            grads.update({n: p.grad.copy() for n, p in layer.named_parameters()})
            return grads

        return outputs, vjp

    errors = gradcheck(fn, inputs, tol=1e-6)
    assert set(errors) >= set(names) | {"x"}


def test_lstm_stacked_bidirectional_dropout_lengths(active_backend):
    layer = LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True, dropout=0.4,
                 dtype=np.float64, seed=0)
    check_layer(layer, lengths=np.array([3, 4]))


def test_gru_reset_before_stacked_bidirectional_dropout(active_backend):
    layer = GRU(I, H, num_layers=2, bidirectional=True, dropout=0.3, dtype=np.float64,
                seed=1, reset_after=False)
    check_layer(layer, lengths=np.array([4, 2]))


def test_gru_reset_after_no_bias_unbatched(active_backend):
    layer = GRU(I, H, num_layers=2, bias=False, dropout=0.5, dtype=np.float64, seed=2)
    check_layer(layer, batched=False)


def test_rnn_tanh_three_layers_no_state(active_backend):
    layer = RNN(I, H, num_layers=3, bidirectional=True, dropout=0.2, dtype=np.float64, seed=3)
    check_layer(layer, with_state=False, lengths=np.array([1, 4]))
