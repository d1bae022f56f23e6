"""The array checks of the functional API, in one place: every rule a backend relies on
(``fastseq/backends/__init__.py``) is enforced here, once per call, with errors that name
the argument and the expected shape. ``fastseq.functional`` checks its arrays through these;
the layers check only their own layout (batch_first, unbatched input, the stacked states)
and leave arrays and lengths to ``functional``, except ``check_sizes``, which they call on
the input's shape before they copy it (a huge broadcast view fails here, not in a copy).
"""
from __future__ import annotations

import numpy as np

__all__ = ["as_array", "checked", "contiguous", "float_array", "native", "check_sizes",
           "check_lengths", "check_flag"]

_FLOAT32, _FLOAT64 = np.dtype(np.float32), np.dtype(np.float64)


def as_array(name: str, value) -> np.ndarray:
    """Any array-like to an ndarray (no copy of an ndarray), refusing dtypes that are not
    real numbers."""
    try:
        a = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be an array of real numbers; got {type(value).__name__} ({exc})") from None
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers (float32 or float64); got dtype {a.dtype}")
    return a


def checked(name: str, value, dtype, shape=None, meaning=None, against="x") -> np.ndarray:
    """``value`` as a float32/float64 ndarray, checked, not yet copied (see contiguous).

    ``dtype``: the dtype it must share (None: either float dtype). ``shape``: the exact
    shape it must have, described by ``meaning`` (a callable, so that the message is only
    formatted on failure: this runs on every call and per-call overhead matters).
    """
    a = value
    # Fastest path (the common case, and per-call overhead matters): an ndarray already of
    # the dtype and shape wanted. Native float32/float64 dtypes are singletons.
    if type(a) is np.ndarray and (a.dtype is dtype or dtype is None and (
            a.dtype is _FLOAT32 or a.dtype is _FLOAT64)) and (shape is None or a.shape == shape):
        return a
    # Fast path: an ndarray already of a native float dtype skips asarray.
    if type(a) is not np.ndarray or (a.dtype is not _FLOAT32 and a.dtype is not _FLOAT64):
        a = as_array(name, a)
        if native(a.dtype) != _FLOAT32 and native(a.dtype) != _FLOAT64:
            raise TypeError(f"{name} must be float32 or float64; got dtype {a.dtype}")
    if dtype is not None and native(a.dtype) != dtype:
        raise TypeError(
            f"{name} has dtype {a.dtype} but {against} has dtype {dtype}; every array must "
            f"share one dtype (float32 or float64): cast with .astype(np.{dtype})"
        )
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} must have shape {meaning()} = {shape}; got {a.shape}")
    return a


def native(dtype: np.dtype) -> np.dtype:
    return dtype if dtype.isnative else dtype.newbyteorder("=")


def contiguous(a: np.ndarray) -> np.ndarray:
    """A checked array as C-contiguous and in native byte order; copies only when needed
    (big-endian data is still float32/float64: it is swapped to native order)."""
    if not a.dtype.isnative:
        return np.ascontiguousarray(a, dtype=native(a.dtype))
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def float_array(name: str, value, dtype, shape=None, meaning=None, against="x") -> np.ndarray:
    """``value`` checked by :func:`checked`, then C-contiguous (copies only when needed)."""
    return contiguous(checked(name, value, dtype, shape, meaning, against))


# The kernels hand every matrix dimension and leading dimension to OpenBLAS's 32-bit int,
# and every byte count must fit a size_t: the rules of validate_config (csrc/loops/
# kernels.cpp), checked here from the shapes before any array is copied.
_INT_MAX = 2**31 - 1
#: Below this T*B*(I + 4H), no limit of check_sizes can be reached (each factor, and T*B
#: times the larger of I and 4H, is then < 2^31): callers skip the call.
SIZES_SURELY_FINE = 2**31


def check_sizes(T: int, B: int, I: int, H: int) -> None:
    if T * B > _INT_MAX or I > _INT_MAX or H > _INT_MAX // 4:
        culprit = "x (T*B)" if T * B > _INT_MAX else ("x (I)" if I > _INT_MAX else "w_hh (H)")
        raise ValueError(
            f"{culprit} is too large for the 32-bit BLAS interface: T*B, I and 4*H must be "
            f"< 2^31; got T={T}, B={B} (T*B = {T * B}), I={I}, H={H} (4*H = {4 * H})"
        )
    if T * B > (1 << 58) // max(I, 4 * H):
        raise ValueError(
            f"sizes too large: the buffers for T={T}, B={B}, I={I}, H={H} would not fit in memory "
            "((T*B) x max(I, 4*H) scalars must stay below 2^58)"
        )


def check_lengths(lengths, T: int, B: int) -> np.ndarray:
    """lengths as a C-contiguous int64 array; any integer dtype, each value in 0..T (a length 0 sequence is allowed: README)."""
    want = f"integers in 0..T = 0..{T}, one per sequence"
    try:
        a = np.asarray(lengths)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"lengths must be an array of {want}; got {type(lengths).__name__} ({exc})") from None
    if a.dtype.kind not in "iu":
        raise TypeError(f"lengths must be integers (any integer dtype), each in 0..T = 0..{T}; "
                        f"got dtype {a.dtype}")
    if a.shape != (B,):
        raise ValueError(f"lengths must have shape (B,) = ({B},), one per sequence; got {a.shape}")
    if a.min() < 0 or a.max() > T:
        raise ValueError(
            f"lengths must lie in 0..T = 0..{T}; got values from {a.min()} to {a.max()}"
        )
    return np.ascontiguousarray(a, dtype=np.int64)


def check_flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool; got {value!r}")
    return bool(value)
