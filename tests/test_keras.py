"""fastseq.keras: Keras 3 LSTM, GRU (reset_after both ways), SimpleRNN and Bidirectional
weights to fastseq layers and back, exactly; the same outputs; .keras and .weights.h5
files; the refusals. Keras runs on its torch backend (no TensorFlow)."""
import os

os.environ["KERAS_BACKEND"] = "torch"  # before Keras is first imported: never TensorFlow

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastseq  # noqa: E402
from fastseq.checking import max_error  # noqa: E402
from subprocesses import run_python  # noqa: E402

keras = pytest.importorskip("keras", reason='Keras 3 is needed: pip install "fastseq[keras]"')
fk = pytest.importorskip("fastseq.keras")

# Keras's own saving and its torch backend's conversions call np.array(tensor), which NumPy 2
# flags because torch's __array__ takes no copy= (a Keras/torch matter, not fastseq's).
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

B, T, I, H = 3, 7, 4, 5
TOL = 1e-4  # float32, Keras against fastseq

# name: (Keras constructor, extra keyword arguments)
LAYERS = {
    "lstm": (keras.layers.LSTM, {}),
    "lstm_no_bias": (keras.layers.LSTM, {"use_bias": False}),
    "gru": (keras.layers.GRU, {}),
    "gru_reset_before": (keras.layers.GRU, {"reset_after": False}),
    "gru_no_bias": (keras.layers.GRU, {"use_bias": False}),
    "simple_rnn": (keras.layers.SimpleRNN, {}),
    "simple_rnn_relu": (keras.layers.SimpleRNN, {"activation": "relu"}),
}


def randomize(layer, seed=0):
    """Random weights everywhere, biases included (Keras initialises them to 0 or 1)."""
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        w.assign((0.5 * rng.standard_normal(tuple(w.shape))).astype(w.dtype))
    return layer


def make_keras(name, seed=0, **kwargs):
    cls, extra = LAYERS[name]
    layer = cls(H, **{"return_sequences": True, **extra, **kwargs})
    layer.build((None, T, I))
    return randomize(layer, seed)


def inputs(seed=1):
    return np.random.default_rng(seed).standard_normal((B, T, I)).astype(np.float32)


def keras_call(layer, x):
    return [v.detach().numpy() for v in keras.tree.flatten(layer(x))]  # torch backend


@pytest.mark.parametrize("name", list(LAYERS))
def test_keras_to_fastseq_to_keras_is_bit_exact(name):
    original = make_keras(name)
    back = fk.to_keras(fk.from_keras(original), make_keras(name, seed=9))
    for a, b in zip(fk.weights_of(original), fk.weights_of(back)):
        assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize("name", list(LAYERS))
def test_fastseq_to_keras_to_fastseq(name):
    """Weights exactly; where Keras has one bias, it holds b_ih + b_hh and b_hh comes back 0."""
    layer = fk.from_keras(make_keras(name))  # the right class and options; now new weights,
    rng = np.random.default_rng(3)           # b_hh included (from Keras it would be 0)
    for param in layer.parameters():
        param.data[...] = rng.standard_normal(param.shape)
    again = fk.from_keras(fk.to_keras(layer))
    p, q = dict(layer.named_parameters()), dict(again.named_parameters())
    assert p.keys() == q.keys()
    for key in ("weight_ih_l0", "weight_hh_l0"):
        assert np.array_equal(p[key].data, q[key].data)
    if not layer.bias:
        return
    if name.startswith("gru") and layer.reset_after:  # Keras keeps both biases
        assert np.array_equal(p["bias_ih_l0"].data, q["bias_ih_l0"].data)
        assert np.array_equal(p["bias_hh_l0"].data, q["bias_hh_l0"].data)
    else:
        assert not np.any(p["bias_hh_l0"].data == 0)  # the sum is a real test
        assert np.array_equal(q["bias_ih_l0"].data, p["bias_ih_l0"].data + p["bias_hh_l0"].data)
        assert np.array_equal(q["bias_hh_l0"].data, np.zeros_like(p["bias_hh_l0"].data))


@pytest.mark.parametrize("name", list(LAYERS))
def test_same_outputs_and_states(name):
    layer = make_keras(name, return_state=True)
    x = inputs()
    y, *states = keras_call(layer, x)
    ours = fk.from_keras(layer)
    y_ours, state = ours(x)
    assert max_error(y_ours, y) <= TOL
    ours_states = state if isinstance(state, tuple) else (state,)
    assert len(ours_states) == len(states)
    for got, want in zip(ours_states, states):
        assert max_error(got[0], want) <= TOL  # (num_layers, B, H) against Keras's (B, H)
    (last,) = keras_call(make_keras(name, return_sequences=False), x)  # same seed, same weights
    assert max_error(y_ours[:, -1], last) <= TOL


@pytest.mark.parametrize("name", ["lstm", "gru", "gru_reset_before", "simple_rnn"])
def test_go_backwards_is_the_time_reversed_input(name):
    layer = make_keras(name, go_backwards=True)
    with pytest.raises(ValueError, match="allow_go_backwards"):
        fk.from_keras(layer)
    ours = fk.from_keras(layer, allow_go_backwards=True)
    x = inputs()
    (y,) = keras_call(layer, x)
    assert max_error(ours(np.ascontiguousarray(x[:, ::-1]))[0], y) <= TOL
    assert max_error(ours(x)[0], y) > 10 * TOL  # the plain call differs: the flag is needed


@pytest.mark.parametrize("name", ["lstm", "gru_reset_before", "simple_rnn_relu"])
def test_bidirectional(name):
    cls, extra = LAYERS[name]
    wrapper = keras.layers.Bidirectional(cls(H, return_sequences=True, **extra))
    wrapper.build((None, T, I))
    randomize(wrapper)
    ours = fk.from_keras(wrapper)
    assert ours.bidirectional
    x = inputs()
    (y,) = keras_call(wrapper, x)
    assert max_error(ours(x)[0], y) <= TOL
    back = fk.to_keras(ours)
    for a, b in zip(fk.weights_of(wrapper), fk.weights_of(back)):
        assert np.array_equal(a, b)


def _model():
    model = keras.Sequential([
        keras.Input((T, I)),
        keras.layers.LSTM(H, return_sequences=True, name="encoder"),
        keras.layers.GRU(H, return_sequences=True, reset_after=False, name="decoder"),
        keras.layers.Dense(2, name="head"),
    ])
    for layer in model.layers[:2]:
        randomize(layer, seed=len(layer.name))
    return model


def _check_loaded(loaded, model):
    assert list(loaded) == ["encoder", "decoder"]
    x = inputs()
    encoder, decoder = loaded["encoder"], loaded["decoder"]
    assert isinstance(encoder, fastseq.LSTM) and isinstance(decoder, fastseq.GRU)
    assert not decoder.reset_after
    hidden = keras.Model(model.inputs[0], model.get_layer("decoder").output)
    y = hidden(x).detach().numpy()
    assert max_error(decoder(encoder(x)[0])[0], y) <= TOL


def test_load_a_keras_file(tmp_path):
    model = _model()
    path = tmp_path / "tiny.keras"
    model.save(path)
    _check_loaded(fk.load(path), model)


def test_load_a_weights_file(tmp_path):
    model = _model()
    path = tmp_path / "tiny.weights.h5"
    model.save_weights(path)
    with pytest.raises(ValueError, match="model="):
        fk.load(path)
    fresh = _model()  # other random weights, replaced by the file's
    loaded = fk.load(path, fresh)
    _check_loaded(loaded, model)


def test_refusals():
    with pytest.raises(ValueError, match="activation='sigmoid'"):
        fk.from_keras(make_keras("simple_rnn", activation="sigmoid"))
    with pytest.raises(ValueError, match="recurrent_activation='hard_sigmoid'"):
        fk.from_keras(make_keras("lstm", recurrent_activation="hard_sigmoid"))
    with pytest.raises(TypeError, match="Dense"):
        dense = keras.layers.Dense(3)
        dense.build((None, I))
        fk.from_keras(dense)
    with pytest.raises(ValueError, match="not built"):
        fk.from_keras(keras.layers.LSTM(H))
    with pytest.raises(ValueError, match="merge_mode"):
        wrapper = keras.layers.Bidirectional(keras.layers.GRU(H), merge_mode="sum")
        wrapper.build((None, T, I))
        fk.from_keras(wrapper)
    lstm = fastseq.LSTM(I, H, seed=0)
    with pytest.raises(ValueError, match="units=3"):
        fk.to_keras(lstm, keras.layers.LSTM(3))
    with pytest.raises(ValueError, match="reset_after"):
        fk.to_keras(fastseq.GRU(I, H, seed=0), keras.layers.GRU(H, reset_after=False))
    with pytest.raises(ValueError, match="kernel shape"):
        fk.to_keras(lstm, _built(keras.layers.LSTM(H), I + 1))
    with pytest.raises(ValueError, match="num_layers=2"):
        fk.to_keras(fastseq.LSTM(I, H, num_layers=2, seed=0))
    with pytest.raises(TypeError, match="fastseq LSTM, GRU or RNN"):
        fk.to_keras(fastseq.Linear(I, H, seed=0))


def _built(layer, input_size):
    layer.build((None, T, input_size))
    return layer


def _import_blocked(module, blocked):
    """Import ``module`` in a fresh interpreter (the tested fastseq, see subprocesses.py)
    where ``blocked`` cannot be imported; the ImportError's message."""
    code = (f"import json, sys; sys.modules[{blocked!r}] = None\n"
            "import fastseq\n"
            f"try:\n    import {module}\n    print(json.dumps(None))\n"
            "except ImportError as e:\n    print(json.dumps(str(e)))\n")
    return run_python(code, {"KERAS_BACKEND": "torch"})


def test_missing_extras_name_the_install_command():
    assert 'pip install "fastseq[keras]"' in _import_blocked("fastseq.keras", "keras")
    assert 'pip install "fastseq[torch]"' in _import_blocked("fastseq.torch", "torch")


def test_import_fastseq_imports_neither_torch_nor_keras():
    code = "import json, sys, fastseq; print(json.dumps(sorted({'torch', 'keras'} & set(sys.modules))))"
    assert run_python(code) == []
