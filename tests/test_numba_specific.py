"""What only the numba backend has: its GEMM wrapper (OpenBLAS through cffi, or jitted
loops), the fallback when OpenBLAS cannot be loaded, and the on-disk cache (which a cffi
function held as a global would defeat: the functions take it as an argument)."""
import os
import textwrap

import numpy as np
import pytest

import fastseq

if "numba" not in fastseq.available_backends():
    pytest.skip("numba is not installed", allow_module_level=True)

from fastseq.backends import backend_module  # noqa: E402
from subprocesses import run_python  # noqa: E402
from problems import CELLS, assert_matches, make_problem, reference_of, run, tolerance  # noqa: E402

nb = backend_module("numba")


def test_openblas_is_loaded_here():
    assert nb.BLAS_ERROR is None
    assert nb._GEMM[np.dtype(np.float32)] is not None
    assert nb._GEMM[np.dtype(np.float64)] is not None


# ---- the GEMM wrapper ---------------------------------------------------------------------


@pytest.mark.parametrize("use_blas", [True, False], ids=["openblas", "loops"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_gemm_on_blocks_with_offsets_and_strides(use_blas, dtype, ta, tb, beta):
    """C block = alpha·op(A block)·op(B block) + beta·C block, blocks inside larger arrays."""
    rng = np.random.default_rng(int(ta) + 2 * int(tb))
    m, n, k = 5, 7, 3
    A = rng.standard_normal((12, 11)).astype(dtype)
    B = rng.standard_normal((13, 12)).astype(dtype)
    C = rng.standard_normal((9, 15)).astype(dtype)
    a_blk = A[2:2 + k, 1:1 + m] if ta else A[2:2 + m, 1:1 + k]  # stored as op(A) requires
    b_blk = B[3:3 + n, 4:4 + k] if tb else B[3:3 + k, 4:4 + n]
    expected = C.copy()
    expected[1:1 + m, 2:2 + n] = (1.5 * (a_blk.T if ta else a_blk) @ (b_blk.T if tb else b_blk)
                                  + beta * C[1:1 + m, 2:2 + n])
    blas = nb._GEMM[np.dtype(dtype)] if use_blas else None
    got = C.copy()
    nb.primitives.gemm(blas, ta, tb, m, n, k, 1.5, A.ravel(), 2 * 11 + 1, 11, B.ravel(), 3 * 12 + 4, 12,
             beta, got.reshape(-1), 1 * 15 + 2, 15)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)  # outside the block: untouched


# ---- the vectorised exp ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-14), (np.float32, 4e-7)])
def test_vexp_accuracy_and_special_values(dtype, rtol):
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.uniform(-80, 80, 5000), rng.uniform(-1, 1, 1000),
                        [0.0, -0.0, 1e-30, -1e-30, 80.0, -80.0]]).astype(dtype)
    a = v.copy()
    nb.primitives.vexp(a, a.size, nb.primitives.exp_workspace(a.size, a))
    exact = np.exp(v.astype(np.float64))
    assert np.max(np.abs(a / exact - 1)) <= rtol
    special = np.array([np.nan, np.inf, -np.inf, 1e6, -1e6], dtype)
    nb.primitives.vexp(special, special.size, nb.primitives.exp_workspace(special.size, special))
    assert np.isnan(special[0])
    # overflow is +inf (so sigmoid(-inf) is exactly 0); underflow clamps to a tiny normal
    assert special[1] == np.inf and special[3] == np.inf
    assert 0 <= special[2] < 1e-30 and 0 <= special[4] < 1e-30


# ---- fallback without OpenBLAS ------------------------------------------------------------


@pytest.fixture
def without_blas(monkeypatch):
    """The kernels as they run when OpenBLAS could not be loaded: jitted-loop GEMMs."""
    monkeypatch.setattr(nb, "_GEMM", {np.dtype(np.float32): None, np.dtype(np.float64): None})


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", CELLS)
def test_loop_gemms_match_reference(without_blas, cell, dtype):
    p = make_problem(cell, T=6, B=4, I=5, H=7, dtype=dtype, lengths="vary",
                     reverse=cell.startswith("gru"), seed=3)
    assert_matches(run(p, "numba"), reference_of(p), tolerance(dtype), where=f"loops {cell}")


def test_unloadable_openblas_warns_once_and_still_computes():
    """dlopen fails (a missing or broken library): one RuntimeWarning, then correct results."""
    code = textwrap.dedent("""
        import json, warnings
        import cffi

        def refuse(self, *args, **kwargs):
            raise OSError("libscipy_openblas.so: cannot open shared object file (test)")

        cffi.FFI.dlopen = refuse
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import numpy as np
            import fastseq
            from fastseq.backends import backend_module
            nb = backend_module("numba")
            rng = np.random.default_rng(0)
            x = rng.standard_normal((4, 2, 3))
            w_ih, w_hh = rng.standard_normal((16, 3)), rng.standard_normal((16, 4))
            dy = rng.standard_normal((4, 2, 4))
            outs = {}
            for name in ("numba", "reference"):
                m = backend_module(name)
                y, h, c, res = m.lstm_forward(x, w_ih, w_hh, None, None, None, None,
                                              np.array([4, 3]), True, True)
                g = m.lstm_backward(res, dy, None, None)
                outs[name] = dict(g, y=y, h_n=h, c_n=c)
            err = max(fastseq.max_error(v, outs["reference"][k])
                      for k, v in outs["numba"].items() if v is not None)
        print(json.dumps(dict(err=err, blas_error=nb.BLAS_ERROR,
                              gemm=[v is None for v in nb._GEMM.values()],
                              messages=[f"{w.category.__name__}: {w.message}" for w in caught])))
    """)
    result = run_python(code)
    assert result["gemm"] == [True, True]
    assert "cannot open shared object" in result["blas_error"]
    assert result["err"] <= 1e-10
    assert len(result["messages"]) == 1, result["messages"]
    assert result["messages"][0].startswith("RuntimeWarning")
    assert "OpenBLAS" in result["messages"][0]


# ---- the on-disk cache --------------------------------------------------------------------

CACHE_PROBE = textwrap.dedent("""
    import json, warnings
    warnings.simplefilter("error")          # any NumbaWarning (e.g. "cannot cache") fails
    import numpy as np
    from fastseq.backends import backend_module
    nb = backend_module("numba")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 4)).astype(np.float32)
    w_ih = rng.standard_normal((9, 4)).astype(np.float32)
    w_hh = rng.standard_normal((9, 3)).astype(np.float32)
    y, h, res = nb.gru_forward(x, w_ih, w_hh, None, None, None, None, False, True, True)
    nb.gru_backward(res, np.ones_like(y), None)
    stats = {name: [sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values())]
             for name, f in (("forward", nb.FORWARD["gru"]), ("backward", nb.BACKWARD["gru"]))}
    print(json.dumps(stats))
""")


def test_kernels_are_cached_on_disk_without_warnings(tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path)}
    first = run_python(CACHE_PROBE, env)   # compiles and writes the cache
    second = run_python(CACHE_PROBE, env)  # loads it
    assert all(misses == 1 for hits, misses in first.values()), first
    assert all(hits == 1 and misses == 0 for hits, misses in second.values()), second
    assert any(name.endswith(".nbi") for _, _, files in os.walk(tmp_path) for name in files)


def test_import_of_the_backend_module_does_not_compile():
    """Compilation waits for the first call: importing the backend stays cheap."""
    code = textwrap.dedent("""
        import json
        from fastseq.backends import backend_module
        nb = backend_module("numba")
        kernels = [*nb.FORWARD.values(), *nb.BACKWARD.values(), nb.primitives.gemm]
        print(json.dumps([len(f.signatures) for f in kernels]))
    """)
    assert run_python(code) == [0] * (2 * len(nb.CELLS) + 1)


def test_products_run_on_fastseq_thread_count():
    """libfastseq pins the shared OpenBLAS to one thread; numba's products get fastseq's count."""
    from fastseq.backends import _blas_cffi

    p = make_problem("lstm", dtype=np.float32)
    previous = fastseq.get_num_threads()
    try:
        cpus = len(os.sched_getaffinity(0))  # OpenBLAS grants at most its CPUs
        for n in sorted({min(2, cpus), 1}, reverse=True):
            fastseq.set_num_threads(n)
            run(p, "numba", training=False)
            assert _blas_cffi.get_num_threads() == n
    finally:
        fastseq.set_num_threads(previous)


def test_every_driver_is_keyed_by_the_package_sources():
    """A driver inlines its cell's steps and the primitives, but numba's cache checks only
    the driver's own file: each driver's closure holds a digest of every source file of
    the package, so an edited step is a new cache key, never a stale hit."""
    import hashlib
    import pathlib

    from fastseq.backends.numba import driver

    files = sorted(pathlib.Path(driver.__file__).parent.glob("*.py"))
    assert {"driver.py", "primitives.py", "rnn.py", "lstm.py", "gru.py"} <= {f.name for f in files}
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
    assert driver.SOURCE_DIGEST == digest
    for name in nb.CELLS:
        for fn in (nb.FORWARD[name], nb.BACKWARD[name]):
            assert digest in [c.cell_contents for c in fn.py_func.__closure__], name
