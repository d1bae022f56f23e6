"""Which compiled kernel variant (instruction set) runs: ``available_isas``, ``get_isa``,
``set_isa``.

libfastseq carries the kernels compiled for AVX-512, AVX2+FMA and portable (SSE2 on x86-64)
in one binary and picks the best the CPU supports when it loads, unless the environment
variable ``FASTSEQ_ISA`` names another available one (a name that is not available is
ignored, with a ``RuntimeWarning`` when the extension loads). Without the compiled extension
``fastseq._core`` (the Numba or reference backend serves) there are no variants:
``available_isas()`` is empty, ``get_isa()`` is None and ``set_isa`` raises RuntimeError.
"""
from __future__ import annotations

import os
import threading
import warnings

__all__ = ["available_isas", "get_isa", "set_isa"]

_env_checked = False
_env_lock = threading.Lock()


def _core_or_none():
    """The extension module, or None when it cannot be imported."""
    try:
        from . import _core
    except ImportError:
        return None
    check_environment(_core)
    return _core


def _missing_extension(what: str) -> RuntimeError:
    try:
        from . import _core  # noqa: F401
    except ImportError as exc:
        why = f"{type(exc).__name__}: {exc}"
    else:  # pragma: no cover (only called when the import failed)
        why = "unknown reason"
    return RuntimeError(
        f"{what} needs fastseq's compiled extension fastseq._core, which is not loaded ({why}); "
        "the kernel variants exist only in the cpp backend"
    )


def check_environment(core) -> None:
    """Warn once if ``FASTSEQ_ISA`` names a variant this CPU (or build) does not have.

    libfastseq then ignores it and runs the best available variant; the warning says so.
    """
    global _env_checked
    if _env_checked:
        return
    with _env_lock:
        if _env_checked:
            return
        _env_checked = True
        requested = os.environ.get("FASTSEQ_ISA")
        if not requested:
            return
        available = list(core.available_isas())
        if requested not in available:
            warnings.warn(
                f"FASTSEQ_ISA={requested!r} is not an available kernel variant on this machine "
                f"(available: {', '.join(available)}); it is ignored and "
                f"{core.selected_isa()!r} runs instead",
                RuntimeWarning,
                stacklevel=3,
            )


def available_isas() -> list[str]:
    """Kernel variants this CPU can run, best first (e.g. ``["avx512", "avx2", "portable"]``).

    Empty when the compiled extension ``fastseq._core`` is not loaded (no cpp backend).
    """
    core = _core_or_none()
    return [] if core is None else list(core.available_isas())


def get_isa() -> str | None:
    """The kernel variant in use, or None when the compiled extension ``fastseq._core`` is
    not loaded (no cpp backend, so no variant runs)."""
    core = _core_or_none()
    return None if core is None else core.selected_isa()


def set_isa(name: str) -> None:
    """Run the cpp backend's kernels with variant ``name`` from now on.

    Raises
    ------
    ValueError
        The name is unknown or this CPU cannot run it (the message lists the available ones).
    RuntimeError
        The compiled extension ``fastseq._core`` is not loaded, so there is no variant to
        choose.
    """
    if not isinstance(name, str):
        raise ValueError(f"name must be a str; got {name!r}")
    core = _core_or_none()
    if core is None:
        raise _missing_extension(f"set_isa({name!r})")
    core.set_isa(name)
