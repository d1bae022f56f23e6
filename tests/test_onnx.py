"""fastseq.onnx: import against ONNX Runtime, export run by ONNX Runtime, torch's exporters.

ONNX Runtime 1.32's CPU kernels run RNN, LSTM and GRU in float32 only (RNN has no float64
kernel at all; LSTM and GRU load in float64 and then fail with "does not support double
yet"), so every comparison with it is float32 (err <= 1e-4). In float64 the golden is onnx's
NumPy reference evaluator (full lengths: it ignores sequence_lens), and the export -> load
round trip must reproduce the layer exactly.

ONNX Runtime 1.32 also refuses ``layout=1`` ("Batchwise recurrent operations (layout ==
1) are not supported"): the golden for a layout-1 model is ORT on its layout-0 twin (same
weights) with the inputs and outputs transposed as the ONNX definition of layout says.

Sequence lengths of 0 are the one place where the engines differ (ORT: zero Y_h/Y_c;
fastseq: the initial state): the golden tests leave them out, and
test_length_zero_is_where_ort_and_fastseq_differ pins down both behaviours.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest

import fastseq

onnx = pytest.importorskip("onnx", reason='needs the onnx extra: pip install "fastseq[onnx]"')
ort = pytest.importorskip("onnxruntime", reason='needs the onnx extra: pip install "fastseq[onnx]"')

import fastseq.onnx as fo  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402
from onnx_models import gemm_head, matmul_add_head, recurrent_model  # noqa: E402

TOL32 = 1e-4        # fastseq vs ONNX Runtime, float32
TOL_TORCH = 2e-4    # fastseq vs torch, float32
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ort_run(model, feeds):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds)))


def ort_run_layout(op, spec, layout, feeds):
    """ORT's outputs for ``recurrent_model(op, layout=layout, **spec)`` on ``feeds``; for
    layout 1, which ORT refuses, those of the layout-0 twin with everything transposed:
    X (B, T, I) <-> (T, B, I), states (B, D, H) <-> (D, B, H), Y (B, T, D, H) <-> (T, D, B, H)."""
    if layout == 0:
        return ort_run(recurrent_model(op, layout=0, **spec), feeds)
    twin = {k: (v.transpose(1, 0, 2) if k in ("X", "initial_h", "initial_c") else v)
            for k, v in feeds.items()}
    out = ort_run(recurrent_model(op, layout=0, **spec), twin)
    return {k: v.transpose(2, 0, 1, 3) if k == "Y" else v.transpose(1, 0, 2)
            for k, v in out.items()}


def err(a, b):
    return fastseq.max_error(np.asarray(a, np.float64), np.asarray(b, np.float64))


# --------------------------------------------------------------------------- import

#: cell id -> (op, attributes for D directions)
CELLS = {
    "rnn_tanh": ("RNN", lambda D: {}),
    "rnn_relu": ("RNN", lambda D: {"activations": ["Relu"] * D}),
    "lstm": ("LSTM", lambda D: {}),
    "lstm_defaults_spelled_out": ("LSTM", lambda D: {"activations": ["Sigmoid", "Tanh", "Tanh"] * D}),
    "gru_linear_before_reset": ("GRU", lambda D: {"linear_before_reset": 1}),
    "gru_reset_before": ("GRU", lambda D: {"linear_before_reset": 0}),
}
T, B = 6, 4
#: feeds case -> (sequence_lens or None, with initial states)
FEEDS = {
    "plain": (None, False),
    "full_lengths_and_states": ([T] * B, True),
    "partial_lengths_and_states": ([6, 2, 4, 1], True),
    "partial_lengths": ([3, 6, 1, 5], False),
}


def _feeds(op, direction, layout, lengths, initial, I=5, H=7, seed=1):
    rng = np.random.default_rng(seed)
    D = 2 if direction == "bidirectional" else 1
    x = rng.standard_normal((B, T, I) if layout else (T, B, I)).astype(np.float32)
    feeds = {"X": x}
    if lengths is not None:
        feeds["sequence_lens"] = np.array(lengths, np.int32)
    if initial:
        shape = (B, D, H) if layout else (D, B, H)
        feeds["initial_h"] = rng.standard_normal(shape).astype(np.float32)
        if op == "LSTM":
            feeds["initial_c"] = rng.standard_normal(shape).astype(np.float32)
    return feeds


@pytest.mark.parametrize("case", sorted(FEEDS))
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_import_matches_onnxruntime(cell, direction, layout, case):
    op, attrs = CELLS[cell]
    D = 2 if direction == "bidirectional" else 1
    lengths, initial = FEEDS[case]
    spec = dict(direction=direction, lengths=lengths is not None, initial=initial,
                attrs=attrs(D), seed=len(cell) + layout)
    model = recurrent_model(op, layout=layout, **spec)
    feeds = _feeds(op, direction, layout, lengths, initial)
    want = ort_run_layout(op, spec, layout, feeds)
    imported = fo.load(model)
    got = imported(feeds["X"], lengths=feeds.get("sequence_lens"), h0=feeds.get("initial_h"),
                   c0=feeds.get("initial_c"))
    assert len(got) == len(want)
    for name, value in zip(imported.output_names, got):
        assert value.shape == want[name].shape, name
        assert err(value, want[name]) <= TOL32, (name, err(value, want[name]))
    layer = imported.layers[0]
    assert type(layer).__name__ == op and layer.bidirectional == (D == 2)
    if op == "RNN":
        assert layer.nonlinearity == ("relu" if cell == "rnn_relu" else "tanh")
    if op == "GRU":
        assert layer.reset_after == (cell == "gru_linear_before_reset")


@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("cell", sorted(set(CELLS) - {"rnn_relu"}))
def test_import_matches_the_onnx_reference_in_float64(cell, direction, layout):
    """float64, which ORT does not run: onnx's own NumPy reference evaluator
    (onnx.reference) as the golden, to 1e-10. It ignores sequence_lens (its outputs
    differ from ORT's and the ONNX definition with partial lengths), so full length only,
    and its RNN knows no Relu (rnn_relu is float32 only, against ORT)."""
    from onnx.reference import ReferenceEvaluator

    op, attrs = CELLS[cell]
    D = 2 if direction == "bidirectional" else 1
    model = recurrent_model(op, direction=direction, layout=layout, initial=True,
                            attrs=attrs(D), dtype=np.float64, seed=len(cell))
    feeds = {k: v.astype(np.float64) for k, v in
             _feeds(op, direction, layout, None, True).items()}
    want = ReferenceEvaluator(model).run(None, feeds)
    imported = fo.load(model)
    assert imported.dtype == np.float64
    got = imported.run(feeds)
    for name, value in zip(imported.output_names, want):
        assert got[name].dtype == np.float64
        assert err(got[name], value) <= 1e-10, (name, err(got[name], value))


def test_import_without_bias_and_by_input_name():
    model = recurrent_model("GRU", bias=False, lengths=True, attrs={"linear_before_reset": 1})
    feeds = _feeds("GRU", "forward", 0, [2, 6, 3, 5], False)
    want = ort_run(model, feeds)
    imported = fo.load(model)
    assert imported.layers[0].bias is False
    got = imported.run(feeds)
    for name in want:
        assert err(got[name], want[name]) <= TOL32, name


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_length_zero_is_where_ort_and_fastseq_differ(op):
    """Y is zero for an empty sequence in both; the final state is the initial state in
    fastseq (its documented choice) and zero in ONNX Runtime 1.32. Everything else agrees."""
    lengths = [0, 3, 6, 0]
    attrs = {"linear_before_reset": 1} if op == "GRU" else {}
    model = recurrent_model(op, direction="bidirectional", lengths=True, initial=True,
                            attrs=attrs)
    feeds = _feeds(op, "bidirectional", 0, lengths, True)
    want = ort_run(model, feeds)
    got = fo.load(model).run(feeds)
    empty = np.array(lengths) == 0
    assert np.all(got["Y"][:, :, empty] == 0) and np.all(want["Y"][:, :, empty] == 0)
    assert err(got["Y"], want["Y"]) <= TOL32
    for state, initial in (("Y_h", "initial_h"), ("Y_c", "initial_c")):
        if state in want:
            assert np.array_equal(got[state][:, empty], feeds[initial][:, empty])
            assert np.all(want[state][:, empty] == 0)
            assert err(got[state][:, ~empty], want[state][:, ~empty]) <= TOL32


@pytest.mark.parametrize("head", [gemm_head, matmul_add_head], ids=["gemm", "matmul_add"])
def test_import_with_a_head(head):
    model = recurrent_model("LSTM", lengths=True, nodes_after=[head])
    feeds = _feeds("LSTM", "forward", 0, [6, 5, 6, 4], False)
    want = ort_run(model, feeds)
    imported = fo.load(model)
    got = imported.run(feeds)
    assert [type(layer).__name__ for layer in imported.layers] == ["LSTM", "Linear"]
    for name in want:
        assert err(got[name], want[name]) <= TOL32, name


def test_chained_nodes_with_glue():
    """Two LSTM nodes joined by Squeeze, as torch's exporter chains one-direction layers."""
    model = recurrent_model("LSTM", I=5, H=7, lengths=True)
    graph = model.graph
    rng = np.random.default_rng(5)
    second = recurrent_model("LSTM", I=7, H=7, seed=9)
    for t in second.graph.initializer:
        t.name = "second_" + t.name
        graph.initializer.append(t)
    graph.initializer.append(onnx.numpy_helper.from_array(np.array([1], np.int64), "one"))
    graph.node.extend([
        helper.make_node("Squeeze", ["Y", "one"], ["Y_tbh"], name="glue"),
        helper.make_node("Identity", ["Y_tbh"], ["X2"], name="id"),
        helper.make_node("LSTM", ["X2", "second_W", "second_R", "second_B", "sequence_lens"],
                         ["Y2", "Y2_h"], name="second_lstm", hidden_size=7),
    ])
    graph.output.append(helper.make_tensor_value_info("Y2", TensorProto.FLOAT, None))
    x = rng.standard_normal((T, B, 5)).astype(np.float32)
    feeds = {"X": x, "sequence_lens": np.array([4, 6, 1, 2], np.int32)}
    want = ort_run(model, feeds)
    got = fo.load(model).run(feeds)
    assert set(got) == set(want) == {"Y", "Y_h", "Y_c", "Y2"}
    for name in want:
        assert err(got[name], want[name]) <= TOL32, name


# --------------------------------------------------------------------------- refusals

REFUSALS = {
    "rnn_sigmoid": ("RNN", dict(attrs={"activations": ["Sigmoid"]}), "activations"),
    "rnn_mixed": ("RNN", dict(direction="bidirectional", attrs={"activations": ["Tanh", "Relu"]}),
                  "activations"),
    "lstm_relu_output": ("LSTM", dict(attrs={"activations": ["Sigmoid", "Tanh", "Relu"]}),
                         "activations"),
    "gru_hardsigmoid": ("GRU", dict(attrs={"activations": ["HardSigmoid", "Tanh"]}),
                        "activations"),
    "activation_alpha": ("GRU", dict(attrs={"activation_alpha": [0.5, 0.5]}), "activation_alpha"),
    "activation_beta": ("LSTM", dict(attrs={"activation_beta": [0.5]}), "activation_beta"),
    "clip": ("GRU", dict(attrs={"clip": 3.0}), "clip"),
    "input_forget": ("LSTM", dict(attrs={"input_forget": 1}), "input_forget"),
    "peepholes": ("LSTM", dict(peepholes=True), "'P'"),
    "unknown_attribute": ("RNN", dict(attrs={"bogus": 1}), "bogus"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_name_the_node_and_attribute(case):
    op, kwargs, word = REFUSALS[case]
    with pytest.raises(fo.UnsupportedOnnxError) as info:
        fo.load(recurrent_model(op, **kwargs))
    message = str(info.value)
    assert f"the_{op.lower()}" in message and word in message, message


def test_unknown_op_is_refused():
    def softmax(rng, dtype, D, H):
        return [helper.make_node("Softmax", ["Y"], ["probs"], name="the_softmax")], [], "probs"

    with pytest.raises(fo.UnsupportedOnnxError, match="the_softmax.*Softmax"):
        fo.load(recurrent_model("GRU", nodes_after=[softmax]))


def test_weights_computed_at_run_time_are_refused():
    model = recurrent_model("RNN")
    weight = next(t for t in model.graph.initializer if t.name == "W")
    model.graph.initializer.remove(weight)
    model.graph.input.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, [1, 7, 5]))
    with pytest.raises(fo.UnsupportedOnnxError, match="the_rnn.*'W'.*not a constant"):
        fo.load(model)


def test_missing_sequences_are_reported():
    imported = fo.load(recurrent_model("LSTM", initial=True))
    with pytest.raises(ValueError, match="the_lstm.*X"):
        imported(h0=np.zeros((1, B, 7), np.float32))


# --------------------------------------------------------------------------- export

LAYERS = {
    "rnn_tanh": lambda **kw: fastseq.RNN(5, 6, **kw),
    "rnn_relu": lambda **kw: fastseq.RNN(5, 6, nonlinearity="relu", **kw),
    "lstm": lambda **kw: fastseq.LSTM(5, 6, **kw),
    "gru": lambda **kw: fastseq.GRU(5, 6, **kw),
    "gru_reset_before": lambda **kw: fastseq.GRU(5, 6, reset_after=False, **kw),
}
SHAPES = {
    "one_layer": dict(),
    "bidirectional": dict(bidirectional=True),
    "two_layers": dict(num_layers=2),
    "two_layers_bidirectional_batch_first": dict(num_layers=2, bidirectional=True,
                                                 batch_first=True),
}


def _layer_io(layer, lengths, initial, seed=2):
    rng = np.random.default_rng(seed)
    shape = (B, T, 5) if layer.batch_first else (T, B, 5)
    x = rng.standard_normal(shape).astype(layer.dtype)
    LD = layer.num_layers * layer.num_directions
    states = [rng.standard_normal((LD, B, 6)).astype(layer.dtype)
              for _ in range(2 if isinstance(layer, fastseq.LSTM) else 1)] if initial else []
    state = (tuple(states) if isinstance(layer, fastseq.LSTM) else states[0]) if initial else None
    y, final = layer(x, state, lengths=lengths)
    finals = list(final) if isinstance(layer, fastseq.LSTM) else [final]
    feeds = {"x": x}
    if lengths is not None:
        feeds["lengths"] = np.asarray(lengths, np.int32)
    feeds.update(zip(("h0", "c0"), states))
    return feeds, dict(zip(("y", "h_n", "c_n"), [y] + finals))


@pytest.mark.parametrize("lengths, initial", [(None, False), ([6, 2, 5, 1], True)],
                         ids=["plain", "lengths_and_states"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("cell", sorted(LAYERS))
def test_export_runs_in_onnxruntime(cell, shape, lengths, initial, tmp_path):
    layer = LAYERS[cell](seed=3, **SHAPES[shape]).eval()
    path = tmp_path / "model.onnx"
    model = fo.export(layer, path, lengths=lengths is not None, initial_state=initial)
    assert path.exists()
    feeds, want = _layer_io(layer, lengths, initial)
    got = ort_run(onnx.load(path), feeds)
    assert set(got) == set(want)
    for name in want:
        assert got[name].shape == want[name].shape, name
        assert err(got[name], want[name]) <= TOL32, (name, err(got[name], want[name]))
    assert {n.op_type for n in model.graph.node} <= {"RNN", "LSTM", "GRU", "Slice", "Squeeze",
                                                     "Transpose", "Reshape", "Concat",
                                                     "Identity"}


@pytest.mark.parametrize("opset", [17, 21])
def test_export_at_other_opsets(opset):
    layer = fastseq.LSTM(5, 6, num_layers=2, bidirectional=True, seed=5).eval()
    model = fo.export(layer, lengths=True, opset=opset)
    assert model.opset_import[0].version == opset
    feeds, want = _layer_io(layer, [6, 1, 3, 5], False)
    got = ort_run(model, feeds)
    for name in want:
        assert err(got[name], want[name]) <= TOL32, name


@pytest.mark.parametrize("cell", sorted(LAYERS))
def test_export_then_load_is_exact_in_float64(cell):
    layer = LAYERS[cell](num_layers=2, bidirectional=True, bias=cell != "lstm",
                         dtype=np.float64, seed=4).eval()
    model = fo.export(layer, lengths=True, initial_state=True)
    feeds, want = _layer_io(layer, [6, 3, 1, 4], True)
    got = fo.load(model).run(feeds)
    for name in want:
        assert got[name].dtype == np.float64
        assert np.array_equal(got[name], want[name]), name


def test_export_refuses_what_onnx_cannot_express():
    layer = fastseq.LSTM(5, 6, proj_size=3)
    with pytest.raises(ValueError, match="proj_size=3.*ONNX's LSTM has no projection"):
        fo.export(layer)
    with pytest.raises(TypeError, match="RNN, LSTM or GRU"):
        fo.export(fastseq.Linear(3, 4))
    with pytest.raises(ValueError, match="opset"):
        fo.export(fastseq.GRU(3, 4), opset=11)


# --------------------------------------------------------------------------- torch

torch = pytest.importorskip("torch")
# torch's exporters warn (the TorchScript one is deprecated in favour of dynamo; both note
# batch sizes and the like): the warnings are theirs, not fastseq's.
torch_warnings = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                            "ignore::UserWarning", "ignore::FutureWarning",
                                            "ignore::torch.jit.TracerWarning")

TORCH = {
    "LSTM": lambda: torch.nn.LSTM(5, 6, num_layers=2, bidirectional=True, batch_first=True),
    "GRU": lambda: torch.nn.GRU(5, 6, num_layers=2),
    "RNN": lambda: torch.nn.RNN(5, 6, nonlinearity="relu", bidirectional=True),
}


def _torch_outputs(module, *args):
    with torch.no_grad():
        y, state = module(*args)
    return [y.numpy()] + [s.numpy() for s in (state if isinstance(state, tuple) else (state,))]


@torch_warnings
def test_torch_export_at_opset_11():
    """Opset 11: Squeeze/Unsqueeze/Slice take their axes as attributes."""
    torch.manual_seed(2)
    module = torch.nn.GRU(5, 6, num_layers=2, bidirectional=True).eval()
    x = torch.randn(4, 3, 5)
    buffer = io.BytesIO()
    torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=11,
                      input_names=["x"], dynamic_axes={"x": {0: "T", 1: "B"}})
    model = onnx.load_from_string(buffer.getvalue())
    assert model.opset_import[0].version == 11
    x2 = torch.randn(6, 2, 5)
    for g, w in zip(fo.load(model)(x2.numpy()), _torch_outputs(module, x2)):
        assert g.shape == w.shape and err(g, w) <= TOL_TORCH


@torch_warnings
@pytest.mark.parametrize("op", sorted(TORCH))
def test_torch_export_imports_and_matches_torch(op):
    """torch.onnx.export(dynamo=False), dynamic batch and time: imported, run at another
    shape, with initial states as graph inputs."""
    torch.manual_seed(0)
    module = TORCH[op]().eval()
    batch_first = module.batch_first
    x = torch.randn((3, 4, 5) if batch_first else (4, 3, 5))
    D = 2 if module.bidirectional else 1
    h0 = torch.randn(module.num_layers * D, 3, 6)
    state = (h0, torch.randn_like(h0)) if op == "LSTM" else h0
    buffer = io.BytesIO()
    names = ["x", "h0", "c0"] if op == "LSTM" else ["x", "h0"]
    axes = {"x": {0: "d0", 1: "d1"}, "h0": {1: "batch"}, "c0": {1: "batch"}}
    torch.onnx.export(module, (x, state), buffer, dynamo=False, input_names=names,
                      dynamic_axes={n: axes[n] for n in names})
    model = onnx.load_from_string(buffer.getvalue())
    assert [n.op_type for n in model.graph.node if n.op_type in ("RNN", "LSTM", "GRU")] == \
        [op] * module.num_layers
    imported = fo.load(model)
    x2 = torch.randn((2, 7, 5) if batch_first else (7, 2, 5))
    h2 = torch.randn(module.num_layers * D, 2, 6)
    state2 = (h2, torch.randn_like(h2)) if op == "LSTM" else h2
    want = _torch_outputs(module, x2, state2)
    got = imported(x2.numpy(), h0=h2.numpy(),
                   c0=state2[1].numpy() if op == "LSTM" else None)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert err(g, w) <= TOL_TORCH
    got_zero = imported(x2.numpy())  # no initial states given: zeros, as torch's default
    want_zero = _torch_outputs(module, x2)
    for g, w in zip(got_zero, want_zero):
        assert err(g, w) <= TOL_TORCH


class _LstmThenGru(torch.nn.Module):
    """One model holding both ops, so that one dynamo export (seconds each) covers both."""

    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(5, 6, bidirectional=True)
        self.gru = torch.nn.GRU(12, 6, num_layers=2)

    def forward(self, x):
        y, (h, c) = self.lstm(x)
        z, g = self.gru(y)
        return z, h, c, g


@torch_warnings
@pytest.mark.parametrize("op", ["LSTM+GRU", "RNN"])
def test_torch_dynamo_export(op):
    """The dynamo exporter (torch 2.13, onnxscript 0.7) emits LSTM and GRU nodes, which
    import and match torch; it unrolls nn.RNN into per-step MatMul/Add/Tanh ops, which
    fastseq refuses, saying so."""
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    torch.manual_seed(1)
    module = (_LstmThenGru() if op == "LSTM+GRU" else torch.nn.RNN(5, 6)).eval()
    x = torch.randn(4, 3, 5)
    model = torch.onnx.export(module, (x,), dynamo=True, verbose=False).model_proto
    ops = [n.op_type for n in model.graph.node]
    if op == "RNN":
        assert "RNN" not in ops and {"MatMul", "Tanh"} <= set(ops)
        with pytest.raises(fo.UnsupportedOnnxError, match="unrolled.*dynamo=False"):
            fo.load(model)
        return
    assert [o for o in ops if o in ("LSTM", "GRU")] == ["LSTM", "GRU", "GRU"]
    with torch.no_grad():
        want = [t.numpy() for t in module(x)]
    got = fo.load(model)(x.numpy())
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and err(g, w) <= TOL_TORCH


# --------------------------------------------------------------------------- packaging


def _python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_import_fastseq_does_not_import_onnx():
    out = _python("import sys, fastseq; print('onnx' in sys.modules, "
                  "'onnxruntime' in sys.modules)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_fastseq_onnx_without_onnx_names_the_extra():
    out = _python("import sys; sys.modules['onnx'] = None\n"
                  "try:\n    import fastseq.onnx\nexcept ImportError as e:\n    print(e)")
    assert out.returncode == 0, out.stderr
    assert 'pip install "fastseq[onnx]"' in out.stdout
