"""Loss functions: each returns the loss and its gradient with respect to the input.

Semantics follow torch.nn.functional (reductions, ``ignore_index``), except that the
class axis of ``cross_entropy`` is the last one, the natural layout of a recurrent model's
``(T, B, C)`` or ``(B, T, C)`` logits.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["cross_entropy", "mse", "log_softmax"]

_REDUCTIONS = ("mean", "sum", "none")


def _float_array(value: Any, name: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind in "iu":
        array = array.astype(np.float64)
    elif array.dtype.kind != "f":
        raise TypeError(f"{name} must be a real floating array, got dtype {array.dtype}")
    return array


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def log_softmax(logits: Any, axis: int = -1) -> np.ndarray:
    """``log(softmax(logits))`` along ``axis``, stable for logits of any magnitude."""
    logits = _float_array(logits, "logits")
    shifted = logits - np.max(logits, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def cross_entropy(
    logits: Any,
    targets: Any,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> tuple[Any, np.ndarray]:
    """Softmax cross-entropy of integer class targets, and its gradient.

    Equations (per position n, ignoring positions whose target is ``ignore_index``)::

        loss_n = logsumexp(logits_n) - logits_n[targets_n]
        dlogits_n = softmax(logits_n) - onehot(targets_n)     (times the reduction's weight)

    Parameters
    ----------
    logits : array_like
        ``(N, C)`` or ``(..., C)``: unnormalised scores, classes on the last axis.
    targets : array_like of int
        ``(N,)`` or ``(...)``: class indices in 0..C-1, or ``ignore_index``.
    ignore_index : int, default -100
        Positions with this target contribute neither loss nor gradient, and are not
        counted by the mean.
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" averages over the positions not ignored (NaN if all are, as in torch);
        "none" returns the per-position losses ``(...)`` (0 where ignored).

    Returns
    -------
    loss : numpy scalar or numpy.ndarray
        A scalar of the logits' dtype, or ``(...)`` for "none".
    dlogits : numpy.ndarray
        ``(..., C)``: gradient of the loss (of ``loss.sum()`` for "none") with respect to
        ``logits``.
    """
    _check_reduction(reduction)
    logits = _float_array(logits, "logits")
    targets = np.asarray(targets)
    if targets.dtype.kind not in "iu":
        raise TypeError(f"targets must be an integer array of class indices, got dtype {targets.dtype}")
    if logits.ndim < 1 or logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"targets must have the shape of logits without its last (class) axis: logits "
            f"{logits.shape} needs targets {logits.shape[:-1]}, got {targets.shape}"
        )
    C = logits.shape[-1]
    if C < 1:
        raise ValueError("logits must have at least one class")
    valid = targets != ignore_index
    bad = valid & ((targets < 0) | (targets >= C))
    if np.any(bad):
        raise IndexError(
            f"targets must lie in 0..{C - 1} or equal ignore_index={ignore_index}, got "
            f"{targets[bad].reshape(-1)[0]}"
        )
    flat_logits = logits.reshape(-1, C)
    flat_targets = np.where(valid, targets, 0).reshape(-1)
    flat_valid = valid.reshape(-1)
    logp = log_softmax(flat_logits)
    rows = np.arange(flat_targets.size)
    losses = np.where(flat_valid, -logp[rows, flat_targets], 0).astype(logits.dtype)
    grad = np.exp(logp)
    grad[rows, flat_targets] -= 1
    grad[~flat_valid] = 0
    if reduction == "mean":
        count = int(flat_valid.sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            loss = logits.dtype.type(losses.sum() / logits.dtype.type(count))
            grad = grad / logits.dtype.type(count) if count else np.full_like(grad, np.nan)
    elif reduction == "sum":
        loss = logits.dtype.type(losses.sum())
    else:
        loss = losses.reshape(targets.shape)
    return loss, grad.reshape(logits.shape).astype(logits.dtype, copy=False)


def mse(pred: Any, target: Any, reduction: str = "mean") -> tuple[Any, np.ndarray]:
    """Mean squared error, and its gradient with respect to ``pred``.

    Equations::

        loss_n = (pred_n - target_n)^2,   dpred_n = 2 (pred_n - target_n)  (times 1/N for mean)

    Parameters
    ----------
    pred : array_like
        Any shape.
    target : array_like
        Same shape as ``pred``.
    reduction : {"mean", "sum", "none"}, default "mean"

    Returns
    -------
    loss : numpy scalar or numpy.ndarray
        A scalar of ``pred``'s dtype, or the elementwise losses for "none".
    dpred : numpy.ndarray
        Shaped like ``pred``: gradient of the loss (of ``loss.sum()`` for "none").
    """
    _check_reduction(reduction)
    pred = _float_array(pred, "pred")
    target = _float_array(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"target must have the shape of pred, {pred.shape}, got {target.shape}")
    diff = (pred - target).astype(pred.dtype, copy=False)
    grad = 2 * diff
    squares = diff * diff
    if reduction == "mean":
        n = pred.dtype.type(diff.size)
        with np.errstate(invalid="ignore", divide="ignore"):  # empty input: NaN, as torch
            return pred.dtype.type(squares.sum() / n), (grad / n).astype(pred.dtype)
    if reduction == "sum":
        return pred.dtype.type(squares.sum()), grad
    return squares, grad
