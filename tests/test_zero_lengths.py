"""Length 0, fastseq's choice for an empty sequence, on every backend.

A sequence of length 0 has zero outputs and keeps its initial state (h_n = h0, c_n = c0);
in backward its state gradient passes straight through (dh0 = dh_n, dc0 = dc_n), its dx is
zero and it adds nothing to the parameter gradients. The oracle for the other sequences
and for the parameter gradients is the same problem with the empty sequences left out of
the batch; the backends are then compared with the reference, in both dtypes, forward and
reverse, on 1 and 2 threads; the layers with stacked bidirectional LSTM/GRU/RNN.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import fastseq
from problems import CELLS, assert_matches, make_problem, reference_of, run, tolerance

LENGTHS = [0, 6, 2, 0, 1]  # T = 6: empty sequences first and in the middle, one full
PARAM_GRADS = ("dw_ih", "dw_hh", "db_ih", "db_hh")


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    before = fastseq.get_num_threads()
    fastseq.set_num_threads(request.param)
    yield request.param
    fastseq.set_num_threads(before)


def _subset(p, keep):
    """The problem restricted to the sequences ``keep`` (a boolean mask over the batch)."""
    pick = {name: getattr(p, name)[keep] for name in ("h0", "c0", "dh_n", "dc_n")
            if getattr(p, name) is not None}
    pick.update({name: getattr(p, name)[:, keep] for name in ("x", "dy")})
    return replace(p, lengths=p.lengths[keep], **pick)


def _assert_empty_sequences(p, out):
    """What length 0 means, on the outputs ``out`` of problem ``p``."""
    empty = p.lengths == 0
    assert empty.any()
    assert np.all(out["y"][:, empty] == 0)
    assert np.all(out["dx"][:, empty] == 0)
    for state, grad in (("h", "dh"), ("c", "dc")):
        if f"{state}_n" in out:
            assert np.array_equal(out[f"{state}_n"][empty], getattr(p, f"{state}0")[empty])
            assert np.array_equal(out[f"{grad}0"][empty], getattr(p, f"{grad}_n")[empty])


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELLS)
def test_reference_treats_an_empty_sequence_as_absent(cell, reverse):
    p = make_problem(cell, T=6, B=5, I=4, H=7, lengths=LENGTHS, reverse=reverse, seed=11)
    out = run(p, "reference")
    _assert_empty_sequences(p, out)
    keep = p.lengths > 0
    rest = run(_subset(p, keep), "reference")
    for name, value in rest.items():
        if value is None:
            assert out[name] is None
            continue
        got = out[name] if name in PARAM_GRADS else (
            out[name][:, keep] if name in ("y", "dx") else out[name][keep])
        assert fastseq.max_error(got, value) <= 1e-12, name


@pytest.mark.parametrize("lengths", [LENGTHS, [0, 0, 0, 0, 0]], ids=["some", "all"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", CELLS)
def test_backends_match_the_reference(backend, cell, dtype, reverse, lengths, threads):
    p = make_problem(cell, T=6, B=5, I=4, H=9, dtype=dtype, lengths=lengths, reverse=reverse,
                     seed=3)
    got = run(p, backend)
    _assert_empty_sequences(p, got)
    if not any(lengths):  # nothing ran: no parameter gradient at all, exactly
        for name in PARAM_GRADS:
            assert np.all(got[name] == 0), name
    assert_matches(got, reference_of(p), tolerance(dtype),
                   f"{backend} {cell} {np.dtype(dtype)} reverse={reverse} lengths={lengths}")


LAYERS = {"rnn": fastseq.RNN, "lstm": fastseq.LSTM, "gru": fastseq.GRU}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_stacked_bidirectional_layers(active_backend, name, dtype, threads):
    """Two bidirectional layers: the empty sequence keeps every layer's initial state and
    passes every state gradient through; the others and the parameter gradients are those
    of the batch without it."""
    T, B, I, H = 5, 4, 3, 6
    lengths = np.array([3, 0, 5, 0])
    rng = np.random.default_rng(7)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    states = [rng.standard_normal((4, B, H)).astype(dtype) for _ in range(2 if name == "lstm" else 1)]
    dy = rng.standard_normal((B, T, 2 * H)).astype(dtype)
    dstates = [rng.standard_normal((4, B, H)).astype(dtype) for _ in states]
    pack = (lambda s: tuple(s)) if name == "lstm" else (lambda s: s[0])

    def run_layer(keep):
        layer = LAYERS[name](I, H, num_layers=2, bidirectional=True, batch_first=True,
                             dtype=dtype, seed=1)
        y, st = layer(x[keep], pack([s[:, keep] for s in states]), lengths=lengths[keep])
        dx, dst = layer.backward(dy[keep], pack([d[:, keep] for d in dstates]))
        st, dst = (list(st), list(dst)) if name == "lstm" else ([st], [dst])
        return y, st, dx, dst, {k: p.grad for k, p in layer.named_parameters()}

    y, st, dx, dst, grads = run_layer(np.ones(B, bool))
    empty = lengths == 0
    assert np.all(y[empty] == 0) and np.all(dx[empty] == 0)
    for s, s0, d, dn in zip(st, states, dst, dstates):
        assert np.array_equal(s[:, empty], s0[:, empty])
        assert np.array_equal(d[:, empty], dn[:, empty])
    y2, st2, dx2, dst2, grads2 = run_layer(~empty)
    tol = tolerance(dtype)
    assert fastseq.max_error(y[~empty], y2) <= tol
    assert fastseq.max_error(dx[~empty], dx2) <= tol
    for a, b in zip(st + dst, st2 + dst2):
        assert fastseq.max_error(a[:, ~empty], b) <= tol
    for key in grads:
        assert fastseq.max_error(grads[key], grads2[key]) <= tol, key
