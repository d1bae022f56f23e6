"""backward(..., need_dx=False): dx is None and every other gradient is what the full
backward gives, bit for bit, on every backend (the cpp kernels skip dx's product; the other
backends' dx is dropped), with and without lengths and ``accumulate``."""
from __future__ import annotations

import numpy as np
import pytest

import fastseq
from problems import ALL_CELLS, PROJECTED, backward, forward, make_problem

BACKENDS = fastseq.available_backends()


def _grads(p, backend, **kw):
    with fastseq.use_backend(backend):
        _, ctx = forward(p)
        return backward(p, ctx, **kw)


def _supports(backend, cell):
    return cell not in PROJECTED or getattr(fastseq.backends.backend_module(backend),
                                            "PROJECTION", False)


@pytest.mark.parametrize("lengths", [None, "vary"])
@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_without_dx_the_other_gradients_keep_their_bits(backend, cell, lengths):
    if not _supports(backend, cell):
        pytest.skip(f"the {backend} backend has no projected LSTM")
    p = make_problem(cell, T=6, B=5, I=7, H=12, lengths=lengths, seed=2)
    full = _grads(p, backend)
    part = _grads(p, backend, need_dx=False)
    assert part["dx"] is None and full["dx"] is not None
    assert part.keys() == full.keys()
    for name, value in full.items():
        if name != "dx" and value is not None:
            np.testing.assert_array_equal(part[name], value, err_msg=name)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_without_dx_accumulates_as_with_it(backend, cell):
    p = make_problem(cell, T=5, B=4, I=6, H=10, seed=4)
    targets = {}
    for need_dx in (True, False):
        acc = {k: np.ones_like(v) for k, v in
               (("dw_ih", p.w_ih), ("dw_hh", p.w_hh), ("db_ih", p.b_ih), ("db_hh", p.b_hh))}
        grads = _grads(p, backend, accumulate=acc, need_dx=need_dx)
        assert (grads["dx"] is None) == (not need_dx)
        targets[need_dx] = acc
    for name in targets[True]:
        np.testing.assert_array_equal(targets[False][name], targets[True][name], err_msg=name)


def test_need_dx_must_be_a_bool():
    p = make_problem("lstm", seed=1)
    _, ctx = forward(p)
    with pytest.raises(TypeError, match="need_dx"):
        backward(p, ctx, need_dx="no")


@pytest.mark.parametrize("kind, options", [
    ("RNN", {}), ("GRU", {}), ("LSTM", {}), ("LSTM", {"proj_size": 3}),
])
@pytest.mark.parametrize("backend", BACKENDS)
def test_layer_backward_without_dx(backend, kind, options):
    """A layer's backward(need_dx=False): dx is None; the initial states' and every
    parameter's gradients keep their bits, through two bidirectional layers and dropout
    (only the first layer skips its dx: the second one's is the first one's dy)."""
    if options and not _supports(backend, "lstmp"):
        pytest.skip(f"the {backend} backend has no projected LSTM")
    T, B, I, H = 5, 3, 4, 6
    x = np.random.default_rng(0).standard_normal((B, T, I))
    results = []
    for need_dx in (True, False):
        layer = getattr(fastseq, kind)(I, H, num_layers=2, bidirectional=True, dropout=0.3,
                                       batch_first=True, seed=1, dtype=np.float64, **options)
        with fastseq.use_backend(backend):
            y, state = layer(x, lengths=[5, 2, 4])
            dy = np.random.default_rng(1).standard_normal(y.shape)
            dx, dstate = layer.backward(dy, need_dx=need_dx)
        results.append((dx, dstate, {n: p.grad for n, p in layer.named_parameters()}))
    (dx, dstate, grads), (no_dx, no_dstate, no_grads) = results
    assert no_dx is None and dx.shape == x.shape
    as_tuple = lambda s: s if isinstance(s, tuple) else (s,)  # noqa: E731  (LSTM: (dh0, dc0))
    for a, b in zip(as_tuple(dstate), as_tuple(no_dstate), strict=True):
        np.testing.assert_array_equal(a, b)
    assert grads.keys() == no_grads.keys()
    for name in grads:
        np.testing.assert_array_equal(grads[name], no_grads[name], err_msg=name)


def test_layer_need_dx_must_be_a_bool():
    layer = fastseq.GRU(2, 3, seed=0)
    layer(np.zeros((2, 1, 2)))
    with pytest.raises(TypeError, match="need_dx"):
        layer.backward(np.zeros((2, 1, 3)), need_dx="no")
