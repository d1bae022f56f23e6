"""Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_."""
from __future__ import annotations

import math
from typing import Iterable, Union

import numpy as np

from ..parameter import Parameter

__all__ = ["clip_grad_norm_"]


def clip_grad_norm_(
    parameters: Union[Parameter, Iterable[Parameter]],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> float:
    """Scale gradients in place so that their global norm is at most ``max_norm``.

    Equations (over the parameters whose grad is not None)::

        total = || (||g_1||_q, ||g_2||_q, ...) ||_q         (q = norm_type; inf: max |g|)
        g_k = g_k * min(max_norm / (total + 1e-6), 1)

    Parameters
    ----------
    parameters : Parameter or iterable of Parameter
    max_norm : float
    norm_type : float, default 2.0
        Any q > 0, or ``float("inf")``.
    error_if_nonfinite : bool, default False
        Raise RuntimeError if the total norm is NaN or infinite.

    Returns
    -------
    float
        The total norm of the gradients before clipping.
    """
    if isinstance(parameters, Parameter):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    max_norm = float(max_norm)
    norm_type = float(norm_type)
    if not grads:
        return 0.0
    if norm_type == math.inf:
        norms = [np.max(np.abs(g)) if g.size else 0.0 for g in grads]
        total = float(np.max(norms))
    else:
        norms = [_vector_norm(g.reshape(-1), norm_type) for g in grads]
        total = float(_vector_norm(np.array(norms, dtype=np.float64), norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is "
            "non-finite, so it cannot be clipped. To disable this error and scale the "
            "gradients by the non-finite norm anyway, set `error_if_nonfinite=False`"
        )
    clip_coef = min(max_norm / (total + 1e-6), 1.0)
    for g in grads:
        g *= clip_coef
    return total


def _vector_norm(values: np.ndarray, q: float) -> float:
    if q == 2.0:
        return float(np.sqrt(np.dot(values, values)))
    if q == 1.0:
        return float(np.sum(np.abs(values)))
    if q == 0.0:
        return float(np.count_nonzero(values))
    return float(np.sum(np.abs(values) ** q) ** (1.0 / q))
