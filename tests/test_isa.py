"""Every kernel variant (instruction set) this CPU runs, at 1 and 2 threads, against the
reference: a representative subset of test_backends.py — every cell, float64 and float32,
lengths, reverse, H not a multiple of any vector width, B not a multiple of any tile height,
and sizes large enough for the thread team to engage."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import fastseq
from problems import (CELLS, assert_matches, assert_same_bits_for_any_thread_count,
                      make_problem, reference_of, run, tolerance)

pytest.importorskip("fastseq._core")
ISAS = fastseq.available_isas()


@pytest.fixture(params=ISAS)
def isa(request):
    before = fastseq.get_isa()
    fastseq.set_isa(request.param)
    yield request.param
    fastseq.set_isa(before)


@pytest.fixture(params=[1, 2])
def threads(request):
    before = fastseq.get_num_threads()
    fastseq.set_num_threads(request.param)
    yield request.param
    fastseq.set_num_threads(before)


# H = 100 and 257 give the single-gate cells' forward several groups of blocks per thread
# (the last narrower, its last block partial, down to one unit); B = 17 with H > 128 takes
# the k-blocked forward product; B = 1 with several blocks per thread, H mod 16 = 4 and 1.
SHAPES = [(1, 1, 1, 1), (6, 1, 5, 17), (4, 3, 40, 33), (3, 7, 9, 70), (5, 19, 8, 64),
          (3, 5, 12, 130), (5, 8, 6, 100), (3, 17, 4, 257), (4, 1, 7, 100), (3, 1, 6, 257)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,B,I,H", SHAPES)
def test_variant_matches_reference(isa, threads, cell, dtype, T, B, I, H):
    p = make_problem(cell, T=T, B=B, I=I, H=H, dtype=dtype,
                     lengths="vary" if B > 1 else None, reverse=(T + H) % 2 == 0, seed=T * B + H)
    assert_matches(run(p, "cpp"), reference_of(p), tolerance(dtype),
                   where=f"cpp/{isa}/{threads}t {cell}")


# B >= 64 without lengths and panels this small: the LSTM's forward folds the input
# projection into the step product (W_ih's panel above W_hh's, k-slices over x_t then h); I
# below, at and across one k-slice (128), H with partial blocks and several blocks per
# thread. Every cell runs them.
FUSED_SHAPES = [(3, 64, 1, 17), (2, 65, 130, 40), (2, 64, 7, 257), (2, 70, 300, 33)]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,B,I,H", FUSED_SHAPES)
def test_variant_matches_reference_projection_in_steps(isa, threads, cell, dtype, T, B, I, H,
                                                      reverse):
    p = make_problem(cell, T=T, B=B, I=I, H=H, dtype=dtype, reverse=reverse, seed=B + H)
    assert_matches(run(p, "cpp"), reference_of(p), tolerance(dtype),
                   where=f"cpp/{isa}/{threads}t {cell}")


@pytest.mark.parametrize("lengths", ["vary", None])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("B,H", [(9, 75), (17, 257), (12, 48), (44, 48), (1, 257), (64, 48)])
def test_same_bits_for_any_thread_count(isa, cell, B, H, lengths):
    """The README's determinism contract: every output and gradient has the same bits on 1,
    2 and 3 threads, and on repeated calls. A unit's product and epilogue do not depend on
    which thread owns it, and the large products are cut into parts fixed by their shape
    (OpenBLAS's AVX2 kernels give a block of rows other bits than the whole product, so a
    split by thread count would differ). H = 257 cuts the gated cells' projection into
    column parts and their weight gradients into row parts; T*B = 512 at B = 64, dx into two
    row parts (the LSTM without lengths there folds its projection into the steps)."""
    p = make_problem(cell, T=8 if B >= 44 else 4, B=B, I=20, H=H, dtype=np.float32,
                     lengths=lengths, seed=3)
    assert_same_bits_for_any_thread_count(p)


def test_set_isa_refuses_unknown_names():
    with pytest.raises(ValueError, match="available"):
        fastseq.set_isa("sse1")
    assert fastseq.get_isa() in ISAS
    assert ISAS[-1] == "portable"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", CELLS)
def test_nan_in_padding_changes_nothing(backend, cell, dtype):
    """Padding rows of x (t >= lengths[b]) are never read: NaN there leaves every output and
    gradient as with finite padding (PyTorch's packed sequences ignore it too)."""
    p = make_problem(cell, T=6, B=4, I=5, H=7, dtype=dtype, lengths=[6, 2, 4, 1], seed=11)
    x = p.x.copy()
    for b, n in enumerate(p.lengths):
        x[n:, b] = np.nan
    finite = run(p, backend)
    with_nan = run(dataclasses.replace(p, x=x), backend)
    for name, value in finite.items():
        if value is None:
            continue
        assert np.isfinite(with_nan[name]).all(), f"{backend}: NaN reached {name}"
        np.testing.assert_array_equal(value, with_nan[name], err_msg=name)


# ---- FASTSEQ_ISA naming a variant that is not available ----------------------------------

ENV_PROBE = """
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import fastseq
    fastseq.get_backend()
    isa = fastseq.get_isa()
print(json.dumps(dict(isa=isa, messages=[f"{w.category.__name__}: {w.message}" for w in caught])))
"""


@pytest.mark.parametrize("value", ["bogus", "AVX2", " portable"])
def test_unavailable_isa_in_environment_warns(value):
    from subprocesses import run_python

    result = run_python(ENV_PROBE, {"FASTSEQ_ISA": value, "FASTSEQ_BACKEND": "cpp"})
    assert result["isa"] == ISAS[0]
    assert len(result["messages"]) == 1, result["messages"]
    message = result["messages"][0]
    assert message.startswith("RuntimeWarning: ") and "FASTSEQ_ISA" in message
    assert repr(value) in message
    for name in ISAS:
        assert name in message


def test_available_isa_in_environment_is_silent():
    from subprocesses import run_python

    result = run_python(ENV_PROBE, {"FASTSEQ_ISA": ISAS[-1], "FASTSEQ_BACKEND": "cpp"})
    assert result == dict(isa=ISAS[-1], messages=[])


# T·B <= 32 rows: the input projection on the micro-kernel, W_ih's rows as the tile rows and
# Xᵀ as a panel of 1-4 vectors (loops/forward.hpp, project_few_rows), or OpenBLAS where the
# ISA's vectors would need more (float64 on AVX2 from 17 rows); 33 rows: OpenBLAS always;
# fewer rows than half a vector, or one row, OpenBLAS too (tuning.hpp, kFewRowsMin).
# Each W_ih at least 64 KiB for the RNN in float32 (H·I > 16384), the smallest L2 that
# set_cache_sizes takes, so that tiny_l2 sends all of them (33 rows aside) to the kernel.
FEW_ROWS = [(1, 1, 200, 90), (25, 1, 300, 70), (8, 4, 170, 100), (2, 16, 130, 130),
            (11, 3, 260, 66), (3, 11, 130, 130), (5, 1, 200, 90), (2, 1, 130, 130)]
VECTOR_BYTES = {"avx512": 64, "avx2": 32, "portable": 16}


def takes_few_rows(isa, dtype, T, B):
    lanes = VECTOR_BYTES[isa] // np.dtype(dtype).itemsize
    # tuning.hpp: kFewRowsMin, kFewRowsMax, half a vector, at most 4 vectors (kFewRowsVectors)
    return 2 <= T * B <= 32 and 2 * T * B >= lanes and T * B <= 4 * lanes


@pytest.fixture
def tiny_l2():
    """An L2 of 64 KiB: every W_ih here is larger, so the few-rows path takes them all."""
    fastseq.set_cache_sizes(l2="64K")
    yield
    fastseq.reset_cache_sizes()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,B,I,H", FEW_ROWS)
def test_few_rows_projection_matches_reference(isa, threads, tiny_l2, cell, dtype, T, B, I, H):
    choice = fastseq.caches.tuning_choices(cell, np.dtype(dtype).name, T, B, I, H)
    assert choice["few_rows_projection"] == takes_few_rows(isa, dtype, T, B)
    p = make_problem(cell, T=T, B=B, I=I, H=H, dtype=dtype, lengths="vary" if B > 1 else None,
                     seed=T + B + I)
    assert_matches(run(p, "cpp"), reference_of(p), tolerance(dtype),
                   where=f"cpp/{isa}/{threads}t {cell} T*B={T * B}")


@pytest.mark.parametrize("cell", CELLS)
def test_few_rows_projection_same_bits_for_any_thread_count(isa, tiny_l2, cell):
    """W_ih's 257·G rows go in chunks of 64 fixed by the shape: the bits of every output do
    not depend on which thread ran which chunk."""
    p = make_problem(cell, T=25, B=1, I=300, H=257, dtype=np.float32, seed=4)
    assert_same_bits_for_any_thread_count(p)
