"""One step of one sequence (T = B = 1, a stream fed step by step) takes its step products
straight from the weights, as GEMVs, without packing panels (loops/layout.hpp,
direct_products): every cell, with and without the initial state, a length of 0 or 1,
forward and backward, on every instruction set, against the reference; the same bits on 1,
2 and 3 threads; and a stream stepped call by call agrees with the whole sequence run at
once (within the tolerance: the two take their products in other orders)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import fastseq
from problems import (ALL_CELLS, LSTM_CELLS, assert_matches,
                      assert_same_bits_for_any_thread_count, make_problem, reference_of, run,
                      tolerance)

pytest.importorskip("fastseq._core")

# H: one partial vector block; several groups of blocks (a team of 2 engages from about
# H = 100 for the LSTM); a projected LSTM's P = H // 2 with a partial block. I up to 300.
SHAPES = [(5, 17), (7, 100), (300, 130), (6, 257)]


@pytest.fixture(params=fastseq.available_isas())
def isa(request):
    before = fastseq.get_isa()
    fastseq.set_isa(request.param)
    yield request.param
    fastseq.set_isa(before)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("lengths", [None, [1], [0]])
@pytest.mark.parametrize("init_state", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("I,H", SHAPES)
def test_one_step_matches_the_reference(isa, cell, dtype, init_state, lengths, threads, I, H):
    p = make_problem(cell, T=1, B=1, I=I, H=H, dtype=dtype, init_state=init_state,
                     lengths=lengths, reverse=H % 2 == 0, seed=I + H)
    before = fastseq.get_num_threads()
    fastseq.set_num_threads(threads)
    try:
        got = run(p, "cpp")
    finally:
        fastseq.set_num_threads(before)
    assert_matches(got, reference_of(p), tolerance(dtype), where=f"{isa}/{threads}t {cell}")


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_one_step_same_bits_for_any_thread_count(isa, cell):
    assert_same_bits_for_any_thread_count(
        make_problem(cell, T=1, B=1, I=300, H=257, dtype=np.float32, seed=5))


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_a_stream_stepped_call_by_call_matches_the_whole_sequence(isa, cell):
    """The step-by-step use the direct products are for: T calls of one step, each fed the
    state the last one returned, against one call over the T steps."""
    T = 6
    p = make_problem(cell, T=T, B=1, I=40, H=70, dtype=np.float64, seed=9)
    whole = run(p, "cpp", training=False)
    h, c = p.h0, p.c0
    ys = []
    for t in range(T):
        step = dataclasses.replace(p, x=p.x[t:t + 1], h0=h, c0=c)
        out = run(step, "cpp", training=False)
        ys.append(out["y"])
        h, c = out["h_n"], out.get("c_n")
    assert fastseq.max_error(np.concatenate(ys), whole["y"]) <= 1e-12
    assert fastseq.max_error(h, whole["h_n"]) <= 1e-12
    if cell in LSTM_CELLS:
        assert fastseq.max_error(c, whole["c_n"]) <= 1e-12
