"""Correctness tools: the error metric every comparison uses, and ``fastseq.gradcheck``.

The metric scales the largest absolute difference by the reference's magnitude, but
never by less than 1, so that tiny tensors are held to an absolute tolerance::

    err = max|got - ref| / max(max|ref|, 1)
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

__all__ = ["max_error", "GradcheckError", "gradcheck"]


def max_error(got, ref) -> float:
    """``max|got - ref| / max(max|ref|, 1)``, computed in float64.

    Shapes must match exactly (no broadcasting hides a wrong shape). NaN anywhere in
    either array gives ``inf`` unless both are NaN at the same places.
    """
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        raise ValueError(f"shape mismatch: got {got.shape}, reference {ref.shape}")
    if got.size == 0:
        return 0.0
    got_nan, ref_nan = np.isnan(got), np.isnan(ref)
    if np.any(got_nan != ref_nan):
        return float("inf")
    got, ref = got[~ref_nan], ref[~ref_nan]
    if got.size == 0:
        return 0.0
    same_inf = np.isinf(ref) & (got == ref)
    diff = np.where(same_inf, 0.0, np.abs(got - ref))
    scale = max(float(np.max(np.where(np.isinf(ref), 0.0, np.abs(ref)))), 1.0)
    return float(np.max(diff)) / scale


class GradcheckError(AssertionError):
    """Raised by :func:`gradcheck` when an analytic gradient disagrees with finite differences."""


def gradcheck(
    fn: Callable,
    inputs: Mapping[str, np.ndarray],
    *,
    wrt: Sequence[str] | None = None,
    eps: float = 1e-6,
    tol: float = 1e-6,
    seed: int = 0,
    raise_exception: bool = True,
) -> dict[str, float]:
    """Check analytic gradients against central finite differences, in float64.

    Parameters
    ----------
    fn : callable
        ``fn(**inputs) -> (outputs, vjp)``. ``outputs`` is an array or a tuple of arrays;
        ``vjp(cotangents)`` takes a tuple of arrays shaped like ``outputs`` (the gradient of a
        scalar loss with respect to each output) and returns a mapping from input name to the
        gradient of that loss with respect to the input. ``fn`` must not modify its inputs.
    inputs : mapping of str to array
        Named inputs; every float array is cast to float64 before the check. Non-array
        values (ints, None, flags) are passed through unchanged.
    wrt : sequence of str, optional
        The inputs to differentiate with respect to (default: every float array input).
    eps : float
        Central-difference step.
    tol : float
        Largest accepted error per gradient, ``max|num - ana| / max(max|num|, 1)``.
    seed : int
        Seed of the random cotangents that reduce the outputs to one scalar.
    raise_exception : bool
        Raise :class:`GradcheckError` on failure (default) rather than only returning.

    Returns
    -------
    dict of str to float
        The error of each checked gradient, by input name.

    Notes
    -----
    The outputs are reduced to the scalar ``L = sum_k <w_k, outputs_k>`` with fixed random
    ``w_k``; the analytic gradient is ``vjp(w)`` and the numeric one is
    ``(L(x + eps e_j) - L(x - eps e_j)) / (2 eps)`` for every element ``j`` of every input in
    ``wrt``, so the cost is two calls of ``fn`` per element.
    """
    values = {
        name: np.array(value, dtype=np.float64) if _is_float_array(value) else value
        for name, value in inputs.items()
    }
    if wrt is None:
        wrt = [name for name, value in values.items() if _is_float_array(value)]
    for name in wrt:
        if name not in values or not _is_float_array(values[name]):
            raise ValueError(f"gradcheck: wrt names {name!r}, which is not a float array input")

    outputs, vjp = fn(**values)
    outputs = _as_tuple(outputs)
    rng = np.random.default_rng(seed)
    cotangents = tuple(rng.standard_normal(np.shape(out)) for out in outputs)
    analytic = vjp(cotangents)

    def loss() -> float:
        outs = _as_tuple(fn(**values)[0])
        return float(sum(np.sum(w * np.asarray(o, dtype=np.float64)) for w, o in zip(cotangents, outs)))

    errors: dict[str, float] = {}
    for name in wrt:
        x = values[name]
        numeric = np.zeros_like(x)
        flat = x.reshape(-1)  # a view: perturbing it perturbs the input fn sees
        for j in range(flat.size):
            saved = flat[j]
            flat[j] = saved + eps
            plus = loss()
            flat[j] = saved - eps
            minus = loss()
            flat[j] = saved
            numeric.reshape(-1)[j] = (plus - minus) / (2 * eps)
        got = analytic.get(name) if hasattr(analytic, "get") else None
        if got is None:
            raise GradcheckError(f"gradcheck: vjp returned no gradient for {name!r}")
        errors[name] = max_error(got, numeric)

    failed = {name: err for name, err in errors.items() if not err <= tol}
    if failed and raise_exception:
        lines = ", ".join(f"{name}: {err:.3e}" for name, err in failed.items())
        raise GradcheckError(f"gradcheck failed (tol {tol:.1e}) for {lines}; all errors: {errors}")
    return errors


def _is_float_array(value) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind == "f"


def _as_tuple(outputs) -> tuple:
    return tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)
