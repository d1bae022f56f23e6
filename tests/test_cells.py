"""The one list of cells per language: fastseq.cells (Python) and csrc/cells/registry.hpp
(C++) name the same cells with the same facts, and everything that lists cells reads them."""
from __future__ import annotations

import pytest

import fastseq
from fastseq import cells


def test_python_and_cpp_lists_agree():
    core = pytest.importorskip("fastseq._core")
    cpp = {c["name"]: c for c in core.cell_registry()}
    assert list(cpp) == list(cells.CELLS)
    for name, cell in cells.CELLS.items():
        assert cpp[name]["family"] == cell.family, name
        assert cpp[name]["gates"] == cell.gates, name
        assert cpp[name]["states"] == len(cell.states), name
        assert cpp[name]["parameters"] == cell.parameters, name
        assert cpp[name]["projected"] == ("w_hr" in cell.parameters), name


def test_families_select_their_cells():
    assert cells.cell_of("rnn").name == "rnn_tanh"
    assert cells.cell_of("rnn", nonlinearity="relu").name == "rnn_relu"
    assert cells.cell_of("lstm").name == "lstm"
    assert cells.cell_of("lstm", projection=False).name == "lstm"
    assert cells.cell_of("lstm", projection=True).name == "lstmp"
    assert cells.cell_of("gru").name == "gru"
    assert cells.cell_of("gru", reset_after=False).name == "gru_reset_before"
    for family, members in cells.FAMILIES.items():
        assert len({c.gates for c in members}) == 1, family
        assert cells.family_gates(family) == members[0].gates


def test_layers_and_capi_read_the_list():
    assert fastseq.LSTM(3, 4).weight_hh_l0.data.shape == (cells.family_gates("lstm") * 4, 4)
    assert fastseq.GRU(3, 4).weight_ih_l0.data.shape == (cells.family_gates("gru") * 4, 3)
    capi = pytest.importorskip("fastseq.capi")
    assert list(capi.CELLS) == list(cells.CELLS)
