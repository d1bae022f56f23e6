"""Parameter and Module: the containers every fastseq layer is built from.

A Parameter is a pair of NumPy arrays, ``data`` and ``grad``; a Module owns Parameters and
child Modules, names them as torch.nn does, and provides train/eval, zero_grad and
state dicts. The maths of each layer lives in its own file; nothing here computes.
"""
from __future__ import annotations

import contextlib
import functools
import threading
from collections import OrderedDict
from typing import Any, Callable, Iterator, Mapping, NamedTuple, TypeVar

import numpy as np

__all__ = ["Parameter", "Module", "IncompatibleKeys"]

_Method = TypeVar("_Method", bound=Callable[..., Any])

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """``dtype`` as a NumPy dtype, which must be float32 or float64."""
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from exc
    if resolved not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {resolved}")
    return resolved


def as_real_array(value: Any, name: str, dtype: np.dtype) -> np.ndarray:
    """``value`` as a C-contiguous array of ``dtype``.

    Integer and floating arrays of any width are cast; booleans, complex numbers,
    strings and objects raise ``TypeError`` naming the argument.
    """
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise TypeError(
            f"{name} must be a real numeric array, got dtype {array.dtype}"
        )
    return np.ascontiguousarray(array, dtype=dtype)


class Parameter:
    """A trainable array and the gradient accumulated for it.

    Parameters
    ----------
    data : array_like
        The initial value; copied into a new C-contiguous float32 or float64 array.

    Attributes
    ----------
    data : numpy.ndarray
        The value. Optimizers update it in place, so references to it stay valid.
    grad : numpy.ndarray or None
        Same shape and dtype as ``data``; layers' ``backward`` adds into it, ``zero_grad``
        clears it. Starts as zeros. Optimizers skip a parameter whose ``grad`` is None.
    """

    def __init__(self, data: Any) -> None:
        array = np.array(data, copy=True, order="C")
        if array.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"Parameter data must be float32 or float64, got {array.dtype}")
        self.data: np.ndarray = array
        self.grad: np.ndarray | None = np.zeros_like(array)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of ``data``."""
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        """Dtype of ``data``."""
        return self.data.dtype

    @property
    def size(self) -> int:
        """Number of elements of ``data``."""
        return self.data.size

    def accumulate(self, gradient: np.ndarray) -> None:
        """Add ``gradient`` (shape of ``data``) into ``grad``, creating it if it is None."""
        if self.grad is None:
            self.grad = np.array(gradient, dtype=self.data.dtype, copy=True, order="C")
        else:
            self.grad += gradient

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if dtype is None and not copy:
            return self.data
        return np.array(self.data, dtype=dtype, copy=True)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


def one_trainer(method: _Method) -> _Method:
    """Decorate a layer's ``forward`` or ``backward``: in training mode (a backward always)
    only one thread at a time may be inside them, on one layer object.

    A training forward keeps what backward needs on the layer, and backward adds into the
    parameters' ``grad``: two threads interleaving there would silently get each other's
    context or lose gradient updates. A second thread gets RuntimeError instead. Eval-mode
    forwards keep nothing and are not serialized: any number of threads may run them.
    """
    is_forward = method.__name__ == "forward"

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if is_forward and not self.training:
            return method(self, *args, **kwargs)
        with self._one_trainer(method.__name__):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class IncompatibleKeys(NamedTuple):
    """Keys that ``load_state_dict(strict=False)`` could not match."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class Module:
    """Base class of fastseq layers: named parameters, children, modes and state dicts.

    Assigning a :class:`Parameter` or a :class:`Module` to an attribute registers it under
    that name, so a model class composed of layers gets torch-style dotted names
    (``"lstm.weight_ih_l0"``) and its ``state_dict`` matches the torch model's.

    Attributes
    ----------
    training : bool
        True after ``train()`` (the default), False after ``eval()``. In eval mode a
        forward keeps nothing for backward and dropout is off.

    Notes
    -----
    Threads: any number of threads may run eval-mode forwards of one module at once. A
    training-mode forward keeps what backward needs on the module, so one module object
    trains in one thread at a time, and a backward runs in the thread of its forward;
    otherwise RuntimeError (never a gradient of another thread's batch). Give each
    training thread its own copy (``copy.deepcopy``) and combine the gradients.
    """

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_cache", None)
        object.__setattr__(self, "_cache_status", "no forward yet")
        object.__setattr__(self, "_cache_thread", None)
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "_trainer", None)
        object.__setattr__(self, "_replaced", set())  # threads whose forward was replaced

    # --- registration -------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}.__init__ must call super().__init__() "
                "before assigning attributes"
            )
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    # --- traversal ----------------------------------------------------------------
    def named_parameters(
        self, prefix: str = "", recurse: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        """Yield ``(name, parameter)`` pairs, own parameters first, then each child's.

        Names follow torch.nn (``weight_ih_l0``, ``bias_hh_l1_reverse``, ``fc.weight``).
        A parameter shared by several modules is yielded once.
        """
        seen: set[int] = set()
        for name, param in self._named_parameters_all(prefix, recurse):
            if id(param) not in seen:
                seen.add(id(param))
                yield name, param

    def _named_parameters_all(self, prefix: str, recurse: bool) -> Iterator[tuple[str, Parameter]]:
        for name, param in self._parameters.items():
            yield prefix + name, param
        if recurse:
            for child_name, child in self._modules.items():
                yield from child._named_parameters_all(f"{prefix}{child_name}.", True)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """Yield the parameters in ``named_parameters`` order."""
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        """Yield ``(name, module)`` for each directly registered child."""
        yield from self._modules.items()

    def children(self) -> Iterator["Module"]:
        """Yield each directly registered child module."""
        yield from self._modules.values()

    def modules(self) -> Iterator["Module"]:
        """Yield this module, then every descendant, depth first."""
        yield self
        for child in self._modules.values():
            yield from child.modules()

    # --- modes and gradients ------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Set training mode on this module and its children; return ``self``."""
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode) expects a bool, got {type(mode).__name__}")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> "Module":
        """Set evaluation mode (``train(False)``); return ``self``."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Clear every parameter's ``grad``: fill it with zeros, or set it to None."""
        for param in self.parameters():
            if set_to_none:
                param.grad = None
            elif param.grad is None:
                param.grad = np.zeros_like(param.data)
            else:
                param.grad.fill(0)

    # --- state dicts --------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of every parameter's ``data``, keyed by ``named_parameters`` names.

        The same keys, shapes and layouts as the equivalent torch module's
        ``state_dict()``; ``{k: v.numpy() for k, v in sd.items()}`` is interchangeable.
        """
        return OrderedDict(
            (name, param.data.copy()) for name, param in self._named_parameters_all("", True)
        )

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True
    ) -> IncompatibleKeys:
        """Copy values from ``state_dict`` into the parameters, in place.

        Every value is checked before any parameter changes, so a failed load leaves the
        module as it was. Values may be NumPy arrays or anything ``numpy.asarray``
        accepts (CPU torch tensors included); they are cast to each parameter's dtype.

        Parameters
        ----------
        state_dict : Mapping[str, array_like]
            Parameter name to value.
        strict : bool, default True
            Raise on missing or unexpected keys. Shapes must match either way.

        Returns
        -------
        IncompatibleKeys
            ``(missing_keys, unexpected_keys)``: both empty after a strict load.

        Raises
        ------
        TypeError
            ``state_dict`` is not a mapping, or a value is not a real numeric array.
        KeyError
            ``strict`` and keys are missing or unexpected (all are listed).
        ValueError
            A value's shape differs from its parameter's (all are listed).
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"state_dict must be a mapping of names to arrays, got {type(state_dict).__name__}"
            )
        params = OrderedDict(self._named_parameters_all("", True))
        missing = [name for name in params if name not in state_dict]
        unexpected = [str(name) for name in state_dict if name not in params]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys {missing}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected}")
            raise KeyError(
                f"error loading state_dict into {type(self).__name__}: " + "; ".join(parts)
            )
        values: dict[str, np.ndarray] = {}
        mismatched = []
        for name, param in params.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
                value = value.detach().cpu().numpy()
            array = np.asarray(value)
            if array.dtype.kind not in "iuf":
                raise TypeError(
                    f"state_dict[{name!r}] must be a real numeric array, got dtype {array.dtype}"
                )
            if array.shape != param.data.shape:
                mismatched.append(f"{name!r}: expected {param.data.shape}, got {array.shape}")
            values[name] = array
        if mismatched:
            raise ValueError(
                f"error loading state_dict into {type(self).__name__}: shape mismatch for "
                + ", ".join(mismatched)
            )
        for name, array in values.items():
            params[name].data[...] = array
        return IncompatibleKeys(missing, unexpected)

    # --- calling, the backward cache, pickling ------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The layer's computation; subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    @contextlib.contextmanager
    def _one_trainer(self, what: str) -> Iterator[None]:
        """Hold the module for a training forward or a backward of this thread; a
        RuntimeError if another thread holds it (see :func:`one_trainer`)."""
        me = threading.get_ident()
        with self._lock:
            holder = self._trainer
            if holder is not None and holder != me:
                raise RuntimeError(
                    f"{type(self).__name__}.{what}(): another thread is inside a training-mode "
                    "forward or backward of this layer. One layer object trains in one thread "
                    "at a time (its forward keeps what backward needs, its backward adds into "
                    "the parameters' grad); eval-mode forwards may run concurrently. Give "
                    "each training thread its own copy of the layer (copy.deepcopy)"
                )
            object.__setattr__(self, "_trainer", me)
        try:
            yield
        finally:
            with self._lock:
                object.__setattr__(self, "_trainer", holder)

    def _keep_for_backward(self, cache: Any) -> None:
        """Store what backward needs (training mode), or note that nothing was kept."""
        with self._lock:
            if self.training:
                owner = self._cache_thread
                if self._cache is not None and owner != threading.get_ident():
                    self._replaced.add(owner)  # that thread's backward must not run ours
                self._replaced.discard(threading.get_ident())  # this thread's new forward
                object.__setattr__(self, "_cache", cache)
                object.__setattr__(self, "_cache_status", "ready")
                object.__setattr__(self, "_cache_thread", threading.get_ident())
            else:
                object.__setattr__(self, "_cache", None)
                object.__setattr__(self, "_cache_status", "eval")
                object.__setattr__(self, "_cache_thread", None)

    def _peek_backward(self) -> Any:
        """What forward kept, without consuming it; a clear RuntimeError if nothing is, or
        if it was kept by a forward in another thread."""
        me = threading.get_ident()
        if (self._cache is not None and self._cache_thread != me) or me in self._replaced:
            self._replaced.discard(me)
            raise RuntimeError(
                f"{type(self).__name__}.backward(): the last training-mode forward of this "
                "layer ran in another thread (it replaced this thread's, if there was one); a "
                "backward runs in the thread of its forward. Train one layer object in one "
                "thread, or give each thread its own copy (copy.deepcopy)"
            )
        if self._cache is None:
            status = self._cache_status
            name = type(self).__name__
            if status == "eval":
                why = "the last forward ran in eval mode, which keeps nothing for backward"
            elif status == "consumed":
                why = "backward() was already called for the last forward"
            else:
                why = "forward() has not been called"
            raise RuntimeError(f"{name}.backward(): {why}; run a training-mode forward first")
        return self._cache

    def _consume_backward(self) -> Any:
        with self._lock:
            cache = self._peek_backward()
            object.__setattr__(self, "_cache", None)
            object.__setattr__(self, "_cache_status", "consumed")
            object.__setattr__(self, "_cache_thread", None)
        return cache

    def __getstate__(self) -> dict[str, Any]:
        # What forward kept may hold backend objects that do not pickle; drop it. Locks do
        # not pickle either: a copy gets its own.
        state = self.__dict__.copy()
        if state.get("_cache") is not None:
            state["_cache"] = None
            state["_cache_status"] = "no forward yet"
        for name in ("_lock", "_trainer", "_cache_thread", "_replaced"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.update(_lock=threading.Lock(), _trainer=None, _cache_thread=None,
                             _replaced=set())

    def extra_repr(self) -> str:
        """The text inside this module's ``repr`` parentheses."""
        return ""

    def __repr__(self) -> str:
        lines = [f"  ({name}): " + repr(child).replace("\n", "\n  ")
                 for name, child in self._modules.items()]
        if not lines:
            return f"{type(self).__name__}({self.extra_repr()})"
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + "\n" + "\n".join(lines) + "\n)"
