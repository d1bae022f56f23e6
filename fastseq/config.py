"""``fastseq.show_config()``: what this installation runs on — versions, CPU, instruction
sets, cache sizes and the tuning choices they imply, threads, BLAS and backends — as text or
as a dict (the benchmark records it)."""
from __future__ import annotations

import os
import platform
import sys

import numpy as np

__all__ = ["show_config"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> dict:
    from importlib import metadata

    out = {"python": sys.version.split()[0], "numpy": np.__version__}
    for dist in ("numba", "scipy-openblas32", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _distributed() -> dict:
    """fastseq.distributed's rank and threads, if it was imported and set up (never
    imports it: that would start MPI)."""
    module = sys.modules.get(__package__ + ".distributed")
    return module.info() if module is not None else {}


def _size_text(n: int) -> str:
    """Bytes as the largest whole binary unit: 49152 -> "48 KiB"."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def config_dict() -> dict:
    from . import __version__, backends, threads

    try:
        from . import _core
    except ImportError as exc:
        core = {"loaded": False, "error": str(exc)}
    else:
        features = _core.cpu_features()
        core = {"loaded": True, "cpu_features": [k for k, v in features.items() if v]}
        if hasattr(_core, "selected_isa"):
            core["isa"] = _core.selected_isa()
            core["isas_available"] = list(_core.available_isas())
        if hasattr(_core, "using_openmp"):
            core["teams_on_openmp"] = bool(_core.using_openmp())
        if hasattr(_core, "cache_sizes"):
            from .caches import get_cache_sizes, tuning_choices

            core["caches"] = get_cache_sizes()
            core["machine_cpus"] = _core.machine_cpus()
            # The choices for one typical case: the forward of an LSTM, float32, (T, B, I, H)
            # = (50, 64, 512, 512), the grid's largest batch (csrc/loops/tuning.hpp).
            core["tuning"] = {"case": "lstm float32 T=50 B=64 I=512 H=512",
                              **tuning_choices("lstm", "float32", 50, 64, 512, 512)}
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "fastseq": __version__,
        "machine": {"cpu": _cpu_model(), "arch": platform.machine(), "cpus_available": cpus,
                    "system": platform.platform()},
        "extension": core,
        "threads": threads.get_num_threads(),
        "distributed": _distributed(),
        "backends": backends.available_backends(),
        "backend": backends.get_backend(),
        "blas": "OpenBLAS from scipy-openblas32 (symbols scipy_cblas_*)",
        "versions": _versions(),
        "environment": {k: os.environ[k] for k in
                        ("FASTSEQ_BACKEND", "FASTSEQ_NUM_THREADS", "FASTSEQ_ISA",
                         "FASTSEQ_L1D_SIZE", "FASTSEQ_L2_SIZE", "FASTSEQ_L3_SIZE",
                         "FASTSEQ_MACHINE_CPUS",
                         "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS")
                        if k in os.environ},
    }


def config_text(info: dict | None = None) -> str:
    """The configuration as the lines :func:`show_config` prints."""
    info = config_dict() if info is None else info
    lines = [f"fastseq {info['fastseq']}"]
    m = info["machine"]
    lines.append(f"  machine:   {m['cpu']} ({m['arch']}), {m['cpus_available']} CPUs available")
    core = info["extension"]
    if core["loaded"]:
        lines.append(f"  extension: fastseq._core loaded; CPU features: {' '.join(core['cpu_features'])}")
        if "isa" in core:
            lines.append(f"  ISA:       kernels {core['isa']} (available: {', '.join(core['isas_available'])};"
                         " FASTSEQ_ISA or fastseq.set_isa to change)")
        if "caches" in core:
            c = core["caches"]
            lines.append("  caches:    " + ", ".join(
                f"{name} {_size_text(c[key])} ({c['source'][key]})"
                for name, key in (("L1d", "l1d"), ("L2", "l2"), ("L3", "l3")))
                + " (FASTSEQ_L1D_SIZE/L2/L3 or fastseq.set_cache_sizes to change)")
            t = core["tuning"]
            lines.append(f"  tuning:    {t['case']} on {t['isa']}: k-slice {t['k_slice']} rows, "
                         f"chunks of {t['k_block_rows']} rows, input projection "
                         + ("in the steps" if t["fuse_projection"] else
                            "apart, on the micro-kernel" if t["few_rows_projection"] else
                            f"apart, in {t['projection_parts']} OpenBLAS calls"))
            cpus = core["machine_cpus"]
            lines.append(f"  products:  large ones cut into at most {cpus['most_parts']} "
                         f"parts, from {cpus['count']} CPUs online ({cpus['source']}; "
                         "FASTSEQ_MACHINE_CPUS to change)")
    else:
        lines.append(f"  extension: not loaded ({core['error']})")
    where = ("the host's OpenMP threads: fastseq.torch.use_torch_threads"
             if core.get("teams_on_openmp") else "fastseq's own pool")
    lines.append(f"  threads:   {info['threads']} ({where}; OpenBLAS kept at 1 thread)")
    dist = info.get("distributed")
    if dist:
        lines.append(f"  MPI:       rank {dist['rank']} of {dist['size']} ({dist['local_size']} on this "
                     f"node), {dist['threads']} threads each (default {dist['default_threads']}: "
                     f"{dist['cpus']} CPUs / ranks sharing them)")
    lines.append(f"  backends:  {', '.join(info['backends'])} (active: {info['backend']})")
    lines.append(f"  BLAS:      {info['blas']}")
    lines.append("  versions:  " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v))
    if info["environment"]:
        lines.append("  env:       " + " ".join(f"{k}={v}" for k, v in info["environment"].items()))
    return "\n".join(lines)


def show_config(mode: str = "stdout"):
    """Show this installation's configuration, as ``numpy.show_config`` does.

    Parameters
    ----------
    mode : {"stdout", "dicts"}
        "stdout" prints it; "dicts" returns it as a dict instead (versions, CPU and
        instruction sets, threads, backends, BLAS, relevant environment variables).
    """
    if mode == "dicts":
        return config_dict()
    if mode != "stdout":
        raise ValueError(f"mode must be 'stdout' or 'dicts'; got {mode!r}")
    print(config_text())
    return None
