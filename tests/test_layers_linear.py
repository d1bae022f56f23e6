"""Linear and Embedding against torch.nn, and Module composition (names, modes, grads)."""
import numpy as np
import pytest

from fastseq.checking import gradcheck, max_error
from fastseq.linear import Embedding, Linear
from fastseq.parameter import Module, Parameter
from fastseq.recurrent import LSTM

torch = pytest.importorskip("torch", reason="torch is needed to compare with torch.nn")


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("shape", [(7, 4), (2, 3, 4), (4,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(dtype, tol, shape, bias):
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    theirs = torch.nn.Linear(4, 3, bias=bias, dtype=tdtype)
    ours = Linear(4, 3, bias=bias, dtype=dtype, seed=0)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    ours.load_state_dict(theirs.state_dict())
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape[:-1] + (3,)).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    yt.backward(torch.tensor(dy))
    y = ours(x)
    dx = ours.backward(dy)
    assert y.dtype == dtype and dx.dtype == dtype
    assert max_error(y, yt.detach().numpy()) <= tol
    assert max_error(dx, xt.grad.numpy()) <= tol
    for (n, p), (_, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert max_error(p.grad, tp.grad.numpy()) <= tol, n


@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_embedding_matches_torch(padding_idx):
    theirs = torch.nn.Embedding(6, 3, padding_idx=padding_idx, dtype=torch.float64)
    ours = Embedding(6, 3, padding_idx=padding_idx, dtype=np.float64, seed=0)
    if padding_idx is not None:
        assert np.all(ours.weight.data[padding_idx] == 0)
    ours.load_state_dict(theirs.state_dict())
    idx = np.array([[0, 2, 5, 2], [1, 1, 3, 5]])
    dy = np.random.default_rng(0).standard_normal((2, 4, 3))
    yt = theirs(torch.tensor(idx))
    yt.backward(torch.tensor(dy))
    y = ours(idx)
    assert ours.backward(dy) is None
    assert max_error(y, yt.detach().numpy()) == 0
    assert max_error(ours.weight.grad, theirs.weight.grad.numpy()) <= 1e-12


def test_default_inits_follow_torch():
    lin = Linear(16, 1000, seed=0)
    assert np.abs(lin.weight.data).max() <= 0.25 and np.abs(lin.bias.data).max() <= 0.25
    assert np.abs(lin.weight.data).max() > 0.24
    emb = Embedding(1000, 16, seed=0)
    assert abs(emb.weight.data.std() - 1) < 0.05 and abs(emb.weight.data.mean()) < 0.05


def test_linear_gradcheck():
    lin = Linear(3, 2, dtype=np.float64, seed=0)

    def fn(x, weight, bias):
        lin.load_state_dict({"weight": weight, "bias": bias})
        y = lin(x)

        def vjp(cot):
            lin.zero_grad()
            dx = lin.backward(cot[0])
            return {"x": dx, "weight": lin.weight.grad.copy(), "bias": lin.bias.grad.copy()}

        return y, vjp

    x = np.random.default_rng(0).standard_normal((2, 4, 3))
    gradcheck(fn, {"x": x, **lin.state_dict()})


class Tagger(Module):
    """Embedding -> LSTM -> Linear, named like the torch module below."""

    def __init__(self):
        super().__init__()
        self.embed = Embedding(7, 3, dtype=np.float64, seed=0)
        self.rnn = LSTM(3, 4, num_layers=2, dtype=np.float64, seed=0)
        self.head = Linear(4, 5, dtype=np.float64, seed=0)
        self.scale = Parameter(np.ones(5))


class TorchTagger(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(7, 3)
        self.rnn = torch.nn.LSTM(3, 4, num_layers=2)
        self.head = torch.nn.Linear(4, 5)
        self.scale = torch.nn.Parameter(torch.ones(5))


def test_module_composition_names_modes_and_state_dict():
    model, tmodel = Tagger(), TorchTagger().double()
    assert list(model.state_dict()) == list(tmodel.state_dict())
    model.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})
    assert len(list(model.parameters())) == len(list(tmodel.parameters()))
    assert [type(m).__name__ for m in model.children()] == ["Embedding", "LSTM", "Linear"]
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    for p in model.parameters():
        p.grad[...] = 1
    model.zero_grad()
    assert all(np.all(p.grad == 0) for p in model.parameters())
    assert "(rnn): LSTM(3, 4, num_layers=2, dtype=float64)" in repr(model)


def test_module_without_super_init_is_a_clear_error():
    class Broken(Module):
        def __init__(self):
            self.w = Parameter(np.zeros(2))

    with pytest.raises(AttributeError, match="super"):
        Broken()
