"""Adagrad with learning-rate decay and an initial accumulator, identical to torch.optim.Adagrad."""
from __future__ import annotations

from typing import Any

import numpy as np

from .optimizer import Optimizer, ParamsLike, check_nonnegative

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    """Adagrad, update rule identical to ``torch.optim.Adagrad``.

    Equations (per parameter p with gradient g, step t = 1, 2, ...)::

        g = -g if maximize
        g = g + weight_decay * p
        lr_t = lr / (1 + (t - 1) * lr_decay)
        s = s + g * g                       (s starts at initial_accumulator_value)
        p = p - lr_t * g / (sqrt(s) + eps)

    Parameters
    ----------
    params : iterable of Parameter or of dict
    lr : float, default 1e-2
    lr_decay : float, default 0
    weight_decay : float, default 0
    initial_accumulator_value : float, default 0
    eps : float, default 1e-10
    maximize : bool, default False
    """

    def __init__(
        self,
        params: ParamsLike,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps, maximize=maximize))

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        for name in ("lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            check_nonnegative(name, group[name])

    def _init_state(self, p, group):
        return {"step": 0,
                "sum": np.full_like(p.data, group["initial_accumulator_value"])}

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any],
                group: dict[str, Any]) -> None:
        g = -grad if group["maximize"] else grad
        state["step"] += 1
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * param
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        state_sum = state["sum"]
        state_sum += g * g
        std = np.sqrt(state_sum) + group["eps"]
        param += -clr * (g / std)
