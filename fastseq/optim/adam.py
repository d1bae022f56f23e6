"""Adam and AdamW (optionally AMSGrad), identical to torch.optim.Adam and torch.optim.AdamW."""
from __future__ import annotations

from typing import Any

import numpy as np

from .optimizer import Optimizer, ParamsLike, check_nonnegative

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam, update rule identical to ``torch.optim.Adam``.

    Equations (per parameter p with gradient g, step t = 1, 2, ...)::

        g = -g if maximize
        g = g + weight_decay * p                       (Adam: L2 penalty in the gradient)
        p = p * (1 - lr * weight_decay)                (AdamW instead: decoupled decay)
        m = m + (1 - beta1) * (g - m)
        v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v)                          (amsgrad; v_max replaces v below)
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    Parameters
    ----------
    params : iterable of Parameter or of dict
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    amsgrad : bool, default False
    maximize : bool, default False
    """

    _decoupled = False

    def __init__(
        self,
        params: ParamsLike,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize))

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        check_nonnegative("eps", group["eps"])
        check_nonnegative("weight_decay", group["weight_decay"])
        betas = group["betas"]
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Invalid betas: {betas} (each must lie in [0, 1))")

    def _init_state(self, p, group):
        state = {"step": 0, "exp_avg": np.zeros_like(p.data), "exp_avg_sq": np.zeros_like(p.data)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = np.zeros_like(p.data)
        return state

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any],
                group: dict[str, Any]) -> None:
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        g = -grad if group["maximize"] else grad
        state["step"] += 1
        step = state["step"]
        if wd != 0:
            if self._decoupled:
                param *= 1 - lr * wd
            else:
                g = g + wd * param
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg += (1 - beta1) * (g - exp_avg)
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * (g * g)
        bias_correction1 = 1 - beta1 ** step
        bias_correction2 = 1 - beta2 ** step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2 ** 0.5
        if group["amsgrad"]:
            if "max_exp_avg_sq" not in state:  # amsgrad switched on after some steps
                state["max_exp_avg_sq"] = np.zeros_like(param)
            np.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            denom = np.sqrt(state["max_exp_avg_sq"]) / bias_correction2_sqrt + eps
        else:
            denom = np.sqrt(exp_avg_sq) / bias_correction2_sqrt + eps
        param += -step_size * (exp_avg / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay, identical to ``torch.optim.AdamW``.

    Same equations and parameters as :class:`Adam`, except that the weight decay shrinks
    the parameter directly, ``p = p * (1 - lr * weight_decay)``, before the Adam step,
    and its default is 1e-2.
    """

    _decoupled = True

    def __init__(
        self,
        params: ParamsLike,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)
