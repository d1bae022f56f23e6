"""Correctness tools: the error metric every comparison uses, ``fastseq.gradcheck`` (finite
differences, float64) and ``fastseq.check_against_reference`` (every backend against the
NumPy reference, float32 or float64).

The metric scales the largest absolute difference by the reference's magnitude, but
never by less than 1, so that tiny tensors are held to an absolute tolerance::

    err = max|got - ref| / max(max|ref|, 1)
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = ["max_error", "worst_index", "GradcheckError", "GradcheckReport", "gradcheck",
           "check_against_reference", "REFERENCE_TOLERANCE"]

#: The tolerance of ``max_error`` against the reference backend, by dtype (README,
#: Determinism): float32 results are compared with the float64 reference on the same inputs.
REFERENCE_TOLERANCE = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}


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


def worst_index(got, ref) -> tuple[int, ...] | None:
    """Index of the element with the largest ``|got - ref|`` (NaN/inf mismatches first);
    None for empty arrays."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.size == 0:
        return None
    with np.errstate(invalid="ignore"):
        diff = np.abs(got - ref)
    same = (got == ref) | (np.isnan(got) & np.isnan(ref))
    diff = np.where(same, 0.0, np.where(np.isnan(diff), np.inf, diff))
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), got.shape))


class GradcheckReport(dict):
    """What :func:`gradcheck` returns: a dict of error by input name, plus per name the
    index of the worst element and the analytic and numeric values there (``details``)."""

    def __init__(self, errors=(), details=None):
        super().__init__(errors)
        #: name -> {"error", "index", "analytic", "numeric"}
        self.details: dict[str, dict] = dict(details or {})

    def describe(self, name: str) -> str:
        d = self.details.get(name)
        if d is None:
            return f"{name}: {self[name]:.3e}"
        return (f"{name}: {d['error']:.3e} at index {d['index']} "
                f"(analytic {d['analytic']:.6g}, numeric {d['numeric']:.6g})")


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
        gradient of that loss with respect to the input, keyed by the input's name (``x``)
        or by the name with a ``d`` prefix (``dx``), as every fastseq backward returns them,
        so a backward's own dict can be returned as it is. ``fn`` must not modify its
        inputs, and must compute in float64: a function whose outputs or gradients come
        back in float32 (a float32 layer casts the float64 inputs back) is refused with a
        TypeError, because a central difference with ``eps`` = 1e-6 is below float32's
        resolution (about 1e-7 relative) and the "numeric gradient" would be rounding noise;
        check float32 with :func:`check_against_reference`.
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
    GradcheckReport
        A dict: the error of each checked gradient, by input name; ``.details[name]``
        holds the index of its worst element and the analytic and numeric values there
        (the error message names them too).

    Raises
    ------
    GradcheckError
        A gradient is above ``tol``, or the vjp returned none for an input in ``wrt``.
    TypeError
        ``fn`` computes in float32 (or lower): see ``fn``.

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
    _refuse_low_precision("an output", {f"output {k}": o for k, o in enumerate(outputs)})
    rng = np.random.default_rng(seed)
    cotangents = tuple(rng.standard_normal(np.shape(out)) for out in outputs)
    analytic = vjp(cotangents)
    if not hasattr(analytic, "get"):
        raise GradcheckError(f"gradcheck: vjp must return a mapping, got {type(analytic).__name__}")

    def loss() -> float:
        outs = _as_tuple(fn(**values)[0])
        return float(sum(np.sum(w * np.asarray(o, dtype=np.float64)) for w, o in zip(cotangents, outs)))

    report = GradcheckReport()
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
        got = _gradient_for(analytic, name)
        _refuse_low_precision("a gradient", {name: got})
        got = np.asarray(got)
        if got.shape != numeric.shape:
            raise GradcheckError(f"gradcheck: the gradient for {name!r} has shape {got.shape}, "
                                 f"the input {numeric.shape}")
        err = max_error(got, numeric)
        index = worst_index(got, numeric)
        report[name] = err
        report.details[name] = {
            "error": err, "index": index,
            "analytic": float(got[index]) if index is not None else float("nan"),
            "numeric": float(numeric[index]) if index is not None else float("nan"),
        }

    failed = [name for name, err in report.items() if not err <= tol]
    if failed and raise_exception:
        lines = "; ".join(report.describe(name) for name in failed)
        raise GradcheckError(f"gradcheck failed (tol {tol:.1e}) for {lines}; "
                             f"all errors: {dict(report)}")
    return report


def _gradient_for(analytic: Mapping, name: str):
    for key in (name, "d" + name):
        got = analytic.get(key)
        if got is not None:
            return got
    raise GradcheckError(f"gradcheck: vjp returned no gradient for {name!r} (looked for "
                         f"{name!r} and {'d' + name!r}; it returned {sorted(analytic)})")


def _refuse_low_precision(what: str, arrays: Mapping[str, Any]) -> None:
    for name, a in arrays.items():
        dtype = np.asarray(a).dtype
        if dtype.kind == "f" and dtype.itemsize < 8:
            raise TypeError(
                f"gradcheck: {what} ({name}) is {dtype}: the function computes in {dtype} "
                "although gradcheck passed float64 inputs (a float32 layer casts them back). "
                f"Central differences need float64: a step of 1e-6 is below {dtype}'s "
                "resolution, so the numeric gradient would be rounding noise (a float32 layer "
                "shows errors near 0.5). Build the layer with dtype=np.float64, or compare "
                "float32 with the reference: fastseq.check_against_reference."
            )


def _is_float_array(value) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind == "f"


def _as_tuple(outputs) -> tuple:
    return tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)


# --------------------------------------------------------------------- against the reference


def check_against_reference(
    target,
    inputs,
    *,
    backends: Sequence[str] | None = None,
    seed: int = 0,
    tol: float | None = None,
    raise_exception: bool = True,
) -> dict[str, dict[str, float]]:
    """Run a layer or a function on every available backend and compare each named
    output and gradient with the ``reference`` backend.

    Parameters
    ----------
    target : Module or callable
        A layer (``fastseq.LSTM``, with ``proj_size`` too, ``GRU``, ``RNN``, ``Linear``, or
        any Module whose ``forward(**inputs)`` returns an array or ``(y, state)`` and
        whose ``backward`` takes the cotangents in the same structure): it is deep-copied
        once per backend (the copies share its weights' values and its generator's state,
        so dropout masks agree), run forward and backward with fixed random cotangents, and every output
        (``y``, ``h_n``, ``c_n``), input gradient (``dx``, ``dh0``, ``dc0``) and parameter
        gradient (``<parameter name>.grad``, every parameter) is compared. Or a function
        with :func:`gradcheck`'s protocol, ``fn(**inputs) -> (outputs, vjp)``: outputs
        (``output[k]``) and every gradient the vjp returns are compared.
    inputs : array or mapping of str to value
        The forward's keyword arguments (an array means ``{"x": array}``), e.g.
        ``{"x": x, "state": h0, "lengths": lengths}``. Not cast: a float32 layer is checked
        in float32.
    backends : sequence of str, optional
        Backends to check (default: every available one but ``reference``). A backend
        that cannot run the target raises there: the LSTM with a projection
        (``proj_size``, ``w_hr``) raises NotImplementedError on a backend whose module
        does not set ``PROJECTION = True``; name the backends that have it.
    seed : int
        Seed of the random cotangents.
    tol : float, optional
        Largest accepted ``max_error``; by default the README's, by the dtype of each
        array: 1e-10 for float64, 1e-4 for float32.
    raise_exception : bool
        Raise :class:`GradcheckError` naming every array above tolerance (its error, the
        index of its worst element, both values there) instead of only returning.

    Returns
    -------
    dict
        ``{backend: {name: error}}``, the error being ``max|got - ref| / max(max|ref|, 1)``.
    """
    from . import backends as _backends

    if not isinstance(inputs, Mapping):
        inputs = {"x": inputs}
    names = [b for b in (backends if backends is not None else _backends.available_backends())
             if b != "reference"]
    ref = _run_named(target, inputs, "reference", seed)
    results: dict[str, dict[str, float]] = {}
    failures = []
    for backend in names:
        got = _run_named(target, inputs, backend, seed)
        if set(got) != set(ref):
            raise GradcheckError(f"check_against_reference: {backend} returned "
                                 f"{sorted(got)}, the reference {sorted(ref)}")
        results[backend] = {}
        for name, r in ref.items():
            g = got[name]
            err = max_error(g, r)
            results[backend][name] = err
            limit = tol if tol is not None else REFERENCE_TOLERANCE.get(np.asarray(g).dtype, 1e-4)
            if not err <= limit:
                index = worst_index(g, r)
                at = "" if index is None else (f" at index {index} (got {float(np.asarray(g)[index]):.8g}, "
                                               f"reference {float(np.asarray(r)[index]):.8g})")
                failures.append(f"{backend} {name}: {err:.3e} > {limit:.0e}{at}")
    if failures and raise_exception:
        raise GradcheckError("check_against_reference: " + "; ".join(failures))
    return results


def _run_named(target, inputs: Mapping, backend: str, seed: int) -> dict[str, np.ndarray]:
    """Outputs and gradients of ``target`` on ``backend``, by name."""
    from .backends import use_backend

    rng = np.random.default_rng(seed)
    if hasattr(target, "backward") and hasattr(target, "named_parameters"):
        layer = copy.deepcopy(target)
        layer.train()
        layer.zero_grad(set_to_none=True)
        with use_backend(backend):
            out = layer(**inputs)
            y, state = (out if isinstance(out, tuple) else (out, None))
            named = {"y": np.array(y)}
            state_names = ("h_n", "c_n") if isinstance(state, tuple) else ("h_n",)
            states = state if isinstance(state, tuple) else (() if state is None else (state,))
            named.update({n: np.array(s) for n, s in zip(state_names, states)})
            dy = _cotangent(rng, y)
            dstates = tuple(_cotangent(rng, s) for s in states)
            if state is None:
                back = layer.backward(dy)
            else:
                back = layer.backward(dy, dstates if isinstance(state, tuple) else dstates[0])
        dx, dstate0 = back if isinstance(back, tuple) else (back, None)
        named["dx"] = np.array(dx)
        if dstate0 is not None:
            d0 = dstate0 if isinstance(dstate0, tuple) else (dstate0,)
            named.update({n: np.array(d) for n, d in zip(("dh0", "dc0"), d0)})
        for pname, param in layer.named_parameters():
            if param.grad is not None:
                named[f"{pname}.grad"] = np.array(param.grad)
        return named
    with use_backend(backend):
        outputs, vjp = target(**inputs)
        outputs = _as_tuple(outputs)
        grads = vjp(tuple(_cotangent(rng, o) for o in outputs))
    named = {f"output[{k}]": np.array(o) for k, o in enumerate(outputs)}
    named.update({k: np.array(v) for k, v in grads.items() if v is not None})
    return named


def _cotangent(rng: np.random.Generator, like) -> np.ndarray:
    like = np.asarray(like)
    return rng.standard_normal(like.shape).astype(like.dtype if like.dtype.kind == "f" else np.float64)
