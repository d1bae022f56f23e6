"""RNN/LSTM/GRU layers against torch.nn on every backend: outputs, final states, dx,
dstate0 and every parameter gradient by name, over a grid of configurations."""
import itertools
import pickle

import numpy as np
import pytest

from fastseq.checking import max_error
from fastseq.recurrent import GRU, LSTM, RNN

torch = pytest.importorskip("torch", reason="torch is needed to compare with torch.nn")

T, B, I, H = 5, 3, 4, 3
LENGTHS = np.array([2, 5, 1])  # unsorted, one of length T, one of length 1
TOL = {np.float64: 1e-9, np.float32: 2e-4}
OURS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
THEIRS = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def make_pair(cell, dtype, seed=0, **options):
    """A fastseq layer and a torch layer holding the same (torch-initialised) weights."""
    torch.manual_seed(seed)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    theirs = THEIRS[cell](I, H, dtype=tdtype, **options)
    ours = OURS[cell](I, H, dtype=dtype, seed=seed, **options)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


def run_torch(theirs, x, state, lengths, dy, dstate, batch_first, batched=True):
    """Forward and backward through torch; lengths go through packed sequences."""
    xt = torch.tensor(x, requires_grad=True)
    st = None
    if state is not None:
        st = tuple(torch.tensor(s, requires_grad=True) for s in state) \
            if isinstance(state, tuple) else torch.tensor(state, requires_grad=True)
    if lengths is not None:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
        out, st_n = theirs(packed, st)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=batch_first,
                                                      total_length=x.shape[1 if batch_first else 0])
    else:
        y, st_n = theirs(xt, st)
    loss = (y * torch.tensor(dy)).sum()
    if dstate is not None:
        pairs = zip(st_n, dstate) if isinstance(st_n, tuple) else [(st_n, dstate)]
        for s, d in pairs:
            if d is not None:
                loss = loss + (s * torch.tensor(d)).sum()
    loss.backward()
    out = {"y": y, "dx": xt.grad}
    if isinstance(st_n, tuple):
        out.update(h_n=st_n[0], c_n=st_n[1])
        if st is not None:
            out.update(dh0=st[0].grad, dc0=st[1].grad)
    else:
        out["h_n"] = st_n
        if st is not None:
            out["dh0"] = st.grad
    for name, p in theirs.named_parameters():
        out[name] = p.grad
    return {k: v.detach().numpy() for k, v in out.items()}


def run_ours(ours, x, state, lengths, dy, dstate):
    y, st_n = ours(x, state, lengths=lengths)
    dx, dst0 = ours.backward(dy, dstate)
    out = {"y": y, "dx": dx}
    if isinstance(st_n, tuple):
        out.update(h_n=st_n[0], c_n=st_n[1])
        if state is not None:
            out.update(dh0=dst0[0], dc0=dst0[1])
    else:
        out["h_n"] = st_n
        if state is not None:
            out["dh0"] = dst0
    for name, p in ours.named_parameters():
        out[name] = p.grad
    return out


def compare(cell, dtype, num_layers=1, bidirectional=False, batch_first=False,
            lengths=None, with_state=False, batched=True, seed=0, **extra):
    ours, theirs = make_pair(cell, dtype, seed, num_layers=num_layers,
                             bidirectional=bidirectional, batch_first=batch_first, **extra)
    rng = np.random.default_rng(seed)
    D = 2 if bidirectional else 1
    x_shape = (B, T, I) if batch_first else (T, B, I)
    s_shape = (num_layers * D, B, H)
    if not batched:
        x_shape, s_shape = (T, I), (num_layers * D, H)
    x = rng.standard_normal(x_shape).astype(dtype)
    y_shape = x_shape[:-1] + (D * H,)
    dy = rng.standard_normal(y_shape).astype(dtype)
    state = dstate = None
    if with_state:
        n = 2 if cell == "lstm" else 1
        state = tuple(rng.standard_normal(s_shape).astype(dtype) for _ in range(n))
        dstate = tuple(rng.standard_normal(s_shape).astype(dtype) for _ in range(n))
        if n == 1:
            state, dstate = state[0], dstate[0]
    got = run_ours(ours, x, state, lengths, dy, dstate)
    ref = run_torch(theirs, x, state, lengths, dy, dstate, batch_first and batched)
    assert set(got) == set(ref)
    errors = {name: max_error(got[name], ref[name]) for name in ref}
    bad = {name: err for name, err in errors.items() if not err <= TOL[dtype]}
    assert not bad, f"errors above {TOL[dtype]}: {bad}"
    for name in got:
        assert got[name].dtype == dtype, name


GRID = list(itertools.product(["rnn", "lstm", "gru"], [1, 2], [False, True], [False, True],
                              [False, True], [False, True]))
GRID_IDS = ["{}-L{}-{}-{}-{}-{}".format(c, L, "bi" if bd else "uni", "bf" if bf else "tm",
                                        "len" if ln else "full", "h0" if st else "zero")
            for c, L, bd, bf, ln, st in GRID]


@pytest.mark.parametrize("cell, num_layers, bidirectional, batch_first, with_lengths, with_state",
                         GRID, ids=GRID_IDS)
def test_layer_matches_torch_float64(active_backend, cell, num_layers, bidirectional,
                                     batch_first, with_lengths, with_state):
    compare(cell, np.float64, num_layers, bidirectional, batch_first,
            LENGTHS if with_lengths else None, with_state)


# float32: every cell and layout, each with lengths and a state, and a few plain ones
GRID32 = [g for g in GRID if (g[4] and g[5]) or (g[1] == 2 and g[2] and not g[4] and not g[5])]


@pytest.mark.parametrize("cell, num_layers, bidirectional, batch_first, with_lengths, with_state",
                         GRID32, ids=[GRID_IDS[GRID.index(g)] for g in GRID32])
def test_layer_matches_torch_float32(active_backend, cell, num_layers, bidirectional,
                                     batch_first, with_lengths, with_state):
    compare(cell, np.float32, num_layers, bidirectional, batch_first,
            LENGTHS if with_lengths else None, with_state)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_unbatched_input_matches_torch(active_backend, cell):
    compare(cell, np.float64, num_layers=2, bidirectional=True, batched=False, with_state=True)
    compare(cell, np.float64, num_layers=1, batched=False, batch_first=True)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_no_bias_matches_torch(active_backend, cell):
    compare(cell, np.float64, num_layers=2, bidirectional=True, lengths=LENGTHS, bias=False)


def test_relu_rnn_matches_torch(active_backend):
    compare("rnn", np.float64, num_layers=2, bidirectional=True, lengths=LENGTHS,
            with_state=True, nonlinearity="relu")


def test_lstm_partial_dstate(active_backend):
    """(dh_n, None) and (None, dc_n) mean zeros for the missing half."""
    ours, theirs = make_pair("lstm", np.float64, num_layers=2)
    rng = np.random.default_rng(3)
    x, dy = rng.standard_normal((T, B, I)), rng.standard_normal((T, B, H))
    d = rng.standard_normal((2, B, H))
    for dstate in [(d, None), (None, d)]:
        got = run_ours(ours, x, None, None, dy, dstate)
        ours.zero_grad()
        theirs.zero_grad()
        ref = run_torch(theirs, x, None, None, dy, dstate, False)
        got_full = run_ours(ours, x, None, None, dy, tuple(np.zeros_like(d) if v is None else v
                                                           for v in dstate))
        assert max_error(got["dx"], ref["dx"]) <= 1e-9
        assert max_error(got["dx"], got_full["dx"]) == 0.0
        ours.zero_grad()
        theirs.zero_grad()


# --- behaviour that needs no grid ---------------------------------------------------------

def test_parameter_names_shapes_and_init_match_torch():
    for cell in ("rnn", "lstm", "gru"):
        ours, theirs = make_pair(cell, np.float32, num_layers=2, bidirectional=True)
        fresh = OURS[cell](I, H, num_layers=2, bidirectional=True, seed=1)
        assert [n for n, _ in fresh.named_parameters()] == [n for n, _ in theirs.named_parameters()]
        for (name, p), (_, tp) in zip(fresh.named_parameters(), theirs.named_parameters()):
            assert p.shape == tuple(tp.shape), name
            assert p.dtype == np.float32
            assert np.all(np.abs(p.data) <= 1 / np.sqrt(H)), name
        assert len(list(fresh.parameters())) == 16


def test_seed_int_and_generator_are_reproducible():
    a = LSTM(I, H, num_layers=2, seed=7)
    b = LSTM(I, H, num_layers=2, seed=7)
    c = LSTM(I, H, num_layers=2, seed=np.random.default_rng(7))
    d = LSTM(I, H, num_layers=2, seed=8)
    for (_, pa), (_, pb), (_, pc), (_, pd) in zip(a.named_parameters(), b.named_parameters(),
                                                  c.named_parameters(), d.named_parameters()):
        assert np.array_equal(pa.data, pb.data) and np.array_equal(pa.data, pc.data)
        assert not np.array_equal(pa.data, pd.data)


def test_dtype_and_input_casting(active_backend):
    rnn = GRU(I, H, seed=0)
    y, h = rnn(np.ones((T, B, I), dtype=np.float64))
    assert y.dtype == np.float32 and h.dtype == np.float32
    y_int, _ = rnn(np.ones((T, B, I), dtype=np.int32))
    assert np.array_equal(y, y_int)
    rnn64 = GRU(I, H, seed=0, dtype=np.float64)
    y64, _ = rnn64([[[1.0] * I] * B] * T)  # nested lists too
    assert y64.dtype == np.float64
    assert max_error(y, y64) <= 1e-6
    for bad in (np.ones((T, B, I), dtype=complex), np.full((T, B, I), "a"),
                np.empty((T, B, I), dtype=object), np.ones((T, B, I), dtype=bool)):
        with pytest.raises(TypeError, match="x"):
            rnn(bad)


def test_eval_mode_keeps_nothing_and_matches_train(active_backend):
    lstm = LSTM(I, H, num_layers=2, dropout=0.5, seed=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((T, B, I))
    lstm.eval()
    y_eval, (h_eval, _) = lstm(x)
    with pytest.raises(RuntimeError, match="eval mode"):
        lstm.backward(np.zeros_like(y_eval))
    y_again, _ = lstm(x)
    assert np.array_equal(y_eval, y_again)  # no dropout in eval
    lstm.train()
    y_train, _ = lstm(x)
    assert not np.allclose(y_train, y_eval)  # dropout is on in training
    lstm.dropout = 0.0
    y_nodrop, (h_nodrop, _) = lstm(x)
    assert max_error(y_nodrop, y_eval) <= 1e-12 and max_error(h_nodrop, h_eval) <= 1e-12


def test_dropout_is_seeded_and_only_between_layers(active_backend):
    x = np.random.default_rng(0).standard_normal((T, B, I))
    runs = []
    for _ in range(2):
        gru = GRU(I, H, num_layers=3, dropout=0.4, seed=3, dtype=np.float64)
        runs.append([gru(x)[0] for _ in range(2)])
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][0], runs[0][1])  # a new mask each forward
    gru.generator = np.random.default_rng(5)
    first = gru(x)[0]
    gru.generator = np.random.default_rng(5)
    assert np.array_equal(first, gru(x)[0])
    # dropout=1 drops every output of layer 0: layer 1 sees zeros, and no gradient
    # reaches the input
    gru1 = GRU(I, H, num_layers=2, dropout=1.0, seed=0, dtype=np.float64)
    y1, _ = gru1(x)
    top = GRU(H, H, seed=0, dtype=np.float64)
    top.load_state_dict({k[:-1] + "0": v for k, v in gru1.state_dict().items() if k.endswith("l1")})
    assert max_error(y1, top(np.zeros((T, B, H)))[0]) <= 1e-12
    dx, _ = gru1.backward(np.ones_like(y1))
    assert np.all(dx == 0)


def test_dropout_warning_with_one_layer():
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        RNN(I, H, dropout=0.2)


def test_gradients_accumulate_and_zero_grad(active_backend):
    rnn = RNN(I, H, num_layers=2, seed=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((T, B, I))
    y, _ = rnn(x)
    rnn.backward(np.ones_like(y))
    once = {n: p.grad.copy() for n, p in rnn.named_parameters()}
    y, _ = rnn(x)
    rnn.backward(np.ones_like(y))
    for n, p in rnn.named_parameters():
        assert max_error(p.grad, 2 * once[n]) <= 1e-12
    rnn.zero_grad()
    assert all(np.all(p.grad == 0) for p in rnn.parameters())
    rnn.zero_grad(set_to_none=True)
    y, _ = rnn(x)
    rnn.backward(np.ones_like(y))
    for n, p in rnn.named_parameters():
        assert max_error(p.grad, once[n]) <= 1e-12


def test_state_dict_round_trips_with_torch():
    for cell in ("rnn", "lstm", "gru"):
        ours = OURS[cell](I, H, num_layers=2, bidirectional=True, seed=0, dtype=np.float64)
        theirs = THEIRS[cell](I, H, num_layers=2, bidirectional=True, dtype=torch.float64)
        # ours -> torch, as is
        theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
        back = {k: v.detach().numpy() for k, v in theirs.state_dict().items()}
        assert list(back) == list(ours.state_dict())
        for k, v in ours.state_dict().items():
            assert np.array_equal(back[k], v)
        # torch tensors themselves are accepted too
        other = OURS[cell](I, H, num_layers=2, bidirectional=True, seed=1, dtype=np.float64)
        other.load_state_dict(theirs.state_dict())
        for (_, p), (_, q) in zip(other.named_parameters(), ours.named_parameters()):
            assert np.array_equal(p.data, q.data)


def test_load_state_dict_keeps_arrays_and_casts():
    lstm = LSTM(I, H, seed=0)
    refs = [p.data for p in lstm.parameters()]
    sd = {k: v.astype(np.float64) + 1 for k, v in lstm.state_dict().items()}
    lstm.load_state_dict(sd)
    assert all(p.data is r for p, r in zip(lstm.parameters(), refs))
    assert all(p.dtype == np.float32 for p in lstm.parameters())
    assert np.allclose(lstm.weight_ih_l0.data, sd["weight_ih_l0"])
    missing, unexpected = lstm.load_state_dict({"weight_ih_l0": sd["weight_ih_l0"],
                                                "extra": np.zeros(1)}, strict=False)
    assert unexpected == ["extra"] and "bias_hh_l0" in missing


def test_pickle_round_trip(active_backend):
    gru = GRU(I, H, num_layers=2, bidirectional=True, batch_first=True, dropout=0.3, seed=0,
              dtype=np.float64, reset_after=False)
    x = np.random.default_rng(0).standard_normal((B, T, I))
    gru(x)  # a pending backward cache is not pickled
    clone = pickle.loads(pickle.dumps(gru))
    assert repr(clone) == repr(gru)
    for (n, p), (m, q) in zip(gru.named_parameters(), clone.named_parameters()):
        assert n == m and np.array_equal(p.data, q.data)
    gru.eval()
    clone.eval()
    assert np.array_equal(gru(x)[0], clone(x)[0])
    with pytest.raises(RuntimeError, match="forward"):
        clone.backward(np.zeros((B, T, 2 * H)))
