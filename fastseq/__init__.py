"""fastseq: fused CPU kernels for RNN, LSTM and GRU, with a NumPy-first API."""
# scipy_openblas32 is imported first so that its libscipy_openblas.so is already loaded
# when fastseq._core needs it: this is what lets in-place and editable builds find it.
import scipy_openblas32 as _scipy_openblas32  # noqa: F401

from ._version import __version__
from . import functional
from .backends import available_backends, get_backend, set_backend, use_backend
from .checking import GradcheckError, GradcheckReport, check_against_reference, gradcheck, max_error
from .config import show_config
from .threads import get_num_threads, set_num_threads
from .memory import cached_bytes, empty_cache
from .isa import available_isas, get_isa, set_isa
from .caches import get_cache_sizes, reset_cache_sizes, set_cache_sizes
from . import cells, init, losses, optim
from .linear import Embedding, Linear
from .optim import clip_grad_norm_
from .paths import get_include, get_library
from .parameter import Module, Parameter
from .recurrent import GRU, LSTM, RNN
from .serialization import load, save
from . import _threadpoolctl

_threadpoolctl.install()  # threadpoolctl controls fastseq's pool once it is imported

__all__ = [
    "__version__",
    "functional", "cells",
    "available_backends", "get_backend", "set_backend", "use_backend",
    "gradcheck", "GradcheckError", "GradcheckReport", "check_against_reference", "max_error",
    "show_config", "get_num_threads", "set_num_threads", "empty_cache", "cached_bytes",
    "available_isas", "get_isa", "set_isa",
    "get_cache_sizes", "set_cache_sizes", "reset_cache_sizes",
    "RNN", "LSTM", "GRU", "Linear", "Embedding", "Module", "Parameter",
    "losses", "optim", "init", "clip_grad_norm_", "save", "load",
    "get_include", "get_library",
]
