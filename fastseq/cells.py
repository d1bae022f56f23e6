"""The Python list of cells: one descriptor per cell, the facts every layer of the package
asks of a cell (its functional family and the option that selects it, gates, states,
parameters). ``functional``, the layers, ``capi``, the benchmark, the experiments and the
tests read it; it mirrors the C++ list (csrc/cells/registry.hpp), and a test holds the two
equal. A new cell is one entry here and one there, plus its code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["Cell", "CELLS", "FAMILIES", "family_gates", "cell_of"]


@dataclass(frozen=True)
class Cell:
    """One cell.

    Attributes
    ----------
    name : str
        As the kernels, the C ABI and ``Reserve.cell`` spell it (``"gru_reset_before"``).
    family : str
        The ``fastseq.functional`` family whose arguments it takes: rnn, lstm or gru.
    option : tuple
        ``(keyword, value)`` of the family's call that selects it, or ``()``.
    gates : int
        G: blocks of H rows in ``w_ih``, ``w_hh``, ``b_ih`` and ``b_hh``.
    states : tuple of str
        The recurrent states: ``("h",)`` or ``("h", "c")``.
    parameters : tuple of str
        The parameter arrays in call order (the layers create theirs from it); the
        biases are optional. ``w_hr`` is the projection's ``(P, H)`` weight.
    """

    name: str
    family: str
    option: tuple = ()
    gates: int = 1
    states: tuple = ("h",)
    parameters: tuple = field(default=("w_ih", "w_hh", "b_ih", "b_hh"))


CELLS = MappingProxyType({c.name: c for c in (
    Cell("rnn_tanh", "rnn", ("nonlinearity", "tanh"), gates=1),
    Cell("rnn_relu", "rnn", ("nonlinearity", "relu"), gates=1),
    Cell("lstm", "lstm", ("projection", False), gates=4, states=("h", "c")),
    Cell("gru", "gru", ("reset_after", True), gates=3),
    Cell("gru_reset_before", "gru", ("reset_after", False), gates=3),
    Cell("lstmp", "lstm", ("projection", True), gates=4, states=("h", "c"),
         parameters=("w_ih", "w_hh", "w_hr", "b_ih", "b_hh")),
)})

#: family -> the cells it selects among, in CELLS order.
FAMILIES = MappingProxyType({
    fam: tuple(c for c in CELLS.values() if c.family == fam)
    for fam in dict.fromkeys(c.family for c in CELLS.values())
})


def family_gates(family: str) -> int:
    """G of a functional family (every cell of a family has the same gates)."""
    return FAMILIES[family][0].gates


def cell_of(family: str, **options) -> Cell:
    """The cell a family's call selects, e.g. ``cell_of("gru", reset_after=False)``."""
    for cell in FAMILIES[family]:
        if not cell.option or options.get(cell.option[0], _DEFAULT[family]) == cell.option[1]:
            return cell
    raise ValueError(f"no {family} cell for {options}")


# The value a family's option takes when the call leaves it out.
_DEFAULT = {"rnn": "tanh", "lstm": False, "gru": True}
