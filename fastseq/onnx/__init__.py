"""ONNX interop: import ONNX RNN/LSTM/GRU graphs as fastseq layers, export fastseq layers.

``fastseq.onnx.load(path_or_model)`` reads a graph of ONNX ``RNN``, ``LSTM`` and ``GRU``
nodes (chained or not, with the shape glue exporters put between them and an optional
``Gemm`` or ``MatMul`` + ``Add`` head) into an :class:`OnnxModel`: fastseq layers with the
weights converted, callable like the graph. ``fastseq.onnx.export(layer, path)`` writes a
fastseq RNN/LSTM/GRU (stacked, bidirectional, optional lengths and initial states) as an
ONNX model that ONNX Runtime runs with the same outputs.

Nothing is approximated: an attribute or input fastseq cannot run exactly (activations
other than the defaults and the RNN's Relu, ``activation_alpha``/``activation_beta``,
``clip``, ``input_forget=1``, LSTM peepholes ``P``, an op outside the supported set) is
refused with :class:`UnsupportedOnnxError` naming the node and the attribute or input.

Needs the ``onnx`` package (``pip install "fastseq[onnx]"``, which also installs
onnxruntime); ``import fastseq`` never imports it.

Sequence lengths of 0 are fastseq's choice for an empty sequence (zero outputs, the final
state is the initial state); ONNX leaves them undefined and ONNX Runtime 1.32 returns a
zero ``Y_h``/``Y_c`` for them instead.
"""
from __future__ import annotations

try:
    import onnx as _onnx  # noqa: F401
except ImportError as _exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "fastseq.onnx needs the onnx package, which is not installed: "
        'pip install "fastseq[onnx]" (onnx and onnxruntime)'
    ) from _exc

from ._convert import UnsupportedOnnxError
from ._export import export
from ._import import OnnxModel, load

__all__ = ["load", "export", "OnnxModel", "UnsupportedOnnxError"]
