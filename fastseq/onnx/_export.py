"""``fastseq.onnx.export``: a fastseq RNN/LSTM/GRU layer as an ONNX model.

One ONNX recurrent node per layer (both directions in one node), chained with the glue
torch's exporter uses: the next layer's input is ``Y`` squeezed (one direction) or
transposed to ``[T, B, D, H]`` and reshaped to ``[T, B, D*H]`` (two); layer l's initial
states are ``Slice``s of the graph's ``h0``/``c0``; the final states of every layer are
concatenated along the first axis, as fastseq returns them.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Union

import numpy as np

from ..recurrent import GRU, LSTM, RNN
from ._convert import to_onnx_rows

__all__ = ["export"]

#: The default opset: ONNX Runtime 1.32 runs it, and so does every runtime since 1.17.
DEFAULT_OPSET = 20
_OP = {RNN: "RNN", LSTM: "LSTM", GRU: "GRU"}


def export(module: Any, path: Optional[Union[str, os.PathLike]] = None, *,
           lengths: bool = False, initial_state: bool = False,
           opset: int = DEFAULT_OPSET) -> Any:
    """Write a fastseq ``RNN``, ``LSTM`` or ``GRU`` layer as an ONNX model.

    Parameters
    ----------
    module : fastseq.RNN, fastseq.LSTM or fastseq.GRU
        Any number of layers, one or two directions, with or without biases, batch_first
        or not. Exported as in eval mode: dropout between layers is left out.
    path : str, path or None
        Where to write the model (None: only return it).
    lengths : bool
        Add a graph input ``lengths``, int32 ``(B,)``, fed to every node's
        ``sequence_lens``: outputs past a length are zero, final states those of the last
        valid step, the reverse direction reads each sequence from its own last step, as
        in fastseq. A length of 0 is where engines differ: ONNX Runtime 1.32 gives zero
        final states for it, fastseq the initial states.
    initial_state : bool
        Add graph inputs ``h0`` (and ``c0`` for the LSTM), ``(num_layers*D, B, H)`` as
        fastseq takes them; without it the initial states are zeros.
    opset : int
        The ONNX opset (14 or later: the recurrent ops' ``layout`` attribute).

    Returns
    -------
    onnx.ModelProto
        Inputs ``x`` (``(T, B, I)``, or ``(B, T, I)`` with batch_first), then ``lengths``,
        ``h0``, ``c0`` when asked for; outputs ``y``, ``h_n`` (and ``c_n``), shaped as the
        layer returns them. ONNX Runtime 1.32's CPU kernels run these ops in float32 only;
        a float64 layer exports as a valid float64 model that fastseq.onnx.load reads.

    Raises
    ------
    TypeError
        ``module`` is not a fastseq RNN, LSTM or GRU.
    ValueError
        The layer has something ONNX cannot express exactly (a nonzero ``proj_size``).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    op = next((name for cls, name in _OP.items() if isinstance(module, cls)), None)
    if op is None:
        raise TypeError(f"module must be a fastseq RNN, LSTM or GRU; got {type(module).__name__}")
    if getattr(module, "proj_size", 0):
        raise ValueError(f"module has proj_size={module.proj_size}: ONNX's LSTM has no "
                         "projection (h = W_hr (o * tanh(c))), so it cannot be exported exactly")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 14:
        raise ValueError(f"opset must be an int >= 14 (the recurrent ops' layout attribute); "
                         f"got {opset!r}")
    L, D, H, I = module.num_layers, module.num_directions, module.hidden_size, module.input_size
    G = {"RNN": 1, "LSTM": 4, "GRU": 3}[op]
    elem = TensorProto.FLOAT if module.dtype == np.float32 else TensorProto.DOUBLE
    nodes, inits = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    x = "x"
    if module.batch_first:
        nodes.append(helper.make_node("Transpose", [x], ["x_time_major"], perm=[1, 0, 2]))
        x = "x_time_major"
    attrs: dict[str, Any] = {"hidden_size": H,
                             "direction": "bidirectional" if D == 2 else "forward"}
    if op == "RNN":
        attrs["activations"] = ["Relu" if module.nonlinearity == "relu" else "Tanh"] * D
    if op == "GRU":
        attrs["linear_before_reset"] = int(module.reset_after)
    state_names = ["h0", "c0"] if op == "LSTM" else ["h0"]
    finals: dict[str, list[str]] = {"h": [], "c": []}
    for layer in range(L):
        suffixes = ("", "_reverse")[:D]
        p = {name: [getattr(module, f"{name}_l{layer}{s}").data for s in suffixes]
             for name in (("weight_ih", "weight_hh", "bias_ih", "bias_hh") if module.bias
                          else ("weight_ih", "weight_hh"))}
        rows = lambda arrays: np.stack([to_onnx_rows(op, a, H) for a in arrays])  # noqa: E731
        inputs = [x, const(f"W_l{layer}", rows(p["weight_ih"])),
                  const(f"R_l{layer}", rows(p["weight_hh"]))]
        inputs.append(const(f"B_l{layer}", np.concatenate(
            [rows(p["bias_ih"]), rows(p["bias_hh"])], axis=1)) if module.bias else "")
        inputs.append("lengths" if lengths else "")
        if initial_state:
            bounds = [const(f"state_l{layer}_{k}", np.array([v], np.int64))
                      for k, v in (("start", layer * D), ("end", (layer + 1) * D), ("axis", 0))]
            for state in state_names:
                nodes.append(helper.make_node("Slice", [state, *bounds],
                                              [f"{state}_l{layer}"]))
                inputs.append(f"{state}_l{layer}")
        else:
            inputs += [""] * len(state_names)
        while inputs and inputs[-1] == "":
            inputs.pop()
        outputs = [f"Y_l{layer}", f"h_n_l{layer}"] + ([f"c_n_l{layer}"] if op == "LSTM" else [])
        nodes.append(helper.make_node(op, inputs, outputs, name=f"{op.lower()}_l{layer}",
                                      **attrs))
        finals["h"].append(outputs[1])
        if op == "LSTM":
            finals["c"].append(outputs[2])
        # Y [T, D, B, H] -> [T, B, D*H], the next layer's input (and the output y)
        if D == 1:
            nodes.append(helper.make_node("Squeeze", [outputs[0], const(f"axis1_l{layer}",
                                                                        np.array([1], np.int64))],
                                          [f"y_l{layer}"]))
        else:
            nodes.append(helper.make_node("Transpose", [outputs[0]], [f"Y_tbdh_l{layer}"],
                                          perm=[0, 2, 1, 3]))
            nodes.append(helper.make_node(
                "Reshape", [f"Y_tbdh_l{layer}", const(f"shape_l{layer}",
                                                      np.array([0, 0, -1], np.int64))],
                [f"y_l{layer}"]))
        x = f"y_l{layer}"
    if module.batch_first:
        nodes.append(helper.make_node("Transpose", [x], ["y"], perm=[1, 0, 2]))
    else:
        nodes.append(helper.make_node("Identity", [x], ["y"]))
    for key, names in finals.items():
        if names:
            nodes.append(helper.make_node("Concat", names, [f"{key}_n"], axis=0))

    T, B = "T", "B"
    x_shape = [B, T, I] if module.batch_first else [T, B, I]
    y_shape = [B, T, D * H] if module.batch_first else [T, B, D * H]
    graph_inputs = [helper.make_tensor_value_info("x", elem, x_shape)]
    if lengths:
        graph_inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT32, [B]))
    if initial_state:
        graph_inputs += [helper.make_tensor_value_info(s, elem, [L * D, B, H])
                         for s in state_names]
    graph_outputs = [helper.make_tensor_value_info("y", elem, y_shape)]
    graph_outputs += [helper.make_tensor_value_info(f"{k}_n", elem, [L * D, B, H])
                      for k, names in finals.items() if names]
    graph = helper.make_graph(nodes, f"fastseq_{op.lower()}", graph_inputs, graph_outputs,
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="fastseq")
    # IR 10 (ONNX 1.16): what opsets up to 21 need and what ONNX Runtime 1.32 reads; a
    # newer onnx package would otherwise stamp its own, newer IR version.
    model.ir_version = min(onnx.IR_VERSION, 10 if opset <= 21 else onnx.IR_VERSION)
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model
