"""Linear and Embedding: the feed-forward layers around a recurrent core.

Both follow torch.nn's parameter names, shapes and default initialization, and the
fastseq layer protocol: ``forward`` keeps what ``backward`` needs (training mode only),
``backward`` consumes it and adds into ``.grad``.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .init import SeedLike, make_generator, normal_, uniform_
from .parameter import Module, Parameter, as_real_array, check_dtype, one_trainer

__all__ = ["Linear", "Embedding"]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class Linear(Module):
    """Affine map over the last axis, as torch.nn.Linear.

    Equations::

        y = x W^T + b

    Parameters
    ----------
    in_features : int
        I, size of the last axis of the input.
    out_features : int
        O, size of the last axis of the output.
    bias : bool, default True
    dtype : float32 or float64, default float32
    seed : None, int or numpy.random.Generator
        Initialization as torch: W and b ~ U(-1/sqrt(I), 1/sqrt(I)).

    Attributes
    ----------
    weight : Parameter
        ``(O, I)``.
    bias : Parameter or None
        ``(O,)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        dtype: Any = np.float32,
        seed: SeedLike = None,
    ) -> None:
        super().__init__()
        self.in_features = _positive_int("in_features", in_features)
        self.out_features = _positive_int("out_features", out_features)
        self.dtype = check_dtype(dtype)
        generator = make_generator(seed)
        bound = 1.0 / math.sqrt(self.in_features)
        self.weight = Parameter(uniform_(np.empty((self.out_features, self.in_features),
                                                  self.dtype), -bound, bound, generator))
        if bias:
            self.bias = Parameter(uniform_(np.empty(self.out_features, self.dtype),
                                           -bound, bound, generator))
        else:
            self.bias = None

    @one_trainer
    def forward(self, x: Any) -> np.ndarray:
        """``y = x W^T + b``.

        Parameters
        ----------
        x : array_like
            ``(..., in_features)``; cast to the layer's dtype.

        Returns
        -------
        numpy.ndarray
            ``(..., out_features)``.
        """
        x = as_real_array(x, "x", self.dtype)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"x must have shape (..., in_features={self.in_features}), got {x.shape}"
            )
        y = x @ self.weight.data.T
        if self.bias is not None:
            y += self.bias.data
        self._keep_for_backward({"x": x, "y_shape": y.shape})
        return y

    @one_trainer
    def backward(self, dy: Any) -> np.ndarray:
        """Add ``dW = dy^T x`` and ``db = sum(dy)`` into ``.grad``; return ``dx = dy W``.

        Parameters
        ----------
        dy : array_like
            ``(..., out_features)``, shaped like the forward's output.

        Returns
        -------
        numpy.ndarray
            ``dx``, ``(..., in_features)``.
        """
        cache = self._peek_backward()
        dy = as_real_array(dy, "dy", self.dtype)
        if dy.shape != cache["y_shape"]:
            raise ValueError(f"dy must have the shape of y, {cache['y_shape']}, got {dy.shape}")
        x = self._consume_backward()["x"]
        dy2 = dy.reshape(-1, self.out_features)
        self.weight.accumulate(dy2.T @ x.reshape(-1, self.in_features))
        if self.bias is not None:
            self.bias.accumulate(dy2.sum(axis=0))
        return dy @ self.weight.data

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Embedding(Module):
    """Lookup table of vectors indexed by integers, as torch.nn.Embedding.

    Equations::

        y[..., :] = W[indices[...], :]

    Parameters
    ----------
    num_embeddings : int
        N, size of the vocabulary: indices lie in 0..N-1.
    embedding_dim : int
        E, size of each vector.
    padding_idx : int or None
        If given, that row is initialised to zeros and never receives gradient
        (negative values count from the end, as in torch).
    dtype : float32 or float64, default float32
    seed : None, int or numpy.random.Generator
        Initialization as torch: W ~ N(0, 1).

    Attributes
    ----------
    weight : Parameter
        ``(N, E)``.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        dtype: Any = np.float32,
        seed: SeedLike = None,
    ) -> None:
        super().__init__()
        self.num_embeddings = _positive_int("num_embeddings", num_embeddings)
        self.embedding_dim = _positive_int("embedding_dim", embedding_dim)
        if padding_idx is not None:
            if not isinstance(padding_idx, (int, np.integer)) or not (
                -self.num_embeddings <= padding_idx < self.num_embeddings
            ):
                raise ValueError(
                    f"padding_idx must be an int in [-{self.num_embeddings}, "
                    f"{self.num_embeddings}), got {padding_idx!r}"
                )
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        self.dtype = check_dtype(dtype)
        weight = normal_(np.empty((self.num_embeddings, self.embedding_dim), self.dtype),
                         0.0, 1.0, make_generator(seed))
        if padding_idx is not None:
            weight[padding_idx] = 0
        self.weight = Parameter(weight)

    @one_trainer
    def forward(self, indices: Any) -> np.ndarray:
        """Look up ``indices``.

        Parameters
        ----------
        indices : array_like of int
            Any shape ``(...)``, values in 0..num_embeddings-1.

        Returns
        -------
        numpy.ndarray
            ``(..., embedding_dim)``.
        """
        indices = np.asarray(indices)
        if indices.dtype.kind not in "iu":
            raise TypeError(f"indices must be an integer array, got dtype {indices.dtype}")
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_embeddings):
            raise IndexError(
                f"indices must lie in 0..{self.num_embeddings - 1}, got min {indices.min()} "
                f"and max {indices.max()}"
            )
        y = self.weight.data[indices]
        self._keep_for_backward({"indices": indices, "y_shape": y.shape})
        return y

    @one_trainer
    def backward(self, dy: Any) -> None:
        """Scatter-add ``dy`` into the looked-up rows of ``weight.grad``.

        Parameters
        ----------
        dy : array_like
            ``(..., embedding_dim)``, shaped like the forward's output.

        Returns
        -------
        None
            Integer indices have no gradient.
        """
        cache = self._peek_backward()
        dy = as_real_array(dy, "dy", self.dtype)
        if dy.shape != cache["y_shape"]:
            raise ValueError(f"dy must have the shape of y, {cache['y_shape']}, got {dy.shape}")
        indices = self._consume_backward()["indices"].reshape(-1)
        rows = dy.reshape(-1, self.embedding_dim)
        if self.padding_idx is not None:
            keep = indices != self.padding_idx
            indices, rows = indices[keep], rows[keep]
        grad = np.zeros_like(self.weight.data)
        np.add.at(grad, indices, rows)
        self.weight.accumulate(grad)
        return None

    def extra_repr(self) -> str:
        text = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            text += f", padding_idx={self.padding_idx}"
        return text
