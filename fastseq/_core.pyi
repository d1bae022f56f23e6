"""Type stubs for fastseq._core, the pybind11 extension (csrc/bindings/*.cpp).

First made by pybind11-stubgen, then narrowed by hand: array arguments are typed as the
arrays the bindings accept (they raise TypeError for anything but a numpy.ndarray of the
right dtype), and results as what they return. tests/test_wheel.py checks that every public
name of the module is here, with the same parameters and defaults: regenerate with
``python -m pybind11_stubgen fastseq._core`` when the bindings change, then re-narrow.
"""
from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "Reserve", "blas_num_threads", "cpu_features", "cell_registry", "smoke",
    "rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward",
    "gru_forward", "gru_backward", "forward", "backward",
    "set_num_threads", "get_num_threads", "pool_busy",
    "use_openmp", "stop_using_openmp", "using_openmp",
    "empty_buffer_pool", "buffer_pool_bytes",
    "available_isas", "selected_isa", "set_isa",
    "cache_sizes", "set_cache_sizes", "reset_cache_sizes", "parse_cache_size",
    "cache_size_range", "cache_env_rejected", "machine_cpus", "tuning_choices",
]

_Float = npt.NDArray[np.floating]  # float32 or float64, one dtype per call
_Lengths = npt.NDArray[np.int64]

__version__: str

class Reserve:
    """What a training forward keeps for its backward (opaque; consumed by the one backward
    call it is passed to). Made only by ``*_forward(..., training=True)``."""
    @property
    def cell(self) -> str: ...  # "rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before", "lstmp"
    @property
    def dtype(self) -> np.dtype[np.floating]: ...
    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(T, B, I, H)"""
    @property
    def proj_size(self) -> int:
        """P, the projection's width (0 without a projection)"""
    @property
    def has_bias(self) -> bool: ...
    @property
    def has_lengths(self) -> bool: ...
    @property
    def reverse(self) -> bool: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def consumed(self) -> bool: ...

def cpu_features() -> dict[str, bool]:
    """Instruction-set features detected on this CPU."""

def cell_registry() -> list[dict[str, str | int | bool | tuple[str, ...]]]:
    """The C++ list of cells (csrc/cells/registry.hpp): name, family, gates, states,
    projected, parameters."""

def smoke(a: int, b: int) -> int:
    """Adds two integers: proves the extension loads and runs."""

def blas_num_threads() -> int:
    """Threads the linked OpenBLAS would use (proves the BLAS library is linked and loads)."""

def set_num_threads(n: int) -> None:
    """Threads fastseq's kernels use from now on (its own pool; OpenBLAS stays at 1)."""

def get_num_threads() -> int:
    """Threads fastseq's kernels use."""

def use_openmp(library: str) -> bool:
    """Run kernel teams on the threads of the already loaded libgomp `library` (a path or
    soname; PyTorch's). False, and no change, if it is not loaded or lacks GOMP_parallel."""

def stop_using_openmp() -> None:
    """Run kernel teams on fastseq's own pool again."""

def using_openmp() -> bool:
    """Whether kernel teams run on a host's OpenMP threads (use_openmp)."""

def pool_busy() -> bool:
    """Whether a kernel is using the thread pool right now (a second caller runs alone)."""

def empty_buffer_pool() -> int:
    """Frees the scratch and reserve buffers kept for reuse; returns the bytes freed."""

def buffer_pool_bytes() -> int:
    """Bytes of scratch and reserve buffers kept for reuse right now."""

def available_isas() -> list[str]:
    """Kernel variants (instruction sets) this CPU can run, best first."""

def selected_isa() -> str:
    """The kernel variant in use."""

def set_isa(name: str) -> None:
    """Use the named kernel variant from now on."""

def cache_sizes() -> dict[str, int | dict[str, int] | dict[str, str]]:
    """Cache sizes in force (bytes: l1d, l2, l3), where each came from, and what was detected."""

def set_cache_sizes(l1d: int = 0, l2: int = 0, l3: int = 0) -> None:
    """Override the cache sizes (bytes) the tuning rules use; 0 leaves a level as it is."""

def reset_cache_sizes() -> None:
    """Back to the cache sizes the process started with (environment overrides, else detected)."""

def parse_cache_size(text: str) -> int | None:
    """Bytes of a size like '512K', '2MiB', '49152'; None if it is not one."""

def cache_size_range(level: str) -> tuple[int, int]:
    """The (min, max) bytes a cache level's size may be."""

def cache_env_rejected() -> list[str]:
    """Why each ignored FASTSEQ_L*_SIZE environment variable was ignored."""

def machine_cpus() -> dict[str, int | str]:
    """The CPU count the tuning rules read (count), what sysconf reported (detected), where
    count came from ('sysconf' or 'override': FASTSEQ_MACHINE_CPUS), why FASTSEQ_MACHINE_CPUS
    was ignored ('' if it was not), and the most parts a large product is cut into
    (most_parts)."""

def tuning_choices(
    cell: str, scalar_size: int, T: int, B: int, I: int, H: int, P: int = 0
) -> dict[str, str | int | bool]:
    """The tuning choices (k_slice, k_block_rows, fuse_projection, few_rows_projection,
    projection_parts) a forward call of this shape would make now."""

def rnn_forward(
    x: _Float,
    w_ih: _Float,
    w_hh: _Float,
    b_ih: _Float | None = None,
    b_hh: _Float | None = None,
    h0: _Float | None = None,
    lengths: _Lengths | None = None,
    reverse: bool = False,
    training: bool = False,
    nonlinearity: str = "tanh",
) -> tuple[_Float, _Float, Reserve | None]:
    """Elman RNN over a whole sequence -> (y, h_n, reserve). See fastseq.backends."""

def lstm_forward(
    x: _Float,
    w_ih: _Float,
    w_hh: _Float,
    b_ih: _Float | None = None,
    b_hh: _Float | None = None,
    h0: _Float | None = None,
    c0: _Float | None = None,
    lengths: _Lengths | None = None,
    reverse: bool = False,
    training: bool = False,
    w_hr: _Float | None = None,
) -> tuple[_Float, _Float, _Float, Reserve | None]:
    """LSTM over a whole sequence -> (y, h_n, c_n, reserve); with w_hr (P, H), the projected
    LSTM (torch's proj_size): h, h0, h_n and y are P wide, w_hh is (4H, P). See
    fastseq.backends."""

def gru_forward(
    x: _Float,
    w_ih: _Float,
    w_hh: _Float,
    b_ih: _Float | None = None,
    b_hh: _Float | None = None,
    h0: _Float | None = None,
    lengths: _Lengths | None = None,
    reverse: bool = False,
    training: bool = False,
    reset_after: bool = True,
) -> tuple[_Float, _Float, Reserve | None]:
    """GRU over a whole sequence -> (y, h_n, reserve). See fastseq.backends."""

def rnn_backward(
    reserve: Reserve, dy: _Float, dh_n: _Float | None = None, *,
    accumulate: dict[str, _Float] | None = None, need_dx: bool = True,
) -> dict[str, _Float | None]:
    """Backward of rnn_forward -> dict(dx, dh0, dw_ih, dw_hh, db_ih, db_hh); with
    accumulate, the parameter gradients are added into its arrays (see fastseq.backends)."""

def lstm_backward(
    reserve: Reserve, dy: _Float, dh_n: _Float | None = None, dc_n: _Float | None = None, *,
    accumulate: dict[str, _Float] | None = None, need_dx: bool = True,
) -> dict[str, _Float | None]:
    """Backward of lstm_forward -> dict(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh), and dw_hr
    when the forward had w_hr; with accumulate, the parameter gradients are added into its
    arrays (see fastseq.backends)."""

def gru_backward(
    reserve: Reserve, dy: _Float, dh_n: _Float | None = None, *,
    accumulate: dict[str, _Float] | None = None, need_dx: bool = True,
) -> dict[str, _Float | None]:
    """Backward of gru_forward -> dict(dx, dh0, dw_ih, dw_hh, db_ih, db_hh); with
    accumulate, the parameter gradients are added into its arrays (see fastseq.backends)."""

def forward(
    cell: str,
    x: _Float,
    params: dict[str, _Float],
    *,
    h0: _Float | None = None,
    c0: _Float | None = None,
    lengths: _Lengths | None = None,
    reverse: bool = False,
    training: bool = False,
) -> tuple[_Float, _Float, _Float | None, Reserve | None]:
    """Any cell of cell_registry() by name over a whole sequence -> (y, h_n, c_n, reserve),
    c_n None for a cell without a cell state; params maps the cell's parameter names (w_ih,
    w_hh, w_hr when projected, b_ih and b_hh, both or neither) to arrays. The same kernels
    and bits as the family's function (rnn_forward, lstm_forward, gru_forward)."""

def backward(
    reserve: Reserve, dy: _Float, dh_n: _Float | None = None, dc_n: _Float | None = None, *,
    accumulate: dict[str, _Float] | None = None, need_dx: bool = True,
) -> dict[str, _Float | None]:
    """Backward of forward() (or of any family's forward) -> the family backward's dict."""
