"""The one list of cells per language: fastseq.cells (Python) and csrc/cells/registry.hpp
(C++) name the same cells with the same facts, and everything that lists cells reads them."""
from __future__ import annotations

import pytest

import fastseq
from fastseq import cells


def _built_without(name: str) -> bool:
    """Whether the compiled library here predates cell ``name`` of fastseq.cells (the
    lstmp kernels land in parallel with its Python side; the merge removes the gap)."""
    try:
        from fastseq import _core
    except ImportError:
        return False
    return name not in {c["name"] for c in _core.cell_registry()}


# strict: once the library has lstmp, these must pass, or the xfail itself fails.
PENDING_LSTMP = pytest.mark.xfail(
    _built_without("lstmp"), strict=True, raises=(AssertionError, AttributeError),
    reason="the compiled library here has no lstmp yet (csrc/cells/registry.hpp, "
           "FASTSEQ_CELL_LSTMP): the C++ side lands in parallel")


@PENDING_LSTMP
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
    assert cells.CELLS["lstmp"].parameters == ("w_ih", "w_hh", "w_hr", "b_ih", "b_hh")
    assert cells.cell_of("gru").name == "gru"
    assert cells.cell_of("gru", reset_after=False).name == "gru_reset_before"
    for family, members in cells.FAMILIES.items():
        assert len({c.gates for c in members}) == 1, family
        assert cells.family_gates(family) == members[0].gates


def test_layers_read_the_list():
    assert fastseq.LSTM(3, 4).weight_hh_l0.data.shape == (cells.family_gates("lstm") * 4, 4)
    assert fastseq.GRU(3, 4).weight_ih_l0.data.shape == (cells.family_gates("gru") * 4, 3)
    # the parameters are the descriptor's, named as torch names them
    for layer in (fastseq.LSTM(3, 4), fastseq.LSTM(3, 4, proj_size=2),
                  fastseq.GRU(3, 4, bias=False), fastseq.RNN(3, 4, nonlinearity="relu")):
        kinds = {name.split("_l0")[0] for name, _ in layer.named_parameters()}
        expected = {fastseq.recurrent.TORCH_NAMES[p] for p in layer.cell.parameters
                    if layer.bias or not p.startswith("b_")}
        assert kinds == expected, layer
    assert fastseq.RNN(3, 4, nonlinearity="relu").cell.name == "rnn_relu"
    assert fastseq.GRU(3, 4, reset_after=False).cell.name == "gru_reset_before"
    assert fastseq.LSTM(3, 4, proj_size=2).cell.name == "lstmp"


@PENDING_LSTMP
def test_capi_reads_the_list():
    capi = pytest.importorskip("fastseq.capi")
    assert list(capi.CELLS) == list(cells.CELLS)
