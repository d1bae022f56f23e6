"""Small ONNX models for tests/test_onnx.py, built with onnx.helper from seeded weights."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
ELEM = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}


def recurrent_model(op, *, I=5, H=7, direction="forward", layout=0, dtype=np.float32,
                    bias=True, lengths=False, initial=False, seed=0, attrs=None,
                    peepholes=False, opset=21, extra_inputs=None, nodes_after=()):
    """One RNN/LSTM/GRU node, weights as initializers; graph inputs X (and sequence_lens,
    initial_h, initial_c), outputs Y, Y_h (and Y_c). ``nodes_after``: extra nodes fed by Y
    whose outputs (named in each node) become graph outputs too."""
    rng = np.random.default_rng(seed)
    G, D = GATES[op], 2 if direction == "bidirectional" else 1
    dtype = np.dtype(dtype)
    u = lambda *shape: rng.uniform(-0.6, 0.6, shape).astype(dtype)  # noqa: E731
    inits = [numpy_helper.from_array(u(D, G * H, I), "W"),
             numpy_helper.from_array(u(D, G * H, H), "R")]
    inputs = ["X", "W", "R"]
    if bias:
        inits.append(numpy_helper.from_array(u(D, 2 * G * H), "B"))
    inputs.append("B" if bias else "")
    T, B = "T", "B"
    state_shape = [B, D, H] if layout == 1 else [D, B, H]
    graph_inputs = [helper.make_tensor_value_info("X", ELEM[dtype],
                                                  [B, T, I] if layout == 1 else [T, B, I])]
    inputs.append("sequence_lens" if lengths else "")
    if lengths:
        graph_inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32,
                                                          [B]))
    states = ["initial_h"] + (["initial_c"] if op == "LSTM" else [])
    for s in states:
        inputs.append(s if initial else "")
        if initial:
            graph_inputs.append(helper.make_tensor_value_info(s, ELEM[dtype], state_shape))
    if peepholes:
        inits.append(numpy_helper.from_array(np.zeros((D, 3 * H), dtype), "P"))
        inputs.append("P")
    while inputs[-1] == "":
        inputs.pop()
    outputs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node_attrs = dict(hidden_size=H, direction=direction, layout=layout, **(attrs or {}))
    node = helper.make_node(op, inputs, outputs, name=f"the_{op.lower()}", **node_attrs)
    y_shape = [B, T, D, H] if layout == 1 else [T, D, B, H]
    graph_outputs = [helper.make_tensor_value_info("Y", ELEM[dtype], y_shape)]
    graph_outputs += [helper.make_tensor_value_info(o, ELEM[dtype], state_shape)
                      for o in outputs[1:]]
    nodes = [node]
    for extra in nodes_after:
        made, new_inits, out_name = extra(rng, dtype, D, H)
        nodes += made
        inits += new_inits
        graph_outputs.append(helper.make_tensor_value_info(out_name, ELEM[dtype], None))
    graph = helper.make_graph(nodes, "test", graph_inputs + list(extra_inputs or ()),
                              graph_outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def gemm_head(rng, dtype, D, H, O=3):
    """Y [T, D, B, H] (D = 1) -> Squeeze -> last step [B, H] via Gather -> Gemm."""
    inits = [numpy_helper.from_array(rng.uniform(-1, 1, (O, H)).astype(dtype), "head_w"),
             numpy_helper.from_array(rng.uniform(-1, 1, (O,)).astype(dtype), "head_b"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1"),
             numpy_helper.from_array(np.array(-1, np.int64), "last")]
    nodes = [helper.make_node("Squeeze", ["Y", "axis1"], ["Y_tbh"], name="squeeze"),
             helper.make_node("Gather", ["Y_tbh", "last"], ["Y_last"], name="last_step", axis=0),
             helper.make_node("Gemm", ["Y_last", "head_w", "head_b"], ["logits"], name="head",
                              transB=1)]
    return nodes, inits, "logits"


def matmul_add_head(rng, dtype, D, H, O=4):
    """Y [T, D, B, H] -> Transpose [T, B, D, H] -> Reshape [T, B, D*H] -> MatMul + Add."""
    inits = [numpy_helper.from_array(rng.uniform(-1, 1, (D * H, O)).astype(dtype), "mm_w"),
             numpy_helper.from_array(rng.uniform(-1, 1, (O,)).astype(dtype), "mm_b"),
             numpy_helper.from_array(np.array([0, 0, -1], np.int64), "tb_shape")]
    nodes = [helper.make_node("Transpose", ["Y"], ["Y_tbdh"], name="to_tbdh", perm=[0, 2, 1, 3]),
             helper.make_node("Reshape", ["Y_tbdh", "tb_shape"], ["Y_flat"], name="flatten_dirs"),
             helper.make_node("MatMul", ["Y_flat", "mm_w"], ["mm"], name="proj"),
             helper.make_node("Add", ["mm_b", "mm"], ["scores"], name="proj_bias")]
    return nodes, inits, "scores"
