"""Random number generators and parameter initializers.

Every layer takes ``seed`` (None, an int or a ``numpy.random.Generator``) and turns it into
one Generator with :func:`make_generator`; initialization and dropout draw from it, so a
seed fixes a whole run. The distributions follow torch.nn's defaults, not its streams.
"""
from __future__ import annotations

from typing import Union

import numpy as np

__all__ = ["SeedLike", "make_generator", "uniform_", "normal_"]

#: What the ``seed`` argument of layers accepts.
SeedLike = Union[None, int, np.integer, np.random.SeedSequence, np.random.Generator]


def make_generator(seed: SeedLike = None) -> np.random.Generator:
    """A ``numpy.random.Generator`` from ``seed``.

    Parameters
    ----------
    seed : None, int, numpy.random.SeedSequence or numpy.random.Generator
        None draws fresh entropy from the OS; an int or SeedSequence seeds a new PCG64
        generator; a Generator is used as is (shared, not copied).

    Raises
    ------
    TypeError
        For any other type (floats and bools included).
    ValueError
        For a negative int.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)):
        if seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed}")
        return np.random.default_rng(int(seed))
    raise TypeError(
        f"seed must be None, an int or a numpy.random.Generator, got {type(seed).__name__}"
    )


def uniform_(
    array: np.ndarray, low: float, high: float, generator: np.random.Generator
) -> np.ndarray:
    """Fill ``array`` in place with draws from U(low, high); return it."""
    array[...] = generator.uniform(low, high, size=array.shape)
    return array


def normal_(
    array: np.ndarray, mean: float, std: float, generator: np.random.Generator
) -> np.ndarray:
    """Fill ``array`` in place with draws from N(mean, std²); return it."""
    array[...] = generator.normal(mean, std, size=array.shape)
    return array
