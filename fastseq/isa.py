"""Which compiled kernel variant (instruction set) runs: ``available_isas``, ``get_isa``,
``set_isa``.

libfastseq carries the kernels compiled for AVX-512, AVX2+FMA and portable (SSE2 on x86-64)
in one binary and picks the best the CPU supports when it loads, unless the environment
variable ``FASTSEQ_ISA`` names another available one.
"""
from __future__ import annotations

__all__ = ["available_isas", "get_isa", "set_isa"]


def _core():
    from . import _core

    return _core


def available_isas() -> list[str]:
    """Kernel variants this CPU can run, best first (e.g. ``["avx512", "avx2", "portable"]``)."""
    return list(_core().available_isas())


def get_isa() -> str:
    """The kernel variant in use."""
    return _core().selected_isa()


def set_isa(name: str) -> None:
    """Run the cpp backend's kernels with variant ``name`` from now on.

    Raises ``ValueError`` if the name is unknown or this CPU cannot run it.
    """
    if not isinstance(name, str):
        raise ValueError(f"name must be a str; got {name!r}")
    _core().set_isa(name)
