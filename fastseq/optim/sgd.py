"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay (torch.optim.SGD)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .optimizer import Optimizer, ParamsLike, check_nonnegative

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent, update rule identical to ``torch.optim.SGD``.

    Equations (per parameter p with gradient g, step t)::

        g = -g if maximize
        g = g + weight_decay * p
        b_1 = g;  b_t = momentum * b_{t-1} + (1 - dampening) * g      (momentum != 0)
        g = g + momentum * b_t if nesterov else b_t                    (momentum != 0)
        p = p - lr * g

    Parameters
    ----------
    params : iterable of Parameter or of dict
    lr : float, default 1e-3
    momentum : float, default 0
    dampening : float, default 0
    weight_decay : float, default 0
        L2 penalty added to the gradient.
    nesterov : bool, default False
        Requires momentum > 0 and dampening = 0.
    maximize : bool, default False
        Ascend instead of descend.
    """

    def __init__(
        self,
        params: ParamsLike,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        for name in ("momentum", "dampening", "weight_decay"):
            check_nonnegative(name, group[name])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _init_state(self, p, group):
        return {"momentum_buffer": None}

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any],
                group: dict[str, Any]) -> None:
        lr, momentum = group["lr"], group["momentum"]
        g = -grad if group["maximize"] else grad
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * param
        if momentum != 0:
            buf = state["momentum_buffer"]
            if buf is None:
                buf = state["momentum_buffer"] = np.array(g, copy=True)
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * g
            g = g + momentum * buf if group["nesterov"] else buf
        param += -lr * g
