"""The cache sizes the compiled kernels tune for: ``get_cache_sizes``, ``set_cache_sizes``,
``reset_cache_sizes``.

libfastseq reads the L1d, L2 (per core) and L3 sizes from the CPU once (cpuid; else Linux's
``/sys/devices/system/cpu/cpu0/cache``; else 32 KiB / 1 MiB / 8 MiB) and chooses from them,
per call, the forward's k-slice depth, the rows per chunk of its k-blocked product and
whether the LSTM folds its input projection into the steps (``csrc/loops/tuning.hpp``;
README "Configuration and tuning"). The environment variables ``FASTSEQ_L1D_SIZE``,
``FASTSEQ_L2_SIZE`` and ``FASTSEQ_L3_SIZE`` (bytes, with an optional K, M or G suffix:
``512K``, ``2M``) override the detected sizes from the first kernel call on; a value that is
not a size, or is outside the level's range, is ignored, with a ``RuntimeWarning`` when the
extension loads. ``set_cache_sizes`` overrides them at run time, so the choices for another
machine can be exercised on this one.

The choices depend on the sizes and the shape, never on the thread count: under any sizes,
the results have the same bits on any number of threads (README "Determinism"). Other sizes
give other choices, which may round differently. Without the compiled extension
``fastseq._core`` there is nothing to tune: ``get_cache_sizes()`` is None and
``set_cache_sizes`` raises RuntimeError.
"""
from __future__ import annotations

import numbers
import threading
import warnings

__all__ = ["get_cache_sizes", "set_cache_sizes", "reset_cache_sizes"]

#: The levels, as the keyword arguments and the keys of ``get_cache_sizes()`` name them.
LEVELS = ("l1d", "l2", "l3")
#: The environment variable of each level.
ENV = {"l1d": "FASTSEQ_L1D_SIZE", "l2": "FASTSEQ_L2_SIZE", "l3": "FASTSEQ_L3_SIZE"}

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


def check_environment(core) -> None:
    """Warn once for each ``FASTSEQ_L*_SIZE`` that libfastseq ignored (not a size, or out of
    range), and for an ignored ``FASTSEQ_MACHINE_CPUS``; what was detected serves instead."""
    global _env_checked
    if _env_checked:
        return
    with _env_lock:
        if _env_checked:
            return
        _env_checked = True
        for why in core.cache_env_rejected():
            warnings.warn(f"{why}; it is ignored and the detected size is used",
                          RuntimeWarning, stacklevel=3)
        why = core.machine_cpus()["rejected"]
        if why:
            warnings.warn(f"{why}; it is ignored and the CPUs online are used",
                          RuntimeWarning, stacklevel=3)


def get_cache_sizes() -> dict | None:
    """The cache sizes the kernels tune for now, and where each came from.

    Returns
    -------
    dict or None
        ``{"l1d": bytes, "l2": bytes, "l3": bytes, "source": {level: source},
        "detected": {level: bytes}, "detected_source": {level: source}}`` where a source is
        ``"cpuid"``, ``"sysfs"``, ``"default"`` (neither answered) or ``"override"`` (an
        environment variable or :func:`set_cache_sizes`). None when the compiled extension
        ``fastseq._core`` is not loaded.
    """
    core = _core_or_none()
    return None if core is None else core.cache_sizes()


def _bytes(name: str, value, core) -> int:
    """``value`` (an int of bytes, or a str such as ``"512K"``) as bytes within the level's
    range, or a ValueError naming the argument."""
    if isinstance(value, str):
        parsed = core.parse_cache_size(value)
        if parsed is None:
            raise ValueError(f"{name} must be a size in bytes (an int, or a str of digits with "
                             f"an optional K, M or G suffix such as '512K'); got {value!r}")
        value = parsed
    elif isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int of bytes or a str such as '512K'; "
                         f"got {value!r}")
    lo, hi = core.cache_size_range(name)
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi} bytes; got {value}")
    return int(value)


def set_cache_sizes(l1d=None, l2=None, l3=None) -> None:
    """Tune the kernels for these cache sizes from the next call on.

    Parameters
    ----------
    l1d, l2, l3 : int or str, optional
        Bytes (``49152``) or a size with a K, M or G suffix (``"48K"``, ``"2M"``): the L1 data
        cache, one core's L2, the L3. None leaves a level as it is. All are checked before
        any is applied. A kernel running on another thread meanwhile finishes with the
        sizes it started with.

    Raises
    ------
    ValueError
        A value is not a size or is outside its level's range (the message names it).
    RuntimeError
        The compiled extension ``fastseq._core`` is not loaded.
    """
    core = _core_or_none()
    if core is None:
        raise _missing_extension("set_cache_sizes")
    given = {name: _bytes(name, value, core)
             for name, value in (("l1d", l1d), ("l2", l2), ("l3", l3)) if value is not None}
    core.set_cache_sizes(**given)


def reset_cache_sizes() -> None:
    """Back to the sizes the process started with: the environment's overrides, else the
    detected sizes.

    Raises
    ------
    RuntimeError
        The compiled extension ``fastseq._core`` is not loaded.
    """
    core = _core_or_none()
    if core is None:
        raise _missing_extension("reset_cache_sizes")
    core.reset_cache_sizes()


def tuning_choices(cell: str = "lstm", dtype: str = "float32", T: int = 50, B: int = 64,
                   I: int = 512, H: int = 512, proj_size: int = 0) -> dict | None:
    """The choices a forward call of this shape makes now (selected kernel variant, sizes in
    force): ``{"isa", "k_slice", "k_block_rows", "fuse_projection", "few_rows_projection",
    "projection_parts"}`` (``few_rows_projection``: an input projection of at most 32 rows on
    the micro-kernel; ``projection_parts``: the OpenBLAS calls the input projection is cut
    into, fixed by the shape and the machine's CPU count, 0 where it runs on the
    micro-kernel); None without the compiled extension. ``show_config()`` shows them for the
    default shape."""
    core = _core_or_none()
    if core is None:
        return None
    sizes = {"float32": 4, "float64": 8}
    if dtype not in sizes:
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
    return core.tuning_choices(cell, sizes[dtype], T, B, I, H, proj_size)


def _missing_extension(what: str) -> RuntimeError:
    try:
        from . import _core  # noqa: F401
    except ImportError as exc:
        why = f"{type(exc).__name__}: {exc}"
    else:  # pragma: no cover (only called when the import failed)
        why = "unknown reason"
    return RuntimeError(
        f"{what}() needs fastseq's compiled extension fastseq._core, which is not loaded "
        f"({why}); only its kernels tune for the cache sizes"
    )
