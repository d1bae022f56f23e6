"""RMSprop with momentum and the centered variant, identical to torch.optim.RMSprop."""
from __future__ import annotations

from typing import Any

import numpy as np

from .optimizer import Optimizer, ParamsLike, check_nonnegative

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """RMSprop, update rule identical to ``torch.optim.RMSprop``.

    Equations (per parameter p with gradient g)::

        g = -g if maximize
        g = g + weight_decay * p
        v = alpha * v + (1 - alpha) * g * g
        a = a + (1 - alpha) * (g - a);  s = sqrt(v - a * a) + eps     (centered)
        s = sqrt(v) + eps                                             (otherwise)
        b = momentum * b + g / s;  p = p - lr * b                     (momentum > 0)
        p = p - lr * g / s                                            (otherwise)

    Parameters
    ----------
    params : iterable of Parameter or of dict
    lr : float, default 1e-2
    alpha : float, default 0.99
    eps : float, default 1e-8
    weight_decay : float, default 0
    momentum : float, default 0
    centered : bool, default False
    maximize : bool, default False
    """

    def __init__(
        self,
        params: ParamsLike,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize))

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        for name in ("alpha", "eps", "weight_decay", "momentum"):
            check_nonnegative(name, group[name])

    def _init_state(self, p, group):
        state = {"step": 0, "square_avg": np.zeros_like(p.data)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = np.zeros_like(p.data)
        if group["centered"]:
            state["grad_avg"] = np.zeros_like(p.data)
        return state

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any],
                group: dict[str, Any]) -> None:
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        g = -grad if group["maximize"] else grad
        state["step"] += 1
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * param
        square_avg = state["square_avg"]
        square_avg *= alpha
        square_avg += (1 - alpha) * (g * g)
        if group["centered"]:
            grad_avg = state.setdefault("grad_avg", np.zeros_like(param))
            grad_avg += (1 - alpha) * (g - grad_avg)
            avg = np.sqrt(square_avg - grad_avg * grad_avg)
        else:
            avg = np.sqrt(square_avg)
        avg += eps
        if group["momentum"] > 0:
            buf = state.setdefault("momentum_buffer", np.zeros_like(param))
            buf *= group["momentum"]
            buf += g / avg
            param += -lr * buf
        else:
            param += -lr * (g / avg)
