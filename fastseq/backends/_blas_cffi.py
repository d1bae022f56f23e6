"""OpenBLAS's row-major GEMMs from the scipy-openblas32 wheel, bound through cffi in ABI mode.

Holds only the binding: ``ffi`` (whose ``from_buffer`` turns arrays into pointers inside
nopython code), ``sgemm`` and ``dgemm``. Importing raises (ImportError, OSError) when the
library cannot be loaded; the numba backend then falls back to jitted loops.
"""
from __future__ import annotations

import glob
import os

import cffi
import scipy_openblas32

__all__ = ["ffi", "sgemm", "dgemm", "library_path", "set_num_threads", "get_num_threads"]

# CBLAS enums as OpenBLAS defines them.
ROW_MAJOR = 101
NO_TRANS = 111
TRANS = 112

ffi = cffi.FFI()
# scipy-openblas32 is the LP64 build (32-bit ints) with every symbol prefixed "scipy_".
ffi.cdef(
    """
    void scipy_cblas_sgemm(int order, int transa, int transb, int m, int n, int k,
                           float alpha, const float *a, int lda, const float *b, int ldb,
                           float beta, float *c, int ldc);
    void scipy_cblas_dgemm(int order, int transa, int transb, int m, int n, int k,
                           double alpha, const double *a, int lda, const double *b, int ldb,
                           double beta, double *c, int ldc);
    void scipy_openblas_set_num_threads(int num_threads);
    int scipy_openblas_get_num_threads(void);
    """
)


def library_path() -> str:
    """Path of the shared library the scipy-openblas32 wheel ships."""
    lib_dir = scipy_openblas32.get_lib_dir()
    name = scipy_openblas32.get_library()  # "scipy_openblas"
    for pattern in (f"lib{name}.so", f"lib{name}.dylib", f"lib{name}*.dll", f"{name}*.dll"):
        found = sorted(glob.glob(os.path.join(lib_dir, pattern)))
        if found:
            return found[0]
    raise OSError(f"no {name} shared library in {lib_dir}")


_lib = ffi.dlopen(library_path())
sgemm = _lib.scipy_cblas_sgemm
dgemm = _lib.scipy_cblas_dgemm
get_num_threads = _lib.scipy_openblas_get_num_threads


def set_num_threads(n: int) -> None:
    """OpenBLAS's thread count for the library's next products (process-wide)."""
    if _lib.scipy_openblas_get_num_threads() != n:
        _lib.scipy_openblas_set_num_threads(n)
