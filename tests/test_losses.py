"""Losses against torch.nn.functional: values and input gradients, reductions, ignore_index."""
import numpy as np
import pytest

from fastseq.checking import max_error
from fastseq.losses import cross_entropy, log_softmax, mse

torch = pytest.importorskip("torch", reason="torch is needed to compare with torch.nn.functional")
tF = torch.nn.functional


def _torch_ce(logits, targets, ignore_index, reduction):
    """torch's cross_entropy with the class axis moved last, as fastseq takes it."""
    lt = torch.tensor(logits, requires_grad=True)
    flat = lt.reshape(-1, logits.shape[-1])
    loss = tF.cross_entropy(flat, torch.tensor(targets).reshape(-1),
                            ignore_index=ignore_index, reduction=reduction)
    if reduction == "none":
        loss = loss.reshape(targets.shape)
    loss.sum().backward()
    return loss.detach().numpy(), lt.grad.numpy()


@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 6), (2, 3, 2, 4), (1, 1)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("with_ignored", [False, True])
def test_cross_entropy_matches_torch(shape, reduction, with_ignored):
    rng = np.random.default_rng(0)
    logits = 3 * rng.standard_normal(shape)
    targets = rng.integers(0, shape[-1], size=shape[:-1])
    if with_ignored and targets.size > 1:
        targets.reshape(-1)[::2] = -100
    loss, dlogits = cross_entropy(logits, targets, reduction=reduction)
    tloss, tgrad = _torch_ce(logits, targets, -100, reduction)
    assert max_error(loss, tloss) <= 1e-12
    assert max_error(dlogits, tgrad) <= 1e-12
    assert dlogits.shape == logits.shape


def test_cross_entropy_custom_ignore_index_and_float32():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((10, 4)).astype(np.float32)
    targets = rng.integers(0, 4, size=10)
    targets[3] = 2
    loss, grad = cross_entropy(logits, targets, ignore_index=2)
    tloss, tgrad = _torch_ce(logits, targets, 2, "mean")
    assert loss.dtype == np.float32 and grad.dtype == np.float32
    assert max_error(loss, tloss) <= 1e-6 and max_error(grad, tgrad) <= 1e-6


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-5e3, 5e3, 5e3], [1e300, 0.0, -1e300]])
    targets = np.array([1, 2, 0])
    loss, grad = cross_entropy(logits, targets, reduction="none")
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    assert loss == pytest.approx([2e4, np.log(2), 0.0])
    assert np.all(np.isfinite(log_softmax(logits)[:, :2]))


def test_cross_entropy_all_ignored_mean_is_nan_like_torch():
    logits = np.zeros((3, 2))
    targets = np.full(3, -100)
    loss, _ = cross_entropy(logits, targets)
    tloss, _ = _torch_ce(logits, targets, -100, "mean")
    assert np.isnan(loss) and np.isnan(tloss)


def test_cross_entropy_errors():
    logits = np.zeros((4, 3))
    with pytest.raises(ValueError, match="targets must have the shape"):
        cross_entropy(logits, np.zeros(5, dtype=int))
    with pytest.raises(TypeError, match="targets must be an integer"):
        cross_entropy(logits, np.zeros(4))
    with pytest.raises(IndexError, match="0..2"):
        cross_entropy(logits, np.array([0, 1, 3, 0]))
    with pytest.raises(ValueError, match="reduction"):
        cross_entropy(logits, np.zeros(4, dtype=int), reduction="avg")
    with pytest.raises(TypeError, match="logits"):
        cross_entropy(np.zeros((4, 3), dtype=complex), np.zeros(4, dtype=int))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_matches_torch(reduction):
    rng = np.random.default_rng(2)
    pred, target = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    loss, grad = mse(pred, target, reduction=reduction)
    pt = torch.tensor(pred, requires_grad=True)
    tloss = tF.mse_loss(pt, torch.tensor(target), reduction=reduction)
    tloss.sum().backward()
    assert max_error(loss, tloss.detach().numpy()) <= 1e-12
    assert max_error(grad, pt.grad.numpy()) <= 1e-12


def test_mse_errors():
    with pytest.raises(ValueError, match="target must have the shape"):
        mse(np.zeros(3), np.zeros(4))
    with pytest.raises(TypeError, match="pred"):
        mse(np.array(["a"]), np.zeros(1))


def test_mse_of_nothing_is_nan_like_torch():
    loss, grad = mse(np.zeros(0), np.zeros(0))
    assert np.isnan(loss) and grad.shape == (0,)
    assert np.isnan(tF.mse_loss(torch.zeros(0), torch.zeros(0)).item())
