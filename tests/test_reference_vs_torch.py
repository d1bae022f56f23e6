"""The reference against torch.nn (float64, error <= 1e-10): every output and gradient."""
import itertools

import pytest

from problems import PROJECTED, assert_matches, make_problem, run

torch_layers = pytest.importorskip("torch_layers", reason="torch is not installed")

TORCH_CELLS = ["rnn_tanh", "rnn_relu", "lstm", "lstmp", "gru"]


@pytest.mark.parametrize("cell", TORCH_CELLS)
@pytest.mark.parametrize("bias,init_state,lengths,reverse",
                         list(itertools.product([True, False], [True, False], [None, "vary"], [False, True])))
def test_reference_matches_torch(cell, bias, init_state, lengths, reverse):
    p = make_problem(cell, T=6, B=4, I=5, H=7, bias=bias, init_state=init_state,
                     lengths=lengths, reverse=reverse, seed=21)
    assert_matches(run(p, "reference"), torch_layers.torch_run(p), 1e-10, where=f"{cell}")


EDGE_SHAPES = [(1, 1, 1, 1), (1, 3, 2, 1), (7, 1, 3, 16), (3, 5, 9, 33)]


# A projection needs H >= 2 (0 < P < H).
@pytest.mark.parametrize("cell,T,B,I,H", [(c, *s) for c in TORCH_CELLS for s in EDGE_SHAPES
                                          if c not in PROJECTED or s[3] >= 2])
def test_reference_matches_torch_edge_shapes(cell, T, B, I, H):
    p = make_problem(cell, T=T, B=B, I=I, H=H, lengths="vary" if B > 1 else None, seed=5)
    assert_matches(run(p, "reference"), torch_layers.torch_run(p), 1e-10, where=f"{cell} {T, B, I, H}")


def test_reference_matches_torch_without_state_gradient():
    p = make_problem("lstm", lengths=[2, 5, 1], grad_state=False, init_state=False)
    assert_matches(run(p, "reference"), torch_layers.torch_run(p), 1e-10)
