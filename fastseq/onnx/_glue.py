"""The shape glue exporters put around recurrent nodes, run in NumPy.

torch.onnx.export and other exporters connect RNN/LSTM/GRU nodes with Squeeze, Transpose,
Reshape, Unsqueeze, Identity and Concat, slice initial states out of a graph input with
Slice or Gather, and build zero states from the input's shape (Shape, Gather, Unsqueeze,
Concat, Expand or ConstantOfShape). Each op here is exact (it moves or builds values, no
arithmetic) and follows the ONNX definition of every opset from 11 on (axes as an
attribute before opset 13, as an input from it).

A missing optional graph input (an initial state the caller did not give) is None; an op
fed None gives None, and the recurrent node then uses zeros, as ONNX does for an absent
``initial_h``.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np


def _ints(value) -> list[int]:
    return [int(v) for v in np.asarray(value).reshape(-1)]


def _axes(attrs, inputs, k):
    """Axes from the attribute (opset < 13) or from input k (opset >= 13), or None."""
    if "axes" in attrs:
        return list(attrs["axes"])
    if len(inputs) > k and inputs[k] is not None:
        return _ints(inputs[k])
    return None


def _identity(attrs, x):
    return [x]


def _squeeze(attrs, x, *rest):
    axes = _axes(attrs, (x, *rest), 1)
    return [np.squeeze(x, axis=None if axes is None else tuple(axes))]


def _unsqueeze(attrs, x, *rest):
    axes = _axes(attrs, (x, *rest), 1)
    rank = np.ndim(x) + len(axes)
    return [np.expand_dims(x, tuple(sorted(a % rank for a in axes)))]


def _transpose(attrs, x):
    perm = attrs.get("perm")
    return [np.transpose(x, None if perm is None else tuple(perm))]


def _reshape(attrs, x, shape):
    shape = _ints(shape)
    if not attrs.get("allowzero", 0):  # 0 copies the input's extent on that axis
        shape = [np.shape(x)[i] if s == 0 else s for i, s in enumerate(shape)]
    return [np.reshape(x, shape)]


def _flatten(attrs, x):
    axis = attrs.get("axis", 1) % (np.ndim(x) + 1) if np.ndim(x) else 0
    lead = int(np.prod(np.shape(x)[:axis], dtype=np.int64))
    return [np.reshape(x, (lead, -1))]


def _concat(attrs, *xs):
    return [np.concatenate([np.asarray(x) for x in xs], axis=attrs["axis"])]


def _slice(attrs, x, starts=None, ends=None, axes=None, steps=None):
    if "starts" in attrs:  # opset < 10: attributes
        starts, ends, axes = attrs["starts"], attrs["ends"], attrs.get("axes")
    starts, ends = _ints(starts), _ints(ends)
    axes = list(range(len(starts))) if axes is None else _ints(axes)
    steps = [1] * len(starts) if steps is None else _ints(steps)
    index = [slice(None)] * np.ndim(x)
    # Python's slices clamp out-of-range starts and ends exactly as ONNX's Slice does.
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[axis] = slice(start, end, step)
    return [np.asarray(x)[tuple(index)]]


def _gather(attrs, x, indices):
    return [np.take(x, np.asarray(indices, dtype=np.int64), axis=attrs.get("axis", 0))]


def _shape(attrs, x):
    shape = np.array(np.shape(x), dtype=np.int64)
    return [shape[attrs.get("start", 0):attrs.get("end", None)]]


def _constant_of_shape(attrs, shape):
    value = attrs.get("value")
    value = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return [np.full(_ints(shape), value[0], dtype=value.dtype)]


def _expand(attrs, x, shape):
    x = np.asarray(x)
    return [np.array(np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(_ints(shape)))))]


def _cast(attrs, x):
    from onnx import helper

    return [np.asarray(x).astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))]


#: op type -> f(attrs, *inputs) -> list of outputs. Inputs may be None (absent).
GLUE: dict[str, Callable[..., list[Any]]] = {
    "Identity": _identity, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze,
    "Transpose": _transpose, "Reshape": _reshape, "Flatten": _flatten, "Concat": _concat,
    "Slice": _slice, "Gather": _gather, "Shape": _shape,
    "ConstantOfShape": _constant_of_shape, "Expand": _expand, "Cast": _cast,
}
