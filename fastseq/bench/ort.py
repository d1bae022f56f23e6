"""ONNX Runtime as a competitor for inference (optional: needs torch, onnx and onnxruntime).

The model is ``torch.onnx.export(..., dynamo=False)`` of the very torch module the torch
column times: the TorchScript exporter turns nn.RNN/LSTM/GRU into one ONNX RNN/LSTM/GRU
node (checked: a graph without it would time something else), with the weights as
initializers. The session runs on the CPU provider with ``intra_op_num_threads`` = the
case's threads, ``inter_op_num_threads`` = 1 and sequential execution, all graph
optimisations on. The input array and preallocated output buffers are bound once
(``session.io_binding()``); the timed call is ``run_with_iobinding`` alone, so no
allocation or copy of inputs and outputs is timed, as none is on fastseq's side either
beyond the layer's own output.
"""
from __future__ import annotations

import io
import warnings
from typing import Callable

import numpy as np

from .cases import Case

#: ONNX op of each cell: the exported graph must contain it.
ONNX_OP = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def unavailable() -> str | None:
    """Why ONNX Runtime cannot be measured here, or None when it can."""
    missing = []
    for module in ("torch", "onnx", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        return (f"ONNX Runtime skipped: {', '.join(missing)} not installed "
                "(pip install 'fastseq[bench]' torch)")
    return None


def export(module, x: np.ndarray) -> bytes:
    """The ONNX model of torch ``module`` applied to ``x`` (T, B, I), one output "y"
    (T, B, H) plus the final states; raises if the graph has no recurrent node."""
    import onnx
    import torch

    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of dynamo, and warns about
        # batch sizes other than 1 with its default zero initial state: both expected here
        warnings.simplefilter("ignore")
        buffer = io.BytesIO()
        module.eval()
        torch.onnx.export(module, (torch.from_numpy(x),), buffer, dynamo=False,
                          input_names=["x"], output_names=["y"])
    model = buffer.getvalue()
    ops = {node.op_type for node in onnx.load_from_string(model).graph.node}
    want = ONNX_OP[_cell_of(module)]
    if want not in ops:
        raise RuntimeError(f"torch.onnx.export gave no ONNX {want} node (ops: {sorted(ops)})")
    return model


def _cell_of(module) -> str:
    import torch

    for cell, cls in (("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU), ("rnn", torch.nn.RNN)):
        if isinstance(module, cls):
            return cell
    raise TypeError(f"module must be a torch.nn.RNN, LSTM or GRU; got {type(module).__name__}")


def session(model: bytes, threads: int):
    """An InferenceSession as the module docstring describes."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def ort_call(case: Case, module, x: np.ndarray) -> tuple[Callable[[], object], dict]:
    """``run_with_iobinding`` of ``module`` exported (inference cases only) and its bound
    output arrays (name -> NumPy array, filled by each call)."""
    import onnxruntime as ort

    if case.mode != "inference":
        raise ValueError(f"ONNX Runtime is timed for inference only; got mode {case.mode!r}")
    if case.P:
        raise ValueError("ONNX's LSTM operator has no projection (proj_size): not timed")
    sess = session(export(module, x), case.threads)
    binding = sess.io_binding()
    binding.bind_cpu_input("x", x)
    outputs = {}
    for out in sess.get_outputs():
        outputs[out.name] = np.empty([int(d) for d in out.shape], np.float32)
        binding.bind_ortvalue_output(out.name, ort.OrtValue.ortvalue_from_numpy(outputs[out.name]))

    def infer(_keep=(x, outputs)):  # the bound buffers must outlive the binding
        sess.run_with_iobinding(binding)

    return infer, outputs
