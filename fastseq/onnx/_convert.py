"""What an ONNX RNN/LSTM/GRU node means in fastseq terms, and back: gate orders, weight
layouts, and the attributes fastseq runs exactly (everything else is refused).

ONNX stacks the gates of ``W`` ``[D, G*H, I]``, ``R`` ``[D, G*H, H]`` and ``B``
``[D, 2*G*H]`` (input biases, then recurrent ones) in its own order: LSTM i, o, f, c and
GRU z, r, h; fastseq keeps torch's, LSTM i, f, g, o and GRU r, z, n. The RNN has one gate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: ONNX op type -> fastseq family.
FAMILY = {"RNN": "rnn", "LSTM": "lstm", "GRU": "gru"}
GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}

# fastseq gate k is ONNX gate _TO_FASTSEQ[op][k]: LSTM (i, f, g, o) from ONNX (i, o, f, c);
# GRU (r, z, n) from ONNX (z, r, h).
_TO_FASTSEQ = {"RNN": (0,), "LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2)}
# ONNX gate k is fastseq gate _TO_ONNX[op][k] (the inverse permutations).
_TO_ONNX = {op: tuple(int(i) for i in np.argsort(perm)) for op, perm in _TO_FASTSEQ.items()}

# The activations each op uses by default, per direction (ONNX's spelling).
DEFAULT_ACTIVATIONS = {"RNN": ("Tanh",), "LSTM": ("Sigmoid", "Tanh", "Tanh"),
                       "GRU": ("Sigmoid", "Tanh")}

# Attributes fastseq reads; any other one on the node is refused by name.
_KNOWN = {
    "RNN": {"hidden_size", "direction", "layout", "activations", "activation_alpha",
            "activation_beta", "clip"},
    "LSTM": {"hidden_size", "direction", "layout", "activations", "activation_alpha",
             "activation_beta", "clip", "input_forget"},
    "GRU": {"hidden_size", "direction", "layout", "activations", "activation_alpha",
            "activation_beta", "clip", "linear_before_reset"},
}

# Input slots of each op, in ONNX's order.
INPUTS = {"RNN": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
          "GRU": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
          "LSTM": ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")}
OUTPUTS = {"RNN": ("Y", "Y_h"), "GRU": ("Y", "Y_h"), "LSTM": ("Y", "Y_h", "Y_c")}


class UnsupportedOnnxError(ValueError):
    """An ONNX graph holds something fastseq cannot run exactly; the message names the
    node, and the attribute, input or op."""


def node_label(node) -> str:
    """How errors name a node: its name (or its first output) and its op."""
    name = node.name or (node.output[0] if len(node.output) else "?")
    return f"node {name!r} ({node.op_type})"


def refuse(node, what: str) -> UnsupportedOnnxError:
    return UnsupportedOnnxError(f"{node_label(node)}: {what}")


@dataclass
class RecurrentSpec:
    """A recurrent node's meaning: everything needed to build and run the fastseq layer."""

    op: str                # "RNN", "LSTM" or "GRU"
    hidden_size: int
    directions: int        # 1 or 2
    reverse_only: bool     # direction="reverse": one direction, read backwards
    layout: int            # 0: X (T, B, I), states (D, B, H); 1: X (B, T, I), states (B, D, H)
    nonlinearity: str      # the RNN's "tanh" or "relu"
    reset_after: bool      # GRU: linear_before_reset=1


def parse_recurrent(node, attrs: dict[str, Any]) -> RecurrentSpec:
    """Check a recurrent node's attributes against what fastseq runs exactly."""
    op = node.op_type
    for name in attrs:
        if name not in _KNOWN[op]:
            raise refuse(node, f"attribute {name!r} is not one fastseq knows for {op}")
    direction = attrs.get("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise refuse(node, f"attribute 'direction' is {direction!r}; expected forward, "
                           "reverse or bidirectional")
    D = 2 if direction == "bidirectional" else 1
    layout = int(attrs.get("layout", 0))
    if layout not in (0, 1):
        raise refuse(node, f"attribute 'layout' is {layout}; expected 0 or 1")
    if "clip" in attrs:
        raise refuse(node, f"attribute 'clip' ({attrs['clip']}) is not supported: fastseq's "
                           "cells do not clip their pre-activations")
    for name in ("activation_alpha", "activation_beta"):
        if len(attrs.get(name, ())) > 0:
            raise refuse(node, f"attribute {name!r} ({list(attrs[name])}) is not supported: "
                               "fastseq runs only the default activations (and the RNN's Relu)")
    if op == "LSTM" and int(attrs.get("input_forget", 0)) != 0:
        raise refuse(node, "attribute 'input_forget'=1 (coupled input and forget gates) is "
                           "not supported")
    nonlinearity = "tanh"
    activations = tuple(attrs.get("activations", ()))
    if activations:
        default = DEFAULT_ACTIVATIONS[op]
        if len(activations) != len(default) * D:
            raise refuse(node, f"attribute 'activations' has {len(activations)} entries; "
                               f"{op} with direction={direction} takes {len(default) * D}")
        lowered = tuple(a.lower() for a in activations)
        if op == "RNN" and set(lowered) == {"relu"}:
            nonlinearity = "relu"
        elif lowered != tuple(a.lower() for a in default) * D:
            raise refuse(node, f"attribute 'activations' is {list(activations)}; fastseq runs "
                               f"{list(default * D)}" + (" or all 'Relu'" if op == "RNN" else ""))
    reset_after = True
    if op == "GRU":
        lbr = int(attrs.get("linear_before_reset", 0))
        if lbr not in (0, 1):
            raise refuse(node, f"attribute 'linear_before_reset' is {lbr}; expected 0 or 1")
        reset_after = lbr == 1
    hidden = attrs.get("hidden_size")
    return RecurrentSpec(op, int(hidden) if hidden is not None else 0, D,
                         direction == "reverse", layout, nonlinearity, reset_after)


def to_fastseq_rows(op: str, a: np.ndarray, H: int) -> np.ndarray:
    """Gate blocks of rows (first axis, G*H) from ONNX's order into fastseq's."""
    return np.concatenate([a[g * H:(g + 1) * H] for g in _TO_FASTSEQ[op]], axis=0)


def to_onnx_rows(op: str, a: np.ndarray, H: int) -> np.ndarray:
    """Gate blocks of rows (first axis, G*H) from fastseq's order into ONNX's."""
    return np.concatenate([a[g * H:(g + 1) * H] for g in _TO_ONNX[op]], axis=0)
