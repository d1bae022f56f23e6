"""The LSTM with a projection (torch's ``proj_size``; the cell ``lstmp``): the functional
call and the layer on every backend that has it, against torch.nn.LSTM(proj_size=P)
(float64 <= 1e-9, float32 <= 2e-4), against finite differences (float64), and the
errors of bad shapes and options.

``PROJECTION_BACKENDS`` lists the backends that run the projection; every backend-level
test here runs on each of them.
"""
import itertools
import pickle

import numpy as np
import pytest

import fastseq
from fastseq import functional as F
from fastseq.backends import reference as reference_backend
from fastseq.checking import gradcheck, max_error
from fastseq.recurrent import GRU, LSTM, RNN
from problems import (assert_matches, backward, forward, gradcheck_problem, make_problem,
                      reference_of, run, tolerance)

PROJECTION_BACKENDS = ("reference", "cpp", "numba")

torch = pytest.importorskip("torch", reason="torch.nn.LSTM(proj_size) is the comparison")
torch_layers = pytest.importorskip("torch_layers")
from test_layers import run_ours, run_torch  # noqa: E402  (after the torch importorskip)

TORCH_TOL = {np.float64: 1e-9, np.float32: 2e-4}

# torch notes that its float32 CPU LSTM with a projection does not use oneDNN (its own
# fallback runs instead): a performance notice about torch, not about what is compared.
pytestmark = pytest.mark.filterwarnings(
    "ignore:LSTM with projections is not supported with oneDNN:UserWarning")


@pytest.fixture(params=PROJECTION_BACKENDS)
def projection_backend(request):
    """Each backend with a projection in turn, made the active one."""
    name = request.param
    if name not in fastseq.available_backends():
        pytest.skip(f"backend {name!r} is not available on this machine")
    assert getattr(fastseq.backends.backend_module(name), "PROJECTION", False), \
        f"{name} is in PROJECTION_BACKENDS but its module does not set PROJECTION = True"
    with fastseq.use_backend(name):
        yield name


# --------------------------------------------------------------------------- functional


OPTIONS = list(itertools.product([True, False], [True, False], [None, "vary"], [False, True]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias,init_state,lengths,reverse", OPTIONS)
def test_functional_matches_torch(projection_backend, dtype, bias, init_state, lengths, reverse):
    """Every output and gradient (dw_hr included) against one direction of torch's
    LSTM(proj_size=P); lengths through packed sequences (enforce_sorted=False), reverse as
    the reverse half of a bidirectional layer."""
    p = make_problem("lstmp", T=6, B=4, I=5, H=7, P=3, bias=bias, init_state=init_state,
                     lengths=lengths, reverse=reverse, seed=21, dtype=dtype)
    got = run(p, projection_backend)
    assert got["y"].shape == (6, 4, 3) and got["h_n"].shape == (4, 3) and got["c_n"].shape == (4, 7)
    assert got["dw_hr"].shape == (3, 7) and got["dw_hh"].shape == (28, 3)
    assert all(v is None or v.dtype == dtype for v in got.values())
    assert_matches(got, torch_layers.torch_run(p), TORCH_TOL[dtype], where=projection_backend)


@pytest.mark.parametrize("T,B,I,H,P", [(1, 1, 1, 2, 1), (3, 2, 2, 5, 4), (4, 3, 6, 9, 1)])
def test_functional_edge_sizes_match_torch(projection_backend, T, B, I, H, P):
    p = make_problem("lstmp", T=T, B=B, I=I, H=H, P=P, lengths="vary" if B > 1 else None, seed=5)
    assert_matches(run(p, projection_backend), torch_layers.torch_run(p), 1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("backend", [b for b in PROJECTION_BACKENDS if b != "reference"])
def test_functional_matches_the_reference(backend, dtype):
    """Backend against the float64 reference (1e-10 float64, 1e-4 float32)."""
    if backend not in fastseq.available_backends():
        pytest.skip(f"backend {backend!r} is not available on this machine")
    for lengths, reverse in [(None, False), ("vary", True)]:
        p = make_problem("lstmp", T=7, B=5, I=6, H=10, P=4, lengths=lengths, reverse=reverse,
                         seed=3, dtype=dtype)
        assert_matches(run(p, backend), reference_of(p), tolerance(dtype), where=backend)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("backend", [b for b in PROJECTION_BACKENDS if b != "reference"])
def test_layer_check_against_reference_covers_weight_hr(backend, dtype):
    if backend not in fastseq.available_backends():
        pytest.skip(f"backend {backend!r} is not available on this machine")
    layer = LSTM(4, 6, num_layers=2, bidirectional=True, proj_size=3, dtype=dtype, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 3, 4)).astype(dtype)
    errors = fastseq.check_against_reference(layer, {"x": x, "lengths": np.array([2, 5, 1])},
                                             backends=[backend])[backend]
    assert {"weight_hr_l0.grad", "weight_hr_l1_reverse.grad", "h_n", "c_n", "dx"} <= set(errors)


@pytest.mark.parametrize("lengths,reverse", [(None, False), ("vary", False), ("vary", True)])
def test_functional_gradcheck(projection_backend, lengths, reverse):
    """Central differences in float64 for x, every weight (w_hr too), the biases and both
    initial states: error <= 1e-6."""
    p = make_problem("lstmp", T=4, B=3, I=3, H=5, P=2, lengths=lengths, reverse=reverse, seed=7)
    errors = gradcheck_problem(p, projection_backend)
    assert "w_hr" in errors and max(errors.values()) <= 1e-6


def test_functional_accumulate_adds_dw_hr_too(projection_backend):
    p = make_problem("lstmp", T=4, B=3, I=3, H=5, P=2, lengths="vary", seed=2)
    plain = run(p, projection_backend)
    rng = np.random.default_rng(0)
    keys = ("dw_ih", "dw_hh", "dw_hr", "db_ih", "db_hh")
    start = {k: rng.standard_normal(plain[k].shape) for k in keys}
    into = {k: v.copy() for k, v in start.items()}
    _, ctx = forward(p)
    grads = backward(p, ctx, accumulate=into)
    for k in keys:
        assert grads[k] is into[k], k
        np.testing.assert_allclose(into[k], start[k] + plain[k], rtol=0, atol=1e-13, err_msg=k)
    _, ctx = forward(p)
    with pytest.raises(ValueError, match="dw_hr"):  # the projection's gradient is required
        backward(p, ctx, accumulate={k: v for k, v in into.items() if k != "dw_hr"})


def test_modified_w_hr_is_refused_by_the_backward(projection_backend):
    p = make_problem("lstmp", T=3, B=2, I=3, H=4, P=2, seed=1)
    _, ctx = forward(p)
    p.w_hr[0, 0] += 1.0
    with pytest.raises(RuntimeError, match="w_hr was modified in place"):
        backward(p, ctx)


def test_plain_lstm_has_no_dw_hr(projection_backend):
    got = run(make_problem("lstm", seed=4), projection_backend)
    assert "dw_hr" not in got


def test_a_backend_without_projection_is_refused(monkeypatch):
    """The functional layer asks the backend module (PROJECTION) before calling it."""
    monkeypatch.setattr(reference_backend, "PROJECTION", False)
    p = make_problem("lstmp", seed=0)
    with fastseq.use_backend("reference"), pytest.raises(NotImplementedError, match="'reference'"):
        forward(p)
    with fastseq.use_backend("reference"):  # the plain LSTM is unaffected
        forward(make_problem("lstm", seed=0))


def lstmp_args(**change):
    p = make_problem("lstmp", T=4, B=3, I=5, H=6, P=2, seed=0)
    args = dict(x=p.x, w_ih=p.w_ih, w_hh=p.w_hh, b_ih=p.b_ih, b_hh=p.b_hh, h0=p.h0, c0=p.c0,
                w_hr=p.w_hr)
    args.update(change)
    return args


@pytest.mark.parametrize("change,exc,words", [
    (dict(w_hh=np.zeros((24, 6))), ValueError, ["w_hh", "(4H, P)", "(24, 2)", "(24, 6)"]),
    (dict(h0=np.zeros((3, 6))), ValueError, ["h0", "(B, P)", "(3, 2)", "(3, 6)"]),
    (dict(c0=np.zeros((3, 2))), ValueError, ["c0", "(B, H)", "(3, 6)", "(3, 2)"]),
    (dict(w_hr=np.zeros((6, 6))), ValueError, ["w_hr", "(P, H)", "0 < P < H", "(6, 6)"]),
    (dict(w_hr=np.zeros((0, 6))), ValueError, ["w_hr", "0 < P < H", "(0, 6)"]),
    (dict(w_hr=np.zeros(6)), ValueError, ["w_hr", "(6,)"]),
    (dict(w_hr=np.zeros((2, 6), np.float32)), TypeError, ["w_hr", "float32", "float64"]),
    (dict(w_ih=np.zeros((8, 5))), ValueError, ["w_ih", "(24, 5)", "(8, 5)"]),
])
def test_functional_errors_name_the_argument(change, exc, words):
    with fastseq.use_backend("reference"), pytest.raises(exc) as info:
        F.lstm_forward(**lstmp_args(**change))
    for w in words:
        assert w in str(info.value), f"{w!r} not in {info.value}"


@pytest.mark.parametrize("name,shape,words", [
    ("dy", (4, 3, 6), ["dy", "(T, B, P)", "(4, 3, 2)", "(4, 3, 6)"]),
    ("dh_n", (3, 6), ["dh_n", "(B, P)", "(3, 2)"]),
    ("dc_n", (3, 2), ["dc_n", "(B, H)", "(3, 6)"]),
])
def test_backward_errors_name_the_argument(name, shape, words):
    with fastseq.use_backend("reference"):
        y, h_n, c_n, ctx = F.lstm_forward(**lstmp_args())
        grads = dict(dy=np.zeros_like(y), dh_n=np.zeros_like(h_n), dc_n=np.zeros_like(c_n))
        grads[name] = np.zeros(shape)
        with pytest.raises(ValueError) as info:
            F.lstm_backward(ctx, **grads)
    for w in words:
        assert w in str(info.value), f"{w!r} not in {info.value}"


# --------------------------------------------------------------------------- the layer

T, B, I, H, P = 5, 3, 4, 5, 2
LENGTHS = np.array([2, 5, 1])  # unsorted, one of length T, one of length 1


def make_pair(dtype, seed=0, **options):
    """Our LSTM(proj_size=P) and torch's, with torch's weights loaded into ours."""
    torch.manual_seed(seed)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    theirs = torch.nn.LSTM(I, H, proj_size=P, dtype=tdtype, **options)
    ours = LSTM(I, H, proj_size=P, dtype=dtype, seed=seed, **options)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


def compare(dtype, num_layers=1, bidirectional=False, batch_first=False, lengths=None,
            with_state=False, seed=0, **extra):
    ours, theirs = make_pair(dtype, seed, num_layers=num_layers, bidirectional=bidirectional,
                             batch_first=batch_first, **extra)
    rng = np.random.default_rng(seed)
    D = 2 if bidirectional else 1
    x_shape = (B, T, I) if batch_first else (T, B, I)
    x = rng.standard_normal(x_shape).astype(dtype)
    dy = rng.standard_normal(x_shape[:-1] + (D * P,)).astype(dtype)
    state = dstate = None
    if with_state:  # h is P wide, c is H wide
        shapes = [(num_layers * D, B, P), (num_layers * D, B, H)]
        state = tuple(rng.standard_normal(s).astype(dtype) for s in shapes)
        dstate = tuple(rng.standard_normal(s).astype(dtype) for s in shapes)
    got = run_ours(ours, x, state, lengths, dy, dstate)
    ref = run_torch(theirs, x, state, lengths, dy, dstate, batch_first)
    assert set(got) == set(ref) and any(name.startswith("weight_hr") for name in got)
    errors = {name: max_error(got[name], ref[name]) for name in ref}
    bad = {name: err for name, err in errors.items() if not err <= TORCH_TOL[dtype]}
    assert not bad, f"errors above {TORCH_TOL[dtype]}: {bad}"
    for name in got:
        assert got[name].dtype == dtype, name


GRID = list(itertools.product([1, 2], [False, True], [False, True], [False, True], [False, True]))
GRID_IDS = ["L{}-{}-{}-{}-{}".format(L, "bi" if bd else "uni", "bf" if bf else "tm",
                                     "len" if ln else "full", "h0" if st else "zero")
            for L, bd, bf, ln, st in GRID]


@pytest.mark.parametrize("num_layers, bidirectional, batch_first, with_lengths, with_state",
                         GRID, ids=GRID_IDS)
def test_layer_matches_torch_float64(projection_backend, num_layers, bidirectional, batch_first,
                                     with_lengths, with_state):
    compare(np.float64, num_layers, bidirectional, batch_first,
            LENGTHS if with_lengths else None, with_state)


GRID32 = [g for g in GRID if g[3] and g[4]] + [(2, True, False, False, False)]


@pytest.mark.parametrize("num_layers, bidirectional, batch_first, with_lengths, with_state",
                         GRID32, ids=[GRID_IDS[GRID.index(g)] for g in GRID32])
def test_layer_matches_torch_float32(projection_backend, num_layers, bidirectional, batch_first,
                                     with_lengths, with_state):
    compare(np.float32, num_layers, bidirectional, batch_first,
            LENGTHS if with_lengths else None, with_state)


def test_layer_without_bias_matches_torch(projection_backend):
    compare(np.float64, num_layers=2, bidirectional=True, lengths=LENGTHS, with_state=True,
            bias=False)


def test_layer_unbatched_matches_torch(projection_backend):
    ours, theirs = make_pair(np.float64, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal((T, I)), rng.standard_normal((T, 2 * P))
    state = (rng.standard_normal((4, P)), rng.standard_normal((4, H)))
    dstate = (rng.standard_normal((4, P)), rng.standard_normal((4, H)))
    got = run_ours(ours, x, state, None, dy, dstate)
    ref = run_torch(theirs, x, state, None, dy, dstate, False)
    assert set(got) == set(ref)
    errors = {name: max_error(got[name], ref[name]) for name in ref}
    assert max(errors.values()) <= 1e-9, errors


def test_layer_gradcheck_with_dropout(projection_backend):
    """Central differences (float64) of x, both initial states and every parameter of a
    stacked bidirectional LSTM(proj_size) with dropout and lengths; the generator is
    reseeded before each forward, so every call draws the same masks."""
    layer = LSTM(3, 3, num_layers=2, bidirectional=True, batch_first=True, dropout=0.4,
                 proj_size=2, dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    Tg, Bg = 4, 2
    inputs = {"x": rng.standard_normal((Bg, Tg, 3)), "h0": rng.standard_normal((4, Bg, 2)),
              "c0": rng.standard_normal((4, Bg, 3))}
    inputs.update(layer.state_dict())
    lengths = np.array([3, 4])

    def fn(x, h0, c0, **params):
        layer.load_state_dict(params)
        layer.generator = np.random.default_rng(1234)
        y, (h_n, c_n) = layer(x, (h0, c0), lengths=lengths)

        def vjp(cot):
            layer.zero_grad()
            dx, (dh0, dc0) = layer.backward(cot[0], (cot[1], cot[2]))
            grads = {"x": dx, "h0": dh0, "c0": dc0}
            grads.update({n: p.grad.copy() for n, p in layer.named_parameters()})
            return grads

        return (y, h_n, c_n), vjp

    errors = gradcheck(fn, inputs, tol=1e-6)
    assert {"weight_hr_l0", "weight_hr_l1_reverse", "x", "h0", "c0"} <= set(errors)


def test_dropout_drops_the_projected_outputs_between_layers(projection_backend):
    """dropout=1 zeroes layer 0's (T, B, D*P) outputs in training: layer 1 then sees zeros,
    so y equals a one-layer LSTM with layer 1's weights run on zeros; in eval mode the
    layer matches torch's (dropout inactive)."""
    ours, theirs = make_pair(np.float64, num_layers=2, bidirectional=True, dropout=1.0)
    x = np.random.default_rng(2).standard_normal((T, B, I))
    y, (h_n, c_n) = ours(x)
    top = LSTM(2 * P, H, bidirectional=True, proj_size=P, dtype=np.float64)
    top.load_state_dict({k.replace("_l1", "_l0"): v for k, v in ours.state_dict().items()
                         if "_l1" in k})
    y_top, (h_top, c_top) = top(np.zeros((T, B, 2 * P)))
    np.testing.assert_array_equal(y, y_top)
    np.testing.assert_array_equal(h_n[2:], h_top)
    dx, _ = ours.backward(np.ones_like(y))
    assert dx.shape == x.shape and not np.any(dx)  # nothing flows back through zeroed outputs
    ours.eval()
    theirs.eval()
    y_eval, _ = ours(x)
    with torch.no_grad():
        y_torch, _ = theirs(torch.tensor(x))
    assert max_error(y_eval, y_torch.numpy()) <= 1e-9


def test_dropout_keeps_about_one_minus_p(projection_backend):
    """dropout=0.3: the mask on layer 0's (T, B, P) outputs (as the layer keeps it for
    backward) zeroes about 30 % of them and scales the rest by 1/0.7."""
    layer = LSTM(4, 8, num_layers=2, dropout=0.3, proj_size=3, dtype=np.float64, seed=0)
    x = np.random.default_rng(3).standard_normal((50, 40, 4))
    layer(x)
    masks = layer._peek_backward()["masks"]
    mask = masks[0]
    assert mask.shape == (50, 40, 3) and masks[1] is None
    assert set(np.unique(mask)) <= {0.0, 1.0 / 0.7}
    dropped = np.mean(mask == 0.0)
    assert abs(dropped - 0.3) < 0.03, dropped  # 6000 draws: 5 standard deviations


def test_state_dict_round_trips_with_torch(tmp_path):
    ours, theirs = make_pair(np.float32, num_layers=2, bidirectional=True)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert ours.weight_hr_l1_reverse.shape == (P, H)
    assert ours.weight_hh_l0.shape == (4 * H, P) and ours.weight_ih_l1.shape == (4 * H, 2 * P)
    fresh = torch.nn.LSTM(I, H, proj_size=P, num_layers=2, bidirectional=True)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    for (name, a), (_, b) in zip(fresh.state_dict().items(), theirs.state_dict().items()):
        assert torch.equal(a, b), name
    path = tmp_path / "lstmp.npz"
    fastseq.save(path, ours)
    back = fastseq.load(path, LSTM(I, H, proj_size=P, num_layers=2, bidirectional=True, seed=9))
    for (name, a), (_, b) in zip(back.state_dict().items(), ours.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    with pytest.raises(KeyError, match="weight_hr_l0"):  # a plain LSTM's state has no projection
        LSTM(I, H, proj_size=P).load_state_dict(LSTM(I, H).state_dict())


def test_parameters_and_init_follow_torch():
    layer = LSTM(I, H, num_layers=2, bidirectional=True, proj_size=P, seed=1)
    theirs = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=P)
    assert [(n, p.shape) for n, p in layer.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in theirs.named_parameters()]
    bound = 1 / np.sqrt(H)
    w_hr = np.concatenate([p.data.ravel() for n, p in layer.named_parameters() if "weight_hr" in n])
    assert np.all(np.abs(w_hr) <= bound) and w_hr.std() > bound / 3  # U(-1/sqrt(H), 1/sqrt(H))
    assert layer.proj_size == P and layer.cell.name == "lstmp"
    assert "proj_size=2" in repr(layer) and "proj_size" not in repr(LSTM(I, H))
    assert LSTM(I, H, proj_size=0).cell.name == "lstm"


def test_pickled_layer_keeps_its_projection(projection_backend):
    layer = LSTM(I, H, num_layers=2, proj_size=P, dtype=np.float64, seed=3)
    back = pickle.loads(pickle.dumps(layer))
    assert back.proj_size == P and back.cell == layer.cell
    x = np.random.default_rng(4).standard_normal((T, B, I))
    y, (h_n, c_n) = layer(x)
    y2, (h2, c2) = back(x)
    assert np.array_equal(y, y2) and np.array_equal(h_n, h2) and np.array_equal(c_n, c2)


@pytest.mark.parametrize("proj_size", [-1, 1.5, "2", True, H, H + 1])
def test_bad_proj_size_is_refused(proj_size):
    with pytest.raises(ValueError, match="proj_size"):
        LSTM(I, H, proj_size=proj_size)


@pytest.mark.parametrize("layer", [RNN, GRU])
def test_rnn_and_gru_take_no_proj_size(layer):
    with pytest.raises(TypeError, match="proj_size"):
        layer(I, H, proj_size=2)


def test_layer_state_shapes_are_checked(projection_backend):
    lstm = LSTM(I, H, num_layers=2, proj_size=P, dtype=np.float64)
    x = np.zeros((T, B, I))
    with pytest.raises(ValueError, match=r"h0 must have shape \(2, 3, 2\).*proj_size"):
        lstm(x, (np.zeros((2, B, H)), np.zeros((2, B, H))))
    with pytest.raises(ValueError, match=r"c0 must have shape \(2, 3, 5\).*hidden_size"):
        lstm(x, (np.zeros((2, B, P)), np.zeros((2, B, P))))
    y, (h_n, c_n) = lstm(x)
    assert y.shape == (T, B, P) and h_n.shape == (2, B, P) and c_n.shape == (2, B, H)
    with pytest.raises(ValueError, match="dh_n"):
        lstm.backward(np.zeros_like(y), (np.zeros((2, B, H)), None))


def test_layer_on_a_backend_without_projection_says_so(monkeypatch):
    monkeypatch.setattr(reference_backend, "PROJECTION", False)
    with fastseq.use_backend("reference"), pytest.raises(NotImplementedError, match="projection"):
        LSTM(I, H, proj_size=P)(np.zeros((T, B, I)))


@pytest.mark.parametrize("backend", PROJECTION_BACKENDS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("threads", [1, 2])
def test_length_zero_keeps_the_initial_state(backend, reverse, threads):
    """A sequence of length 0 beside others (README: fastseq's choice): y zero, h_n = h0
    (P wide), c_n = c0, backward passes dh_n and dc_n straight through, dx zero; the other
    sequences as in a batch without it."""
    rng = np.random.default_rng(5)
    T, B, I, H, P = 5, 3, 4, 6, 2
    x = rng.standard_normal((T, B, I))
    w_ih, w_hh = rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, P))
    w_hr = rng.standard_normal((P, H))
    b_ih, b_hh = rng.standard_normal(4 * H), rng.standard_normal(4 * H)
    h0, c0 = rng.standard_normal((B, P)), rng.standard_normal((B, H))
    dy = rng.standard_normal((T, B, P))
    dh, dc = rng.standard_normal((B, P)), rng.standard_normal((B, H))
    lengths = np.array([5, 0, 2])
    previous = fastseq.get_num_threads()
    fastseq.set_num_threads(threads)
    try:
        with fastseq.use_backend(backend):
            y, h, c, ctx = F.lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths=lengths,
                                          reverse=reverse, w_hr=w_hr)
            g = F.lstm_backward(ctx, dy, dh, dc)
            keep = [0, 2]  # the batch without the empty sequence
            y2, h2, c2, ctx2 = F.lstm_forward(x[:, keep], w_ih, w_hh, b_ih, b_hh, h0[keep],
                                              c0[keep], lengths=lengths[keep], reverse=reverse,
                                              w_hr=w_hr)
            g2 = F.lstm_backward(ctx2, dy[:, keep], dh[keep], dc[keep])
    finally:
        fastseq.set_num_threads(previous)
    assert np.all(y[:, 1] == 0) and np.array_equal(h[1], h0[1]) and np.array_equal(c[1], c0[1])
    assert np.array_equal(g["dh0"][1], dh[1]) and np.array_equal(g["dc0"][1], dc[1])
    assert np.all(g["dx"][:, 1] == 0)
    for got, want in ((y[:, keep], y2), (h[keep], h2), (c[keep], c2), (g["dx"][:, keep], g2["dx"])):
        assert max_error(got, want) <= 1e-12
    for name in ("dw_ih", "dw_hh", "dw_hr", "db_ih", "db_hh"):
        assert max_error(g[name], g2[name]) <= 1e-12, name
