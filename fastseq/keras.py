"""Keras 3 recurrent layers to fastseq layers and back: the weights, converted exactly.

- :func:`from_keras` (``keras.layers.LSTM``, ``GRU``, ``SimpleRNN`` or a ``Bidirectional``
  of one) returns a fastseq ``LSTM``, ``GRU`` or ``RNN`` with ``batch_first=True`` (Keras
  is batch-major) holding the same weights; ``fastseq_layer(x)[0]`` is the Keras layer's
  output with ``return_sequences=True`` (its last step, ``[:, -1]``, without).
- :func:`to_keras` writes a fastseq layer's weights into a Keras layer (a new one, or
  one you pass).
- :func:`load` opens a ``.keras`` (or legacy ``.h5``) file with Keras itself
  (``keras.saving.load_model``), or loads a ``.weights.h5`` file into a model you pass
  (``model.load_weights``), and converts every recurrent layer in it.

Keras runs on any of its backends here; fastseq's tests use the torch backend, so that no
TensorFlow is needed: set ``KERAS_BACKEND=torch`` before Keras is first imported.
Needs ``pip install "fastseq[keras]"`` (keras>=3 and h5py).

The mapping (Keras → fastseq; back is the inverse):

- ``kernel (I, G*H)`` → ``weight_ih_l0 = kernel.T``; ``recurrent_kernel (H, G*H)`` →
  ``weight_hh_l0 = recurrent_kernel.T``.
- Gate order: the LSTM's i, f, c, o is torch's i, f, g, o (unchanged); the GRU's z, r, h
  becomes r, z, n (the first two blocks swap).
- Biases: the LSTM and SimpleRNN have one, ``bias (G*H,)`` → ``bias_ih_l0``, with
  ``bias_hh_l0 = 0``; back, ``bias = bias_ih + bias_hh``. The GRU with ``reset_after=True``
  has ``bias (2, 3H)``: row 0 is the input bias, row 1 the recurrent one (exact both ways).
  With ``reset_after=False`` (fastseq's ``reset_after=False``, the same equations) one
  ``bias (3H,)``, as the LSTM's. ``use_bias=False`` is ``bias=False``.

What must match, or is refused with ValueError: ``activation`` tanh (SimpleRNN: tanh or
relu) and ``recurrent_activation`` sigmoid, Keras's defaults (fastseq's cells are fixed).
``go_backwards=True`` processes the sequence from its end and returns the outputs in
that order: the fastseq layer run on the time-reversed input, ``layer(x[:, ::-1])``,
gives them; :func:`from_keras` asks you to say so (``allow_go_backwards=True``) rather than
hand back a layer whose plain call would differ. A ``Bidirectional`` wrapper
(``merge_mode="concat"``) becomes one bidirectional fastseq layer, outputs aligned in time
as Keras's. Not carried over, as they change no weight: ``return_sequences`` and
``return_state`` (which outputs are returned), ``stateful`` (state carried across calls:
pass the last ``h_n`` as the next call's state), masking (use fastseq's ``lengths``),
``unroll`` and ``use_cudnn``, and the training-time ``dropout`` / ``recurrent_dropout``
(fastseq's ``dropout`` is between stacked layers, another thing).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

try:
    import keras
except ModuleNotFoundError as exc:
    if exc.name == "keras":
        raise ImportError(
            'fastseq.keras needs Keras 3, which is not installed: pip install "fastseq[keras]"'
        ) from exc
    raise ImportError(
        f"Keras could not import its backend ({exc}). fastseq.keras works with any Keras "
        "backend; without TensorFlow, choose another before Keras is first imported, e.g. "
        "KERAS_BACKEND=torch (the backend now selected: "
        f"{os.environ.get('KERAS_BACKEND', 'the default, from ~/.keras/keras.json')})"
    ) from exc

from fastseq.recurrent import GRU, LSTM, RNN, RNNBase

__all__ = ["from_keras", "to_keras", "load", "weights_of"]

_GRU_ORDER = (1, 0, 2)  # fastseq gate k is Keras gate _GRU_ORDER[k]: r, z, n from z, r, h


def _reorder(a: np.ndarray, order, H: int) -> np.ndarray:
    """Gate blocks of H along the first axis in the given order (a copy)."""
    return np.concatenate([a[k * H:(k + 1) * H] for k in order])


def _inverse(order):
    return tuple(int(i) for i in np.argsort(order))


def _numpy(variable) -> np.ndarray:
    """A Keras variable's value as a new NumPy array."""
    value = variable.value
    if hasattr(value, "detach"):
        # The torch backend: Keras converts with np.array(tensor), which NumPy 2 warns
        # about (torch's __array__ takes no copy=); Tensor.numpy() is the direct way.
        return value.detach().cpu().numpy().copy()
    return np.array(keras.ops.convert_to_numpy(value), copy=True)


def weights_of(layer) -> list[np.ndarray]:
    """A Keras layer's weights as NumPy arrays, as ``layer.get_weights()`` (same order:
    kernel, recurrent_kernel, bias), without the torch backend's NumPy 2 warning."""
    return [_numpy(v) for v in layer.weights]


def _activation_name(fn) -> str:
    try:
        return keras.activations.serialize(fn)
    except Exception:  # a plain callable Keras cannot name
        return getattr(fn, "__name__", repr(fn))


def _describe(layer) -> dict:
    """The fastseq class and options for a Keras recurrent layer, or ValueError/TypeError."""
    name = f"Keras layer {layer.name!r}"
    if isinstance(layer, keras.layers.LSTM):
        family = LSTM
    elif isinstance(layer, keras.layers.GRU):
        family = GRU
    elif isinstance(layer, keras.layers.SimpleRNN):
        family = RNN
    else:
        raise TypeError(
            f"{name} is a {type(layer).__name__}; fastseq converts keras.layers.LSTM, GRU, "
            "SimpleRNN and a Bidirectional of one of them"
        )
    cell = layer.cell
    activation = _activation_name(cell.activation)
    allowed = ("tanh", "relu") if family is RNN else ("tanh",)
    if activation not in allowed:
        raise ValueError(f"{name} has activation={activation!r}; fastseq's {family.__name__} "
                         f"computes {' or '.join(allowed)} (Keras's default)")
    if family is not RNN:
        recurrent = _activation_name(cell.recurrent_activation)
        if recurrent != "sigmoid":
            raise ValueError(f"{name} has recurrent_activation={recurrent!r}; fastseq's "
                             f"{family.__name__} computes sigmoid (Keras's default)")
    options = {}
    if family is RNN:
        options["nonlinearity"] = activation
    if family is GRU:
        options["reset_after"] = bool(cell.reset_after)
    return {"cls": family, "units": int(cell.units), "bias": bool(cell.use_bias),
            "options": options}


def _keras_weights_to_fastseq(layer, info: dict) -> dict[str, np.ndarray]:
    """The ``l0`` parameters (no suffix) of a fastseq layer from a built Keras layer."""
    cls, H = info["cls"], info["units"]
    weights = weights_of(layer)  # [kernel, recurrent_kernel(, bias)]
    kernel, recurrent = weights[0], weights[1]
    order = _GRU_ORDER if cls is GRU else None
    fix = (lambda a: _reorder(a, order, H)) if order else (lambda a: np.array(a, copy=True))
    params = {"weight_ih_l0": fix(kernel.T), "weight_hh_l0": fix(recurrent.T)}
    if info["bias"]:
        bias = weights[2]
        if bias.ndim == 2:  # GRU reset_after: (2, 3H), input then recurrent
            params["bias_ih_l0"], params["bias_hh_l0"] = fix(bias[0]), fix(bias[1])
        else:
            params["bias_ih_l0"] = fix(bias)
            params["bias_hh_l0"] = np.zeros_like(params["bias_ih_l0"])
    return params


def _ensure_built(layer, input_size: int | None) -> None:
    if not layer.built:
        if input_size is None:
            raise ValueError(f"Keras layer {layer.name!r} is not built (it has no weights yet): "
                             "call it on an input or build it first")
        layer.build((None, None, input_size))


def from_keras(layer, *, allow_go_backwards: bool = False, dtype=None):
    """A fastseq layer holding the weights of a Keras 3 recurrent layer.

    Parameters
    ----------
    layer : keras.layers.LSTM, GRU, SimpleRNN, or Bidirectional of one
        Built (it has weights). A Bidirectional must have ``merge_mode="concat"``.
    allow_go_backwards : bool, default False
        A layer with ``go_backwards=True`` is converted only when True: its outputs are
        the fastseq layer's on the time-reversed input, ``fastseq_layer(x[:, ::-1])``.
    dtype : float32 or float64, optional
        The fastseq layer's dtype; default the Keras kernel's.

    Returns
    -------
    fastseq.LSTM, fastseq.GRU or fastseq.RNN
        One layer (``num_layers=1``), ``batch_first=True``; ``bidirectional=True`` for a
        Bidirectional. GRU keeps ``reset_after``; RNN takes ``nonlinearity`` from
        ``activation``.

    Raises
    ------
    TypeError
        Not one of those layer types.
    ValueError
        Non-default activations, ``go_backwards`` without ``allow_go_backwards``, a
        Bidirectional whose merge mode is not "concat", or an unbuilt layer.
    """
    if isinstance(layer, keras.layers.Bidirectional):
        return _from_bidirectional(layer, dtype)
    info = _describe(layer)
    _ensure_built(layer, None)
    if layer.go_backwards and not allow_go_backwards:
        raise ValueError(
            f"Keras layer {layer.name!r} has go_backwards=True: it reads the sequence from its "
            "end and returns the outputs in that order, which the fastseq layer gives on the "
            "time-reversed input, layer(x[:, ::-1]). Pass allow_go_backwards=True to convert "
            "it on that understanding"
        )
    params = _keras_weights_to_fastseq(layer, info)
    I = params["weight_ih_l0"].shape[1]
    dtype = params["weight_ih_l0"].dtype if dtype is None else dtype
    out = info["cls"](I, info["units"], bias=info["bias"], batch_first=True, dtype=dtype,
                      seed=0, **info["options"])
    out.load_state_dict(params)
    return out


def _from_bidirectional(wrapper, dtype):
    if wrapper.merge_mode != "concat":
        raise ValueError(f"Keras layer {wrapper.name!r} has merge_mode={wrapper.merge_mode!r}; "
                         "a bidirectional fastseq layer concatenates (merge_mode='concat')")
    fwd, bwd = wrapper.forward_layer, wrapper.backward_layer
    _ensure_built(wrapper, None)
    info, info_b = _describe(fwd), _describe(bwd)
    if info != info_b or fwd.go_backwards or not bwd.go_backwards:
        raise ValueError(f"Keras layer {wrapper.name!r}: its two layers must be the same kind "
                         "of layer with the same options, the second one going backwards")
    params = _keras_weights_to_fastseq(fwd, info)
    params.update({f"{k}_reverse": v for k, v in _keras_weights_to_fastseq(bwd, info).items()})
    I = params["weight_ih_l0"].shape[1]
    dtype = params["weight_ih_l0"].dtype if dtype is None else dtype
    out = info["cls"](I, info["units"], bias=info["bias"], batch_first=True, dtype=dtype,
                      bidirectional=True, seed=0, **info["options"])
    out.load_state_dict(params)
    return out


_KERAS_CLASS = {LSTM: "LSTM", GRU: "GRU", RNN: "SimpleRNN"}


def _fastseq_params_to_keras(layer: RNNBase, suffix: str, target) -> list[np.ndarray]:
    """``[kernel, recurrent_kernel(, bias)]`` for the Keras layer ``target`` from one
    direction of a fastseq layer, in the Keras weights' dtypes."""
    H = layer.hidden_size
    p = {k: v.data for k, v in layer.named_parameters()}
    order = _inverse(_GRU_ORDER) if isinstance(layer, GRU) else None
    fix = (lambda a: _reorder(a, order, H)) if order else (lambda a: a)
    weights = [fix(p[f"weight_ih_l0{suffix}"]).T, fix(p[f"weight_hh_l0{suffix}"]).T]
    if layer.bias:
        b_ih, b_hh = p[f"bias_ih_l0{suffix}"], p[f"bias_hh_l0{suffix}"]
        if isinstance(layer, GRU) and layer.reset_after:
            weights.append(np.stack([fix(b_ih), fix(b_hh)]))
        else:
            weights.append(fix(b_ih + b_hh))
    dtypes = [np.dtype(keras.backend.standardize_dtype(w.dtype)) for w in target.weights]
    return [np.ascontiguousarray(w, dtype=d) for w, d in zip(weights, dtypes)]


def _check_target(layer: RNNBase, target) -> None:
    """ValueError unless the Keras layer ``target`` computes what ``layer`` does."""
    info = _describe(target)
    want = {"cls": type(layer), "units": layer.hidden_size, "bias": layer.bias,
            "options": ({"nonlinearity": layer.nonlinearity} if isinstance(layer, RNN) else
                        {"reset_after": layer.reset_after} if isinstance(layer, GRU) else {})}
    if info != want:
        raise ValueError(
            f"Keras layer {target.name!r} ({type(target).__name__}, units={info['units']}, "
            f"use_bias={info['bias']}, {info['options']}) does not compute the fastseq "
            f"{type(layer).__name__} (hidden_size={layer.hidden_size}, bias={layer.bias}, "
            f"{want['options']})"
        )


def _new_keras_layer(layer: RNNBase):
    kwargs = dict(units=layer.hidden_size, use_bias=layer.bias, return_sequences=True,
                  dtype=layer.dtype.name)
    if isinstance(layer, RNN):
        kwargs["activation"] = layer.nonlinearity
    if isinstance(layer, GRU):
        kwargs["reset_after"] = layer.reset_after
    new = getattr(keras.layers, _KERAS_CLASS[type(layer)])(**kwargs)
    if layer.bidirectional:
        new = keras.layers.Bidirectional(new, merge_mode="concat", dtype=layer.dtype.name)
    return new


def to_keras(layer: RNNBase, keras_layer=None):
    """Write a fastseq layer's weights into a Keras 3 layer; return that Keras layer.

    Parameters
    ----------
    layer : fastseq.LSTM, fastseq.GRU or fastseq.RNN
        ``num_layers=1`` (Keras has one layer per recurrent layer); a bidirectional one
        goes to a ``keras.layers.Bidirectional``.
    keras_layer : Keras layer, optional
        The layer to write into: LSTM, GRU (same ``reset_after``), SimpleRNN (activation
        the fastseq RNN's nonlinearity), or a Bidirectional of one for a bidirectional
        layer; ``units`` and ``use_bias`` must match. Built here (input size from
        ``layer``) if it is not yet. None: a new one with ``return_sequences=True``, the
        fastseq layer's dtype and Keras's defaults otherwise.

    Returns
    -------
    The Keras layer. Keras's single bias of the LSTM, the SimpleRNN and the GRU with
    ``reset_after=False`` receives ``bias_ih + bias_hh``.

    Raises
    ------
    TypeError
        ``layer`` is not a fastseq recurrent layer.
    ValueError
        ``num_layers > 1``, or a Keras layer that computes something else.
    """
    if not isinstance(layer, (LSTM, GRU, RNN)):
        raise TypeError(f"layer must be a fastseq LSTM, GRU or RNN; got {type(layer).__name__}")
    if layer.num_layers != 1:
        raise ValueError(f"layer has num_layers={layer.num_layers}; a Keras recurrent layer is "
                         "one layer: convert each of a stack into its own Keras layer")
    if keras_layer is None:
        keras_layer = _new_keras_layer(layer)
    if layer.bidirectional:
        if not isinstance(keras_layer, keras.layers.Bidirectional):
            raise ValueError("layer is bidirectional: keras_layer must be a "
                             f"keras.layers.Bidirectional; got {type(keras_layer).__name__}")
        if keras_layer.merge_mode != "concat":
            raise ValueError(f"keras_layer has merge_mode={keras_layer.merge_mode!r}; a "
                             "bidirectional fastseq layer concatenates (merge_mode='concat')")
        pairs = [(keras_layer.forward_layer, ""), (keras_layer.backward_layer, "_reverse")]
        for target, _ in pairs:
            _check_target(layer, target)
        if keras_layer.forward_layer.go_backwards or not keras_layer.backward_layer.go_backwards:
            raise ValueError("keras_layer's backward layer must go backwards and its forward "
                             "layer forwards")
        _ensure_built(keras_layer, layer.input_size)
    else:
        if isinstance(keras_layer, keras.layers.Bidirectional):
            raise ValueError("keras_layer is Bidirectional but layer is not bidirectional")
        _check_target(layer, keras_layer)
        _ensure_built(keras_layer, layer.input_size)
        pairs = [(keras_layer, "")]
    for target, suffix in pairs:
        kernel_shape = tuple(target.weights[0].shape)
        G = layer.weight_hh_l0.shape[0] // layer.hidden_size
        if kernel_shape != (layer.input_size, G * layer.hidden_size):
            raise ValueError(f"Keras layer {target.name!r} has kernel shape {kernel_shape}; "
                             f"layer needs ({layer.input_size}, {G * layer.hidden_size}) "
                             f"(input_size={layer.input_size})")
    for target, suffix in pairs:  # every check passed: now write
        for variable, value in zip(target.weights, _fastseq_params_to_keras(layer, suffix, target)):
            variable.assign(value)
    return keras_layer


def _walk(layer):
    """The layer and every layer nested in it, depth first, in order."""
    yield layer
    if isinstance(layer, keras.layers.Bidirectional):
        return  # its two halves are converted together
    for child in getattr(layer, "layers", ()) or ():
        yield from _walk(child)


def load(path: str | os.PathLike, model=None, *, allow_go_backwards: bool = False) -> dict[str, Any]:
    """The fastseq layers of the recurrent layers saved in a Keras file, by layer name.

    Parameters
    ----------
    path : str or PathLike
        A ``.keras`` archive (or legacy ``.h5`` model), opened with
        ``keras.saving.load_model`` (custom objects: pass ``model`` instead), or a
        ``.weights.h5`` file, which needs ``model``.
    model : keras.Model, optional
        A model of the saved architecture: the file's weights are loaded into it
        (``model.load_weights(path)``); required for ``.weights.h5``.
    allow_go_backwards : bool, default False
        Passed to :func:`from_keras`.

    Returns
    -------
    dict
        Keras layer name to fastseq layer (see :func:`from_keras`), in the model's order,
        for every LSTM, GRU, SimpleRNN and Bidirectional of one; other layers are skipped.
    """
    path = os.fspath(path)
    if model is None:
        if path.endswith(".weights.h5"):
            raise ValueError(f"{path!r} holds weights only: pass the model they belong to as "
                             "model= (its weights are loaded with model.load_weights)")
        model = keras.saving.load_model(path)
    else:
        model.load_weights(path)
    recurrent = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN,
                 keras.layers.Bidirectional)
    return {layer.name: from_keras(layer, allow_go_backwards=allow_go_backwards)
            for layer in _walk(model) if isinstance(layer, recurrent)}

