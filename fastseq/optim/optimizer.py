"""The Optimizer base class: parameter groups, per-parameter state, state dicts.

Update rules live one per file beside this one; each mirrors the single-tensor path of
its torch.optim counterpart operation by operation, so float64 runs agree to rounding.
"""
from __future__ import annotations

import copy
from typing import Any, Iterable, Mapping

import numpy as np

from ..parameter import Parameter

__all__ = ["Optimizer", "ParamsLike"]

#: Parameters, or a list of dicts each with a "params" entry and per-group options.
ParamsLike = Iterable[Any]


def check_nonnegative(name: str, value: float) -> None:
    """torch's hyper-parameter check: a real number >= 0, else ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not value >= 0.0:
        raise ValueError(f"Invalid {name}: {value} (must be >= 0)")


class Optimizer:
    """Base class: holds ``param_groups`` and ``state``; subclasses define ``_update``.

    Parameters
    ----------
    params : iterable of Parameter, or iterable of dict
        The parameters to optimize, or groups ``{"params": [...], "lr": ..., ...}`` whose
        options override the defaults for their parameters.
    defaults : dict
        The optimizer's options and their default values.

    Attributes
    ----------
    param_groups : list of dict
        Each group's ``"params"`` list and options; schedulers change ``group["lr"]``.
    state : dict
        Per-parameter state (moment estimates, step counts), keyed by Parameter.
    """

    def __init__(self, params: ParamsLike, defaults: dict[str, Any]) -> None:
        if isinstance(params, (Parameter, np.ndarray)):
            raise TypeError(
                "params must be an iterable of Parameters or of dicts, got a single "
                f"{type(params).__name__}"
            )
        self.defaults = dict(defaults)
        self.state: dict[Parameter, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], Mapping):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Add a group of parameters with its own options (missing ones take the defaults)."""
        if not isinstance(param_group, Mapping) or "params" not in param_group:
            raise TypeError("a param group must be a dict with a 'params' entry")
        group = dict(param_group)
        params = group["params"]
        params = [params] if isinstance(params, Parameter) else list(params)
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(
                    f"optimizers take fastseq Parameters, got {type(p).__name__}; "
                    "pass module.parameters()"
                )
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a param group holds the same parameter more than once")
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in existing for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise TypeError(f"unknown options in param group: {sorted(unknown)}")
        group["params"] = params
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group: dict[str, Any]) -> None:
        check_nonnegative("lr", group["lr"])

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Clear the gradients of every parameter: zeros, or None with ``set_to_none``."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is None:
                    p.grad = np.zeros_like(p.data)
                else:
                    p.grad.fill(0)

    def step(self) -> None:
        """Update every parameter that has a gradient, in place; skip those whose grad is None."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.shape != p.data.shape:
                    raise ValueError(
                        f"a parameter of shape {p.data.shape} has a grad of shape {p.grad.shape}"
                    )
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = self._init_state(p, group)
                self._update(p.data, p.grad, state, group)

    def _init_state(self, p: Parameter, group: dict[str, Any]) -> dict[str, Any]:
        return {}

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any],
                group: dict[str, Any]) -> None:  # pragma: no cover
        raise NotImplementedError

    # --- state dicts ----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The state and options, with parameters replaced by their index (torch's layout).

        Returns
        -------
        dict
            ``{"state": {index: {name: value}}, "param_groups": [{option: value, ...,
            "params": [index, ...]}]}``, indices counting parameters across groups in order.
            Arrays are copies.
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            ids = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            packed["params"] = ids
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index[id(p)]] = copy.deepcopy(self.state[p])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (for the same parameters, in order).

        Raises
        ------
        ValueError
            The number of groups or of parameters per group differs, or a state array's
            shape differs from its parameter's.
        """
        if not isinstance(state_dict, Mapping) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError("optimizer state_dict must have exactly the keys 'state' and 'param_groups'")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(saved_groups)} parameter groups, the optimizer "
                f"has {len(self.param_groups)}"
            )
        mapping: dict[Any, Parameter] = {}
        for saved, group in zip(saved_groups, self.param_groups):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    "loaded state dict contains a parameter group that doesn't match the size "
                    f"of the optimizer's group ({len(saved['params'])} vs {len(group['params'])})"
                )
            mapping.update(zip(saved["params"], group["params"]))
        new_state: dict[Parameter, dict[str, Any]] = {}
        for key, value in state_dict["state"].items():
            if key not in mapping:
                raise ValueError(f"loaded state refers to unknown parameter index {key!r}")
            p = mapping[key]
            entry = {}
            for name, item in value.items():
                if isinstance(item, np.ndarray) or hasattr(item, "numpy"):
                    array = np.asarray(item.numpy() if hasattr(item, "numpy") else item)
                    if array.ndim == 0:
                        entry[name] = array.item()
                        continue
                    if array.shape != p.data.shape:
                        raise ValueError(
                            f"state {name!r} of parameter {key} has shape {array.shape}, the "
                            f"parameter has {p.data.shape}"
                        )
                    entry[name] = np.array(array, dtype=p.data.dtype)
                else:
                    entry[name] = copy.deepcopy(item)
            new_state[p] = entry
        for saved, group in zip(saved_groups, self.param_groups):
            for key, value in saved.items():
                if key != "params":
                    group[key] = copy.deepcopy(value)
        self.state = new_state

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        return "\n".join(lines) + "\n)"
