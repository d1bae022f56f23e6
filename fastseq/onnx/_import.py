"""``fastseq.onnx.load``: an ONNX graph of RNN/LSTM/GRU nodes as fastseq layers.

The graph is read once, in its (topological) node order:

- every value computable from initializers and ``Constant`` nodes alone is computed now;
- each ``RNN``/``LSTM``/``GRU`` node becomes a fastseq ``RNN``/``LSTM``/``GRU`` layer (one
  layer, one or two directions) holding its weights, converted to fastseq's gate order;
- a ``Gemm``, or a ``MatMul`` by a constant matrix (with the ``Add`` of a constant vector
  that follows it folded in as the bias), becomes a ``fastseq.Linear``;
- the shape glue between them (``_glue.GLUE``) is kept, to run in NumPy at call time;
- anything else is refused with :class:`UnsupportedOnnxError`.

Calling the :class:`OnnxModel` walks that plan with the caller's inputs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from ..linear import Linear
from ..recurrent import GRU, LSTM, RNN
from ._convert import (FAMILY, GATES, INPUTS, OUTPUTS, RecurrentSpec, UnsupportedOnnxError,
                       node_label, parse_recurrent, refuse, to_fastseq_rows)
from ._glue import GLUE

__all__ = ["load", "OnnxModel"]


class _Missing:
    """The value of a graph input the caller did not give (and of what is computed from
    it): an absent initial state, or absent lengths."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()
_LAYER = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}


def _attributes(node) -> dict[str, Any]:
    from onnx import helper, numpy_helper

    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, (list, tuple)) and value and isinstance(value[0], bytes):
            value = [v.decode() for v in value]
        elif a.type == a.TENSOR:
            value = numpy_helper.to_array(value)
        out[a.name] = value
    return out


def _constant_value(node, attrs) -> np.ndarray:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in attrs:
            value = attrs[key]
            if key.startswith("value_float"):
                return np.asarray(value, dtype=np.float32)
            if key.startswith("value_int"):
                return np.asarray(value, dtype=np.int64)
            return np.asarray(value)
    raise refuse(node, f"attributes {sorted(attrs)} hold no tensor fastseq reads (value, "
                       "value_float(s), value_int(s))")


# --------------------------------------------------------------------------- steps


@dataclass
class _Glue:
    node: Any
    attrs: dict
    inputs: list[str]
    outputs: list[str]

    def run(self, values: dict) -> None:
        args = [None if name == "" else values[name] for name in self.inputs]
        if any(a is MISSING for a in args):
            outs = [MISSING] * len(self.outputs)
        else:
            outs = GLUE[self.node.op_type](self.attrs, *args)
        for name, value in zip(self.outputs, outs):
            if name:
                values[name] = value


@dataclass
class _Recurrent:
    node: Any
    spec: RecurrentSpec
    layer: Any
    slots: dict           # ONNX input slot -> value name ("" when absent)
    outputs: list[str]    # Y, Y_h (, Y_c); "" for an output not used

    def _state(self, values, slot, B):
        name = self.slots.get(slot, "")
        value = values[name] if name else MISSING
        if value is MISSING:
            return None
        value = np.asarray(value)
        D, H = self.spec.directions, self.layer.hidden_size
        want = (B, D, H) if self.spec.layout == 1 else (D, B, H)
        if value.shape != want:
            raise ValueError(f"{node_label(self.node)}: input {slot!r} must have shape {want}, "
                             f"got {value.shape}")
        return value.transpose(1, 0, 2) if self.spec.layout == 1 else value

    def run(self, values: dict) -> None:
        spec, layer, label = self.spec, self.layer, node_label(self.node)
        x = values[self.slots["X"]]
        if x is MISSING:
            raise ValueError(f"{label}: its input X depends on a graph input that was not given")
        x = np.asarray(x)
        if x.ndim != 3:
            raise ValueError(f"{label}: input X must be 3-D, got shape {x.shape}")
        if spec.layout == 1:
            x = x.transpose(1, 0, 2)
        T, B = x.shape[:2]
        lengths = values[self.slots["sequence_lens"]] if self.slots["sequence_lens"] else MISSING
        lengths = None if lengths is MISSING else np.asarray(lengths)
        h0 = self._state(values, "initial_h", B)
        c0 = self._state(values, "initial_c", B) if spec.op == "LSTM" else None
        if spec.op == "LSTM" and (h0 is None) != (c0 is None):
            zeros = np.zeros((spec.directions, B, layer.hidden_size), layer.dtype)
            h0, c0 = (zeros if h0 is None else h0), (zeros if c0 is None else c0)
        try:
            if spec.reverse_only:
                # One direction read backwards: the functional call a bidirectional layer
                # makes for its second half, with this layer's only weights.
                y, h_n, c_n, _ = layer._cell_forward(
                    np.ascontiguousarray(x, dtype=layer.dtype), layer._weights(0, 0),
                    None if h0 is None else np.ascontiguousarray(h0[0], dtype=layer.dtype),
                    None if c0 is None else np.ascontiguousarray(c0[0], dtype=layer.dtype),
                    lengths,  # functional checks it (dtype, shape, 0..T)
                    True, False)
                h_n = h_n[None]
                c_n = None if c_n is None else c_n[None]
            else:
                state = h0 if spec.op != "LSTM" else (None if h0 is None else (h0, c0))
                y, state_n = layer(x, state, lengths=lengths)
                h_n, c_n = state_n if spec.op == "LSTM" else (state_n, None)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{label}: {exc}") from exc
        D, H = spec.directions, layer.hidden_size
        y = y.reshape(T, B, D, H)
        if spec.layout == 1:
            result = [y.transpose(1, 0, 2, 3), h_n.transpose(1, 0, 2),
                      None if c_n is None else c_n.transpose(1, 0, 2)]
        else:
            result = [y.transpose(0, 2, 1, 3), h_n, c_n]
        for name, value in zip(self.outputs, result):
            if name:
                values[name] = np.ascontiguousarray(value)


@dataclass
class _Linear:
    node: Any
    layer: Linear
    input: str
    output: str
    transpose_input: bool = False
    folded: list = field(default_factory=list)  # the nodes merged in (a MatMul's Add)

    def run(self, values: dict) -> None:
        x = values[self.input]
        if x is MISSING:
            raise ValueError(f"{node_label(self.node)}: its input depends on a graph input "
                             "that was not given")
        x = np.asarray(x)
        if self.transpose_input:
            x = x.T
        try:
            values[self.output] = self.layer(x)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{node_label(self.node)}: {exc}") from exc


# --------------------------------------------------------------------------- the model


class OnnxModel:
    """An imported ONNX graph: fastseq layers and the glue between them, callable.

    Attributes
    ----------
    layers : list of fastseq modules
        One ``fastseq.RNN``/``LSTM``/``GRU`` per recurrent node (one layer, one or two
        directions; ``batch_first=False``) and one ``fastseq.Linear`` per head, in graph
        order, in eval mode. They are ordinary layers: train them, save them, run them
        directly.
    input_names, output_names : list of str
        The graph's runtime inputs (initializers excluded) and its outputs, in order.
    dtype : numpy.dtype
        float32 or float64, the weights' dtype.

    Notes
    -----
    A node with ``direction="reverse"`` is a one-direction layer run with ``reverse=True``
    (each sequence read backwards from its own last valid step, which is what ONNX
    Runtime does with ``sequence_lens``).
    """

    def __init__(self, graph_inputs, outputs, constants, steps, roles, dtype):
        self.input_names = list(graph_inputs)
        self.output_names = list(outputs)
        self.dtype = dtype
        self._constants = constants
        self._steps = steps
        self._roles = roles  # "x", "lengths", "h0", "c0" -> graph input name
        self.layers = [s.layer for s in steps if not isinstance(s, _Glue)]

    def run(self, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        """Run the graph on ``inputs`` (graph input name -> array); outputs by name.

        An input left out counts as absent: an initial state built from it is zeros and
        absent ``sequence_lens`` mean every sequence is full length. Inputs that the
        outputs need otherwise (the sequences) must be given.
        """
        unknown = set(inputs) - set(self.input_names)
        if unknown:
            raise ValueError(f"unknown input(s) {sorted(unknown)}; the graph's inputs are "
                             f"{self.input_names}")
        values = dict(self._constants)
        for name in self.input_names:
            values[name] = MISSING if inputs.get(name) is None else inputs[name]
        for step in self._steps:
            step.run(values)
        out = {}
        for name in self.output_names:
            if values.get(name, MISSING) is MISSING:
                raise ValueError(f"graph output {name!r} depends on a graph input that was "
                                 "not given")
            out[name] = values[name]
        return out

    def __call__(self, x: Any = None, lengths: Any = None, h0: Any = None, c0: Any = None,
                 **inputs: Any) -> Union[np.ndarray, tuple[np.ndarray, ...]]:
        """Run the graph; the graph's outputs, in order (one output: the array itself).

        Parameters
        ----------
        x : array_like
            The sequences: the graph input that reaches the first recurrent node's ``X``
            (shaped as the graph expects, e.g. ``(T, B, I)`` for torch's default export).
        lengths : array_like of int or None
            ``(B,)`` valid steps per sequence, fed to the graph input that reaches
            ``sequence_lens`` (None: full length). Each in 0..T; 0 is fastseq's empty
            sequence (zero outputs, final state = initial state).
        h0, c0 : array_like or None
            The graph inputs that reach ``initial_h`` and ``initial_c`` (None: zeros).
        **inputs
            Any graph input by name.
        """
        feeds = dict(inputs)
        for role, value in (("x", x), ("lengths", lengths), ("h0", h0), ("c0", c0)):
            if value is None:
                continue
            name = self._roles.get(role)
            if name is None:
                raise ValueError(f"this graph has no input in the role of {role!r} "
                                 f"(its inputs: {self.input_names}); pass inputs by name")
            feeds[name] = value
        out = self.run(feeds)
        values = tuple(out[name] for name in self.output_names)
        return values[0] if len(values) == 1 else values

    def __repr__(self) -> str:
        lines = [f"OnnxModel(inputs={self.input_names}, outputs={self.output_names},"]
        lines += [f"  {layer!r}" for layer in self.layers]
        return "\n".join(lines) + "\n)"


# --------------------------------------------------------------------------- load


def _float_weight(node, slot, value) -> np.ndarray:
    if value.dtype not in (np.float32, np.float64):
        raise refuse(node, f"input {slot!r} has dtype {value.dtype}; fastseq runs float32 "
                           "and float64")
    return value


def _recurrent(node, attrs, constants) -> _Recurrent:
    op = node.op_type
    spec = parse_recurrent(node, attrs)
    names = list(node.input) + [""] * (len(INPUTS[op]) - len(node.input))
    if len(names) > len(INPUTS[op]):
        raise refuse(node, f"has {len(node.input)} inputs; {op} takes {len(INPUTS[op])}")
    slots = dict(zip(INPUTS[op], names))
    if op == "LSTM" and slots["P"]:
        raise refuse(node, f"input 'P' ({slots['P']!r}, peephole weights) is not supported")
    weights = {}
    for slot in ("W", "R", "B"):
        name = slots[slot]
        if not name:
            if slot != "B":
                raise refuse(node, f"input {slot!r} is missing")
            continue
        if name not in constants:
            raise refuse(node, f"input {slot!r} ({name!r}) is not a constant: fastseq needs "
                               "the weights when it loads the graph")
        weights[slot] = _float_weight(node, slot, np.asarray(constants[name]))
    W, R, Bias = weights["W"], weights["R"], weights.get("B")
    dtype = W.dtype
    G, D = GATES[op], spec.directions
    if W.ndim != 3 or R.ndim != 3:
        raise refuse(node, f"inputs 'W' and 'R' must be 3-D, got shapes {W.shape} and {R.shape}")
    H = R.shape[2]
    I = W.shape[2]
    if spec.hidden_size and spec.hidden_size != H:
        raise refuse(node, f"attribute 'hidden_size' is {spec.hidden_size} but input 'R' has "
                           f"shape {R.shape} (hidden size {H})")
    expected = {"W": (D, G * H, I), "R": (D, G * H, H), "B": (D, 2 * G * H)}
    for slot, value in weights.items():
        if value.shape != expected[slot]:
            raise refuse(node, f"input {slot!r} must have shape {expected[slot]}, got "
                               f"{value.shape}")
        if value.dtype != dtype:
            raise refuse(node, f"input {slot!r} has dtype {value.dtype} but 'W' has {dtype}")
    options = {}
    if op == "RNN":
        options["nonlinearity"] = spec.nonlinearity
    if op == "GRU":
        options["reset_after"] = spec.reset_after
    layer = _LAYER[op](I, H, bias=Bias is not None, bidirectional=D == 2, dtype=dtype,
                       seed=0, **options)
    for d, suffix in enumerate(("", "_reverse")[:D]):
        params = {"weight_ih": W[d], "weight_hh": R[d]}
        if Bias is not None:
            params.update(bias_ih=Bias[d, :G * H], bias_hh=Bias[d, G * H:])
        for name, value in params.items():
            getattr(layer, f"{name}_l0{suffix}").data[...] = to_fastseq_rows(op, value, H)
    layer.eval()
    outputs = list(node.output) + [""] * (len(OUTPUTS[op]) - len(node.output))
    return _Recurrent(node, spec, layer, slots, outputs)


def _gemm(node, attrs, constants) -> _Linear:
    names = list(node.input) + [""]
    a, b, c = names[0], names[1], names[2] if len(node.input) > 2 else ""
    for key in attrs:
        if key not in ("alpha", "beta", "transA", "transB"):
            raise refuse(node, f"attribute {key!r} is not one fastseq knows for Gemm")
    if b not in constants:
        raise refuse(node, f"input 'B' ({b!r}) is not a constant: fastseq imports a Gemm "
                           "as a Linear layer whose weight is known at load time")
    B = _float_weight(node, "B", np.asarray(constants[b]))
    weight = B if attrs.get("transB", 0) else B.T
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    if alpha != 1.0:
        weight = weight * np.asarray(alpha, weight.dtype)
    O, K = weight.shape
    bias = None
    if c:
        if c not in constants:
            raise refuse(node, f"input 'C' ({c!r}) is not a constant")
        C = np.asarray(constants[c], dtype=weight.dtype)
        if C.size not in (1, O) or (C.ndim == 2 and C.shape[0] != 1):
            raise refuse(node, f"input 'C' has shape {C.shape}; fastseq takes a bias "
                               f"broadcast over rows, shape ({O},) or (1, {O}) or a scalar")
        bias = np.broadcast_to(C.reshape(-1), (O,)) * np.asarray(beta, weight.dtype)
    return _Linear(node, _linear(weight, bias), a, node.output[0],
                   transpose_input=bool(attrs.get("transA", 0)))


def _linear(weight, bias) -> Linear:
    O, K = weight.shape
    layer = Linear(K, O, bias=bias is not None, dtype=weight.dtype, seed=0)
    layer.weight.data[...] = weight
    if bias is not None:
        layer.bias.data[...] = bias
    return layer.eval()


def _matmul(node, constants) -> _Linear:
    a, b = node.input[0], node.input[1]
    if b not in constants:
        raise refuse(node, f"input 'B' ({b!r}) is not a constant: fastseq imports a MatMul "
                           "by a constant matrix (a head) as a Linear layer")
    B = _float_weight(node, "B", np.asarray(constants[b]))
    if B.ndim != 2:
        raise refuse(node, f"input 'B' must be a matrix, got shape {B.shape}")
    return _Linear(node, _linear(B.T, None), a, node.output[0])


def _fold_bias(node, constants, linear_of, consumers) -> bool:
    """Fold ``Add(MatMul output, constant vector)`` into the MatMul's Linear; False when
    this Add is anything else."""
    if len(node.input) != 2:
        return False
    for data, const in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
        step = linear_of.get(data)
        if (step is None or const not in constants or step.layer.bias is not None
                or step.node.op_type != "MatMul" or consumers.get(data, 0) != 1):
            continue
        bias = np.asarray(constants[const])
        O = step.layer.out_features
        if bias.dtype != step.layer.dtype or bias.size != O or bias.shape[-1:] != (O,):
            continue
        layer = _linear(step.layer.weight.data, bias.reshape(O))
        step.layer, step.output = layer, node.output[0]
        step.folded.append(node)
        linear_of.pop(data)
        linear_of[node.output[0]] = step
        return True
    return False


def _ancestors(steps, inputs) -> dict[str, set[str]]:
    """For every value name, the graph inputs it is computed from."""
    deps = {name: {name} for name in inputs}
    for step in steps:
        if isinstance(step, _Glue):
            ins, outs = step.inputs, step.outputs
        elif isinstance(step, _Recurrent):
            ins, outs = list(step.slots.values()), step.outputs
        else:
            ins, outs = [step.input], [step.output]
        found = set().union(*(deps.get(n, set()) for n in ins if n))
        for n in outs:
            if n:
                deps[n] = found
    return deps


def _roles(steps, inputs) -> dict[str, str]:
    """Which graph input is x, lengths, h0, c0 (those that are unambiguous)."""
    deps = _ancestors(steps, inputs)
    recurrent = [s for s in steps if isinstance(s, _Recurrent)]
    found: dict[str, set[str]] = {"x": set(), "lengths": set(), "h0": set(), "c0": set()}
    if recurrent:
        found["x"] = set(deps.get(recurrent[0].slots["X"], ()))
    elif steps:
        first = next((s for s in steps if isinstance(s, _Linear)), None)
        if first is not None:
            found["x"] = set(deps.get(first.input, ()))
    for step in recurrent:
        for role, slot in (("lengths", "sequence_lens"), ("h0", "initial_h"),
                           ("c0", "initial_c")):
            if step.slots.get(slot):
                found[role] |= deps.get(step.slots[slot], set())
    roles = {}
    for role, names in found.items():
        names = names - (found["x"] if role != "x" else set())
        if len(names) == 1:
            roles[role] = next(iter(names))
    return roles


def load(model: Union[str, os.PathLike, Any]) -> OnnxModel:
    """Import an ONNX model of RNN/LSTM/GRU nodes as fastseq layers.

    Parameters
    ----------
    model : str, path or onnx.ModelProto
        The model, or the path of a ``.onnx`` file.

    Returns
    -------
    OnnxModel
        Callable as ``model(x, lengths=None, h0=None, c0=None, **inputs)``, giving the
        graph's outputs; ``model.layers`` holds the fastseq layers.

    Raises
    ------
    UnsupportedOnnxError
        A node, attribute or input fastseq cannot run exactly (the message names it):
        activations other than the defaults (and the RNN's Relu), ``activation_alpha`` or
        ``activation_beta``, ``clip``, ``input_forget=1``, the LSTM's peepholes ``P``,
        weights that are not constants, or an op that is neither recurrent, nor a head
        (``Gemm``, ``MatMul`` + ``Add``), nor shape glue.
    """
    import onnx
    from onnx import numpy_helper

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(os.fspath(model))
    graph = model.graph
    constants: dict[str, Any] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in constants]
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    for out in graph.output:
        consumers[out.name] = consumers.get(out.name, 0) + 1

    # A graph with no recurrent node at all is most likely an unrolled recurrence: say so
    # in the refusal of its first op fastseq does not import.
    unrolled = "" if any(n.op_type in FAMILY for n in graph.node) else (
        "; the graph has no RNN, LSTM or GRU node, so it is probably a recurrence unrolled "
        "into per-step ops (torch.onnx.export(..., dynamo=True) unrolls nn.RNN so): export "
        "with dynamo=False, which emits an RNN node")
    steps: list[Any] = []
    linear_of: dict[str, _Linear] = {}  # output name -> the Linear (MatMul) producing it
    for node in graph.node:
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            raise refuse(node, f"op domain {node.domain!r} is not supported")
        attrs = _attributes(node)
        if op == "Constant":
            constants[node.output[0]] = _constant_value(node, attrs)
        elif op in FAMILY:
            steps.append(_recurrent(node, attrs, constants))
        elif op == "Gemm":
            steps.append(_gemm(node, attrs, constants))
            linear_of[node.output[0]] = steps[-1]
        elif op == "MatMul":
            steps.append(_matmul(node, constants))
            linear_of[node.output[0]] = steps[-1]
        elif op == "Add" and _fold_bias(node, constants, linear_of, consumers):
            pass
        elif op in GLUE:
            glue = _Glue(node, attrs, list(node.input), list(node.output))
            if all(not n or n in constants for n in node.input):
                glue.run(constants)  # folded now: it depends on constants only
            else:
                steps.append(glue)
        elif op == "Add":
            raise refuse(node, "op Add is supported only as the bias of a MatMul by a "
                               "constant matrix (a Linear head)" + unrolled)
        else:
            raise refuse(node, f"op {op} is not supported: fastseq.onnx imports RNN, LSTM and "
                               "GRU nodes, Gemm or MatMul+Add heads and the shape glue between "
                               f"them ({', '.join(sorted(GLUE))})" + unrolled)
    dtypes = {s.layer.dtype for s in steps if not isinstance(s, _Glue)}
    if len(dtypes) > 1:
        raise UnsupportedOnnxError(f"the graph mixes weight dtypes {sorted(map(str, dtypes))}")
    if not dtypes:
        raise UnsupportedOnnxError("the graph has no RNN, LSTM, GRU, Gemm or MatMul node")
    return OnnxModel(inputs, [o.name for o in graph.output], constants, steps,
                     _roles(steps, inputs), dtypes.pop())
