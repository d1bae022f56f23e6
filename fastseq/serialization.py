"""save and load: a module's state dict as a NumPy ``.npz`` archive (no pickle involved).

The archive's keys are the torch-style parameter names, so it can also be read with
``numpy.load`` alone and turned into a torch state dict. Whole modules pickle as well.
"""
from __future__ import annotations

import os
from typing import Union

import numpy as np

from .parameter import Module

__all__ = ["save", "load"]

PathLike = Union[str, "os.PathLike[str]"]


def save(path: PathLike, module: Module) -> None:
    """Write ``module.state_dict()`` to ``path`` as an uncompressed ``.npz`` archive.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; NumPy appends ``.npz`` if the name has no such suffix.
    module : Module
    """
    if not isinstance(module, Module):
        raise TypeError(f"save(path, module) needs a fastseq Module, got {type(module).__name__}")
    state = module.state_dict()
    with open(_with_suffix(path), "wb") as file:
        np.savez(file, **state)


def load(path: PathLike, module: Module, strict: bool = True) -> Module:
    """Load a state dict written by :func:`save` into ``module``, in place.

    Parameters
    ----------
    path : str or os.PathLike
        An ``.npz`` archive (``.npz`` is appended if ``path`` does not exist without it).
    module : Module
        Receives the values; see :meth:`Module.load_state_dict` for the checks.
    strict : bool, default True

    Returns
    -------
    Module
        ``module`` itself.

    Raises
    ------
    ValueError
        ``path`` is not an ``.npz`` archive (e.g. a single-array ``.npy`` file, a pickle or
        text); the message says what was found.
    """
    if not isinstance(module, Module):
        raise TypeError(f"load(path, module) needs a fastseq Module, got {type(module).__name__}")
    if not os.path.exists(path):
        path = _with_suffix(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:  # a pickle, text, or anything NumPy does not recognise
        raise ValueError(
            f"load needs an .npz archive written by fastseq.save (or numpy.savez) mapping "
            f"parameter names to arrays; {os.fspath(path)!r} is not one ({exc})"
        ) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        found = (f"a single array of shape {loaded.shape} and dtype {loaded.dtype} (a .npy file)"
                 if isinstance(loaded, np.ndarray) else type(loaded).__name__)
        raise ValueError(
            f"load needs an .npz archive written by fastseq.save (or numpy.savez) mapping "
            f"parameter names to arrays; {os.fspath(path)!r} holds {found}"
        )
    with loaded as archive:
        state = {name: archive[name] for name in archive.files}
    module.load_state_dict(state, strict=strict)
    return module


def _with_suffix(path: PathLike) -> str:
    text = os.fspath(path)
    return text if text.endswith(".npz") else text + ".npz"
