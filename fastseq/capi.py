"""``fastseq.capi``: the C ABI of libfastseq (``fastseq/fastseq.h``) through cffi, ABI mode.

``lib`` holds every function of the header (``lib.fastseq_lstm_forward_f64`` ...) and its
enum constants (``lib.FASTSEQ_OK``, ``lib.FASTSEQ_CELL_LSTM`` ...); ``ffi`` is the cffi
instance that declares them. The declarations are read from the header itself at import,
so the binding cannot drift from it. Around them: ``ptr`` (a NumPy array as a checked cffi
pointer), ``check`` (a status as ``CapiError``), the size queries returning ints,
``kernel`` (the function of a cell, direction and dtype), and for the generic calls
``lib.fastseq_forward`` / ``lib.fastseq_backward`` (any cell, the projected LSTM too)
``options`` (a ``fastseq_options``), ``pointers`` (an array of pointers) and
``buffer_bytes``.

From Numba's nopython code, call the cffi functions with ``ffi.from_buffer(array)`` for
each pointer, and pass the functions in as *arguments* of the jitted function: a cffi
function held as a global makes ``cache=True`` fail ("uses dynamic globals")::

    @numba.njit(cache=True)
    def step(fwd, y, h_n, ...):
        return fwd(ffi.from_buffer(y), ffi.from_buffer(h_n), ...)

    step(capi.kernel("gru", "forward", np.float32), y, h_n, ...)

Importing this module imports cffi and loads the library; ``import fastseq`` does neither.
"""
from __future__ import annotations

import glob
import os
import re

import cffi
import numpy as np
import scipy_openblas32

from . import cells as _cells
from .paths import get_include, get_library

__all__ = [
    "ffi", "lib", "CapiError", "check", "ptr", "aligned_bytes", "kernel", "version",
    "last_error", "reserve_bytes", "forward_scratch_bytes", "backward_scratch_bytes",
    "header_path", "cdef_source", "STATUS_NAMES", "CELLS", "DTYPES", "BUFFERS", "options",
    "pointers", "buffer_bytes",
]


def header_path() -> str:
    """Path of the C header this binding is made from."""
    return os.path.join(get_include(), "fastseq", "fastseq.h")


def cdef_source(header_text: str | None = None) -> str:
    """The declarations of the header, as cffi's ``cdef`` takes them: the text between the
    ``FASTSEQ_CDEF_BEGIN`` and ``FASTSEQ_CDEF_END`` markers, without ``FASTSEQ_API``."""
    if header_text is None:
        with open(header_path(), encoding="utf-8") as f:
            header_text = f.read()
    match = re.search(r"/\* FASTSEQ_CDEF_BEGIN \*/(.*?)/\* FASTSEQ_CDEF_END \*/",
                      header_text, re.DOTALL)
    if match is None:
        raise ValueError("the header has no FASTSEQ_CDEF_BEGIN ... FASTSEQ_CDEF_END block")
    return re.sub(r"\bFASTSEQ_API\b", "", match.group(1))


def _load_openblas(ffi_: cffi.FFI):
    # libfastseq.so needs libscipy_openblas.so. An installed wheel finds it through its
    # RUNPATH ($ORIGIN/../scipy_openblas32/lib); the in-place build does not, so load it
    # first: the dynamic loader then resolves the dependency by soname.
    pattern = os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas*.so*")
    found = sorted(glob.glob(pattern))
    return ffi_.dlopen(found[0]) if found else None


ffi = cffi.FFI()
ffi.cdef(cdef_source())
_openblas = _load_openblas(ffi)
lib = ffi.dlopen(get_library())

#: Status code -> name, e.g. 4 -> "FASTSEQ_ERR_RESERVE_SIZE".
STATUS_NAMES: dict[int, str] = dict(sorted(ffi.typeof("fastseq_status").elements.items()))
#: Cell name (as in ``fastseq.functional``) -> fastseq_cell value, for the size queries.
CELLS: dict[str, int] = {name: getattr(lib, "FASTSEQ_CELL_" + name.upper())
                         for name in _cells.CELLS}
#: NumPy dtype -> fastseq_dtype value.
DTYPES: dict[np.dtype, int] = {
    np.dtype(np.float32): lib.FASTSEQ_FLOAT32,
    np.dtype(np.float64): lib.FASTSEQ_FLOAT64,
}
#: Buffer name -> fastseq_buffer value, for buffer_bytes.
BUFFERS: dict[str, int] = {
    "reserve": lib.FASTSEQ_RESERVE,
    "forward_scratch": lib.FASTSEQ_FORWARD_SCRATCH,
    "training_scratch": lib.FASTSEQ_TRAINING_SCRATCH,
    "backward_scratch": lib.FASTSEQ_BACKWARD_SCRATCH,
}
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
# The C element type of each dtype a fastseq pointer can take (bytes for reserve/scratch).
_CTYPES = {
    np.dtype(np.float32): "float[]",
    np.dtype(np.float64): "double[]",
    np.dtype(np.int64): "int64_t[]",
    np.dtype(np.uint8): "unsigned char[]",
}


class CapiError(RuntimeError):
    """A C ABI call returned an error status.

    Attributes
    ----------
    code : int
        The status, one of ``lib.FASTSEQ_ERR_*``.
    status : str
        Its name, e.g. ``"FASTSEQ_ERR_LENGTHS"``.
    message : str
        ``fastseq_last_error()`` right after the call.
    """

    def __init__(self, code: int, message: str):
        self.code = int(code)
        self.status = STATUS_NAMES.get(self.code, f"unknown status {self.code}")
        self.message = message
        super().__init__(f"{self.status}: {message}")


def version() -> str:
    """``fastseq_version()``: the version of the loaded library."""
    return ffi.string(lib.fastseq_version()).decode()


def last_error() -> str:
    """``fastseq_last_error()``: this thread's last message ("" after a success)."""
    return ffi.string(lib.fastseq_last_error()).decode()


def check(status: int) -> None:
    """Raise ``CapiError`` (with ``last_error()``) unless ``status`` is ``FASTSEQ_OK``."""
    if status != lib.FASTSEQ_OK:
        raise CapiError(status, last_error())


def ptr(a, dtype=None, *, writable: bool = False, name: str = "array"):
    """A cffi pointer to the data of NumPy array ``a`` (None gives ``ffi.NULL``).

    Parameters
    ----------
    a : numpy.ndarray or None
        C-contiguous, of dtype float32, float64, int64 (lengths) or uint8 (reserve and
        scratch bytes). The array must outlive every use of the pointer.
    dtype : dtype-like, optional
        The dtype ``a`` must have (e.g. the dtype of the kernel being called).
    writable : bool
        ``a`` is an output: it must be writeable.
    name : str
        The argument's name, for error messages.

    Returns
    -------
    cffi.FFI.CData
        ``float[]``, ``double[]``, ``int64_t[]`` or ``unsigned char[]`` over ``a``'s memory, which
        cffi passes to the matching pointer parameter (uint8 to ``unsigned char *``).

    Raises
    ------
    TypeError
        ``a`` is not an ndarray, or has another dtype than ``dtype`` or than these four.
    ValueError
        ``a`` is not C-contiguous, or is read-only although ``writable``.
    """
    if a is None:
        return ffi.NULL
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if dtype is not None and a.dtype != np.dtype(dtype):
        raise TypeError(f"{name} has dtype {a.dtype}, expected {np.dtype(dtype)}")
    ctype = _CTYPES.get(a.dtype)
    if ctype is None:
        raise TypeError(f"{name} has dtype {a.dtype}; fastseq's C ABI takes float32, float64, "
                        "int64 (lengths) or uint8 (reserve, scratch)")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} is not C-contiguous (use numpy.ascontiguousarray)")
    if writable and not a.flags.writeable:
        raise ValueError(f"{name} is read-only, but it is an output")
    return ffi.from_buffer(ctype, a, require_writable=writable)


def aligned_bytes(nbytes: int, alignment: int = 64) -> np.ndarray:
    """An uninitialised uint8 array of ``nbytes`` whose data is ``alignment``-aligned, for
    a reserve or a scratch buffer (the C ABI needs 8-byte alignment; 64 bytes is fastest)."""
    raw = np.empty(int(nbytes) + alignment, dtype=np.uint8)
    offset = (-raw.ctypes.data) % alignment
    return raw[offset:offset + int(nbytes)]


def _size_query(fn, cell, dtype, sizes, bias, lengths, reverse, *extra) -> int:
    flags = ((lib.FASTSEQ_BIAS if bias else 0) | (lib.FASTSEQ_LENGTHS if lengths else 0)
             | (lib.FASTSEQ_REVERSE if reverse else 0))
    out = ffi.new("size_t *")
    check(fn(out, CELLS[cell], DTYPES[np.dtype(dtype)], *sizes, flags, *extra))
    return int(out[0])


def reserve_bytes(cell: str, dtype, T: int, B: int, I: int, H: int, *, bias: bool = False,
                  lengths: bool = False, reverse: bool = False) -> int:
    """``fastseq_reserve_bytes``: bytes of a training forward's reserve.

    ``cell``: a key of ``CELLS``; ``dtype``: float32 or float64; ``bias``, ``lengths``,
    ``reverse``: whether the call gives biases, gives lengths, runs reversed (the
    ``FASTSEQ_BIAS | FASTSEQ_LENGTHS | FASTSEQ_REVERSE`` flags of the C query).
    """
    return _size_query(lib.fastseq_reserve_bytes, cell, dtype, (T, B, I, H), bias, lengths,
                       reverse)


def forward_scratch_bytes(cell: str, dtype, T: int, B: int, I: int, H: int, training: bool, *,
                          bias: bool = False, lengths: bool = False, reverse: bool = False) -> int:
    """``fastseq_forward_scratch_bytes``: bytes of a forward's scratch (see reserve_bytes)."""
    return _size_query(lib.fastseq_forward_scratch_bytes, cell, dtype, (T, B, I, H), bias,
                       lengths, reverse, int(bool(training)))


def backward_scratch_bytes(cell: str, dtype, T: int, B: int, I: int, H: int, *,
                           bias: bool = False, lengths: bool = False,
                           reverse: bool = False) -> int:
    """``fastseq_backward_scratch_bytes``: bytes of a backward's scratch (see reserve_bytes)."""
    return _size_query(lib.fastseq_backward_scratch_bytes, cell, dtype, (T, B, I, H), bias,
                       lengths, reverse)


def kernel(family: str, direction: str, dtype):
    """The cffi function ``fastseq_<family>_<direction>_<f32|f64>``.

    ``family``: "rnn", "lstm" or "gru"; ``direction``: "forward" or "backward";
    ``dtype``: float32 or float64. Pass the result into jitted code as an argument.
    """
    if family not in ("rnn", "lstm", "gru") or direction not in ("forward", "backward"):
        raise ValueError(f"no kernel for family={family!r}, direction={direction!r}: "
                         "family is 'rnn', 'lstm' or 'gru', direction 'forward' or 'backward'")
    suffix = _SUFFIX.get(np.dtype(dtype))
    if suffix is None:
        raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    return getattr(lib, f"fastseq_{family}_{direction}_{suffix}")


def options(dtype, T: int, B: int, I: int, H: int, *, proj_size: int = 0, bias: bool = False,
            lengths: bool = False, reverse: bool = False, accumulate: bool = False):
    """A ``fastseq_options *`` for the generic calls, its ``struct_size`` set.

    ``dtype``: float32 or float64; ``proj_size``: P of the projected LSTM (else 0); ``bias``,
    ``lengths``, ``reverse``: the ``FASTSEQ_BIAS | FASTSEQ_LENGTHS | FASTSEQ_REVERSE`` flags
    (what the call gives); ``accumulate``: the backward adds the parameter gradients.
    """
    o = ffi.new("fastseq_options *")
    o.struct_size = ffi.sizeof("fastseq_options")
    o.dtype = DTYPES[np.dtype(dtype)]
    o.flags = ((lib.FASTSEQ_BIAS if bias else 0) | (lib.FASTSEQ_LENGTHS if lengths else 0)
               | (lib.FASTSEQ_REVERSE if reverse else 0))
    o.T, o.B, o.I, o.H = T, B, I, H
    o.proj_size = proj_size
    o.accumulate = int(bool(accumulate))
    return o


def pointers(arrays, dtype=None, *, writable: bool = False, name: str = "arrays"):
    """A ``void *[]`` of the arrays' data (None gives NULL), for the generic calls' arrays
    of parameters and states; checked as ``ptr`` checks. Keep the arrays alive meanwhile."""
    return ffi.new("void *[]", [ptr(a, dtype, writable=writable, name=f"{name}[{i}]")
                                for i, a in enumerate(arrays)])


def buffer_bytes(buffer: str, cell: str, opts) -> int:
    """``fastseq_buffer_bytes``: bytes of ``buffer`` (a key of ``BUFFERS``) for a generic
    call of ``cell`` with ``opts`` (``options(...)``)."""
    out = ffi.new("size_t *")
    check(lib.fastseq_buffer_bytes(out, BUFFERS[buffer], CELLS[cell], opts))
    return int(out[0])
