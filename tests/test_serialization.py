"""fastseq.save / fastseq.load (.npz state dicts) and pickling of layers."""
import pickle

import numpy as np
import pytest

from fastseq.linear import Embedding, Linear
from fastseq.recurrent import GRU, LSTM, RNN
from fastseq.serialization import load, save


@pytest.mark.parametrize("make", [
    lambda seed: LSTM(3, 4, num_layers=2, bidirectional=True, seed=seed),
    lambda seed: GRU(3, 4, bias=False, dtype=np.float64, seed=seed),
    lambda seed: RNN(3, 4, nonlinearity="relu", seed=seed),
    lambda seed: Linear(3, 4, seed=seed),
    lambda seed: Embedding(5, 2, padding_idx=0, seed=seed),
])
def test_save_load_round_trip(tmp_path, make):
    src, dst = make(0), make(1)
    save(tmp_path / "model.npz", src)
    assert load(tmp_path / "model.npz", dst) is dst
    for (n, p), (m, q) in zip(src.named_parameters(), dst.named_parameters()):
        assert n == m and np.array_equal(p.data, q.data) and p.dtype == q.dtype


def test_npz_suffix_and_plain_numpy_reading(tmp_path):
    lstm = LSTM(3, 4, seed=0)
    save(str(tmp_path / "weights"), lstm)  # NumPy's convention: .npz is appended
    assert (tmp_path / "weights.npz").exists()
    with np.load(tmp_path / "weights.npz") as archive:
        assert sorted(archive.files) == sorted(lstm.state_dict())
    other = LSTM(3, 4, seed=1)
    load(tmp_path / "weights", other)
    assert np.array_equal(other.weight_hh_l0.data, lstm.weight_hh_l0.data)


def test_top_level_names():
    import fastseq

    assert fastseq.save is save and fastseq.load is load
    assert fastseq.clip_grad_norm_ is fastseq.optim.clip_grad_norm_
    assert fastseq.LSTM is LSTM and fastseq.Linear is Linear
    for name in ("RNN", "GRU", "Embedding", "Module", "Parameter", "losses", "optim", "init"):
        assert name in fastseq.__all__


def test_load_into_wrong_module_is_a_clear_error(tmp_path):
    save(tmp_path / "gru.npz", GRU(3, 4, seed=0))
    with pytest.raises(ValueError, match="shape mismatch"):
        load(tmp_path / "gru.npz", LSTM(3, 4))
    with pytest.raises(KeyError, match="unexpected keys"):
        load(tmp_path / "gru.npz", GRU(3, 4, bias=False))
    with pytest.raises(TypeError, match="Module"):
        save(tmp_path / "x.npz", {"a": np.zeros(1)})
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.npz", GRU(3, 4))


def test_torch_reads_what_fastseq_saves(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is needed to load into torch.nn")
    lstm = LSTM(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    save(tmp_path / "m.npz", lstm)
    theirs = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64)
    with np.load(tmp_path / "m.npz") as archive:
        theirs.load_state_dict({k: torch.from_numpy(archive[k]) for k in archive.files})
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    lstm.eval()
    y, _ = lstm(x)
    with torch.no_grad():
        yt, _ = theirs(torch.from_numpy(x))
    assert np.abs(y - yt.numpy()).max() <= 1e-12


def test_pickle_keeps_parameters_grads_and_generator():
    gru = GRU(3, 4, num_layers=2, dropout=0.5, dtype=np.float64, seed=0)
    x = np.random.default_rng(1).standard_normal((5, 2, 3))
    y, _ = gru(x)
    gru.backward(np.ones_like(y))
    clone = pickle.loads(pickle.dumps(gru))
    for (_, p), (_, q) in zip(gru.named_parameters(), clone.named_parameters()):
        assert np.array_equal(p.data, q.data) and np.array_equal(p.grad, q.grad)
    assert np.array_equal(gru(x)[0], clone(x)[0])  # the generator state travelled too


@pytest.mark.parametrize("kind", ["npy", "text", "pickle"])
def test_load_of_something_else_than_npz_is_a_clear_error(tmp_path, kind):
    model = Linear(3, 2, seed=0)
    path = tmp_path / f"weights.{kind}"
    if kind == "npy":
        np.save(path, model.weight.data)
        words = ["npz", "single array", "(2, 3)", "float32", ".npy"]
    elif kind == "text":
        path.write_text("weight 1 2 3\n")
        words = ["npz", "weights.text"]
    else:
        path.write_bytes(pickle.dumps(model.state_dict()))
        words = ["npz", "weights.pickle"]
    with pytest.raises(ValueError) as info:
        load(path, model)
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
