"""fastseq.torch.{RNN, LSTM, GRU} against torch.nn: outputs, final states and every gradient
(input, initial state, each parameter by name) over layouts, stacking, directions and packed
sequences; gradcheck; state_dicts both ways; a short Adam training run; the refusals."""
import threading

import numpy as np
import pytest

import fastseq.functional
from fastseq.checking import max_error

torch = pytest.importorskip("torch", reason="torch is needed to compare with torch.nn")
ft = pytest.importorskip("fastseq.torch")

from torch.nn.utils.rnn import (  # noqa: E402
    PackedSequence, pack_padded_sequence, pad_packed_sequence)

T, B, I, H = 6, 3, 4, 5
LENGTHS = [4, 6, 1]  # unsorted, one of length T, one of length 1
TOL = {torch.float64: 1e-9, torch.float32: 2e-4}
# torch.nn.LSTM(proj_size) warns once that oneDNN has no projection (it runs unfused).
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")
CELLS = {  # name: (ours, theirs, extra constructor arguments)
    "rnn_tanh": (ft.RNN, torch.nn.RNN, {}),
    "rnn_relu": (ft.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (ft.LSTM, torch.nn.LSTM, {}),
    "lstmp": (ft.LSTM, torch.nn.LSTM, {"proj_size": 3}),  # h and the output 3 wide
    "gru": (ft.GRU, torch.nn.GRU, {}),
}
LSTMS = ("lstm", "lstmp")


def make_pair(cell, dtype, seed=0, **options):
    """A fastseq.torch module and its torch.nn twin holding the same weights."""
    ours_cls, theirs_cls, extra = CELLS[cell]
    torch.manual_seed(seed)
    theirs = theirs_cls(I, H, dtype=dtype, **extra, **options)
    ours = ours_cls(I, H, dtype=dtype, **extra, **options)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def run(module, x, hx, cotangents, packed=None):
    """Forward, then backward of sum(output * cot) + sum(state * cot); every result and
    gradient by name, as NumPy arrays."""
    x = x.clone().requires_grad_(True)
    hx = None if hx is None else tuple(h.clone().requires_grad_(True) for h in hx)
    module.zero_grad(set_to_none=True)
    inp = x if packed is None else pack_padded_sequence(x, torch.tensor(packed["lengths"]),
                                                        enforce_sorted=packed["sorted"])
    state = None if hx is None else (hx if len(hx) == 2 else hx[0])
    out, st = module(inp, state)
    results = {}
    if packed is not None:
        assert isinstance(out, PackedSequence)
        results["packed.data"] = out.data
        for name in ("batch_sizes", "sorted_indices", "unsorted_indices"):
            value = getattr(out, name)
            results[f"packed.{name}"] = None if value is None else value.double()
        out, _ = pad_packed_sequence(out, total_length=x.shape[0])
    st = st if isinstance(st, tuple) else (st,)
    loss = (out * cotangents[0]).sum()
    for s, c in zip(st, cotangents[1:]):
        loss = loss + (s * c).sum()
    loss.backward()
    results.update(output=out, dx=x.grad)
    for i, s in enumerate(st):
        results[f"state{i}"] = s
    if hx is not None:
        for i, h in enumerate(hx):
            results[f"dhx{i}"] = h.grad
    for name, p in module.named_parameters():
        results[f"{name}.grad"] = p.grad
    return {k: None if v is None else v.detach().numpy() for k, v in results.items()}


def compare(cell, dtype, *, num_layers=1, bidirectional=False, batch_first=False,
            unbatched=False, with_state=True, packed=None, bias=True, seed=0):
    ours, theirs = make_pair(cell, dtype, seed, num_layers=num_layers, bias=bias,
                             bidirectional=bidirectional, batch_first=batch_first)
    g = torch.Generator().manual_seed(seed + 1)
    D = 2 if bidirectional else 1
    x_shape = (T, I) if unbatched else ((B, T, I) if batch_first else (T, B, I))
    x = torch.randn(x_shape, generator=g, dtype=dtype)
    W = CELLS[cell][2].get("proj_size") or H  # the width of h and of the output
    widths = (W, H) if cell in LSTMS else (W,)  # h, and the LSTM's c (never projected)
    s_shapes = [(num_layers * D, w) if unbatched else (num_layers * D, B, w) for w in widths]
    hx = tuple(torch.randn(s, generator=g, dtype=dtype) for s in s_shapes) \
        if with_state else None
    cot = [torch.randn(x_shape[:-1] + (D * W,), generator=g, dtype=dtype)]
    cot += [torch.randn(s, generator=g, dtype=dtype) for s in s_shapes]
    if packed is not None:  # x is (T, B, I); torch zeroes the padded steps' outputs
        for b, n in enumerate(packed["lengths"]):
            cot[0][n:, b] = 0
    got = run(ours, x, hx, cot, packed)
    ref = run(theirs, x, hx, cot, packed)
    assert got.keys() == ref.keys()
    errors = {k: max_error(got[k], ref[k]) for k in ref if ref[k] is not None}
    assert all(got[k] is None for k in ref if ref[k] is None)
    bad = {k: e for k, e in errors.items() if not e <= TOL[dtype]}
    assert not bad, f"above {TOL[dtype]}: {bad}"
    assert any(k.startswith("weight_hh") for k in errors)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("config", [
    dict(),
    dict(with_state=False),
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=2, batch_first=True),
    dict(bidirectional=True, unbatched=True),
    dict(bias=False),
], ids=["1layer", "no_hx", "2layers_bidir", "2layers_batch_first", "bidir_unbatched", "no_bias"])
def test_matches_torch(cell, dtype, config):
    compare(cell, dtype, **config)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("enforce_sorted", [True, False], ids=["sorted", "unsorted"])
def test_packed_sequence_matches_torch(cell, dtype, enforce_sorted):
    lengths = sorted(LENGTHS, reverse=True) if enforce_sorted else LENGTHS
    compare(cell, dtype, num_layers=2, bidirectional=True,
            packed={"lengths": lengths, "sorted": enforce_sorted})


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "lstmp", "gru"])
def test_gradcheck(cell):
    """Finite differences in float64 through every input of a 2-layer bidirectional module
    (small: each of its ~250 inputs costs two forwards)."""
    ours_cls, _, extra = CELLS[cell]
    torch.manual_seed(0)
    extra = {"proj_size": 1} if "proj_size" in extra else extra  # below hidden_size 2
    ours = ours_cls(2, 2, num_layers=2, bidirectional=True, dtype=torch.float64, **extra)
    names = [n for n, _ in ours.named_parameters()]
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 2, 2, dtype=torch.float64, generator=g, requires_grad=True)
    h0 = torch.randn(4, 2, extra.get("proj_size", 2), dtype=torch.float64, generator=g,
                     requires_grad=True)
    c0 = torch.randn(4, 2, 2, dtype=torch.float64, generator=g, requires_grad=True)
    params = [p.detach().clone().requires_grad_(True) for p in ours.parameters()]

    def f(x, h0, c0, *ps):
        state = (h0, c0) if cell in LSTMS else h0
        out, st = torch.func.functional_call(ours, dict(zip(names, ps)), (x, state))
        return (out, *st) if isinstance(st, tuple) else (out, st)

    assert torch.autograd.gradcheck(f, (x, h0, c0, *params), eps=1e-6, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("cell", list(CELLS))
def test_state_dict_round_trip(cell):
    """torch.nn -> fastseq.torch -> torch.nn: same names, shapes, values; and the modules'
    own initialisation is torch's (same seed, same weights)."""
    ours_cls, theirs_cls, extra = CELLS[cell]
    torch.manual_seed(7)
    theirs = theirs_cls(I, H, num_layers=2, bidirectional=True, **extra)
    torch.manual_seed(7)
    ours = ours_cls(I, H, num_layers=2, bidirectional=True, **extra)
    for (n1, p1), (n2, p2) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    torch.manual_seed(8)
    other = ours_cls(I, H, num_layers=2, bidirectional=True, **extra)
    theirs.load_state_dict(other.state_dict())
    back = ours_cls(I, H, num_layers=2, bidirectional=True, **extra)
    back.load_state_dict(theirs.state_dict())
    for (n1, p1), (n2, p2) in zip(back.state_dict().items(), other.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)


class _Model(torch.nn.Module):
    def __init__(self, lstm):
        super().__init__()
        self.lstm, self.head = lstm, torch.nn.Linear(H, 3, dtype=torch.float64)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.head(y)


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test: its 2-thread OpenMP regions on tiny tensors took
    ~40 ms per training step on the busy shared host (3 ms on one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_training_with_adam_matches_torch(one_torch_thread):
    """50 Adam steps of an LSTM + Linear classifier: the same losses as with torch.nn.LSTM."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B * 2, T, I, generator=g, dtype=torch.float64)
    target = torch.randint(0, 3, (B * 2, T), generator=g)
    losses = {}
    for name, cls in (("ours", ft.LSTM), ("theirs", torch.nn.LSTM)):
        torch.manual_seed(0)
        model = _Model(cls(I, H, num_layers=2, batch_first=True, dtype=torch.float64))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses[name] = []
        for _ in range(50):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, 3), target.reshape(-1))
            loss.backward()
            opt.step()
            losses[name].append(loss.item())
    assert losses["ours"][-1] < 0.9 * losses["ours"][0]  # it did learn
    assert max_error(losses["ours"], losses["theirs"]) <= 1e-9


def test_no_grad_keeps_no_graph(monkeypatch):
    """Under no_grad (and in inference mode) outputs are plain tensors, no autograd node,
    and fastseq's forward runs with training=False: no reserve is kept."""
    ours, theirs = make_pair("lstm", torch.float32)
    x = torch.randn(T, B, I)
    calls = []
    forward = fastseq.functional._forward  # every forward's one path

    def spy(cell, x, w_ih, w_hh, b_ih, b_hh, states, lengths, reverse, training, **kwargs):
        calls.append(training)
        return forward(cell, x, w_ih, w_hh, b_ih, b_hh, states, lengths, reverse, training,
                       **kwargs)

    monkeypatch.setattr(fastseq.functional, "_forward", spy)
    ours(x)
    assert calls == [True]  # parameters require grad: a training forward
    calls.clear()
    with torch.no_grad():
        y, (h, c) = ours(x)
        y_ref, _ = theirs(x)
    assert y.grad_fn is None and h.grad_fn is None and not y.requires_grad
    assert max_error(y.numpy(), y_ref.numpy()) <= 2e-4
    with torch.inference_mode():
        y2, _ = ours(x)
    assert torch.equal(y, y2)
    assert calls == [False, False]


def test_dropout_between_layers():
    """Training mode: dropout on every layer's output but the last (torch's RNG); eval: none."""
    ours, _ = make_pair("gru", torch.float64, num_layers=2, dropout=0.5)
    plain, _ = make_pair("gru", torch.float64, num_layers=2)
    x = torch.randn(T, B, I, dtype=torch.float64)
    ours.train()
    torch.manual_seed(5)
    y_train, _ = ours(x)
    # The same computation spelled out: layer 0, torch's dropout with the same RNG, layer 1.
    l0 = ft.GRU(I, H, dtype=torch.float64)
    l1 = ft.GRU(H, H, dtype=torch.float64)
    sd = ours.state_dict()
    l0.load_state_dict({k.replace("_l0", "_l0"): v for k, v in sd.items() if k.endswith("_l0")})
    l1.load_state_dict({k.replace("_l1", "_l0"): v for k, v in sd.items() if k.endswith("_l1")})
    torch.manual_seed(5)
    y0, _ = l0(x)
    y_manual, _ = l1(torch.nn.functional.dropout(y0, 0.5, True))
    assert torch.equal(y_train, y_manual)
    ours.eval()
    assert torch.equal(ours(x)[0], plain.eval()(x)[0])


def test_second_backward_recomputes():
    """retain_graph=True: a second backward (the reserve was used by the first) gives the
    same gradients, through a recomputed forward."""
    ours, _ = make_pair("lstm", torch.float64, num_layers=2)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    y, _ = ours(x)
    first = torch.autograd.grad(y.square().sum(), [x, ours.weight_ih_l0], retain_graph=True)
    second = torch.autograd.grad(y.square().sum(), [x, ours.weight_ih_l0])
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    with pytest.raises(RuntimeError, match="once_differentiable"):  # double backward
        y, _ = ours(x)
        (dx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        dx.sum().backward()


def test_in_place_change_before_backward_is_caught():
    ours, _ = make_pair("gru", torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    y, _ = ours(x * 1.0)
    with torch.no_grad():
        ours.weight_hh_l0.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_refusals():
    with pytest.raises(ValueError, match="proj_size"):  # torch's own check
        ft.LSTM(I, H, proj_size=H)
    ours, _ = make_pair("lstmp", torch.float64)
    with pytest.raises(ValueError, match=r"h_0 must have shape \(1, 3, 3\).*proj_size"):
        ours(torch.randn(T, B, I, dtype=torch.float64),
             (torch.zeros(1, B, H, dtype=torch.float64), torch.zeros(1, B, H, dtype=torch.float64)))
    ours, _ = make_pair("lstm", torch.float32)
    with pytest.raises(TypeError, match="float64"):
        ours(torch.randn(T, B, I, dtype=torch.float64))
    with pytest.raises(TypeError, match="float32 or float64"):
        ours.to(torch.float16)(torch.randn(T, B, I, dtype=torch.float16))
    ours, _ = make_pair("gru", torch.float32)
    with pytest.raises(ValueError, match="shape"):
        ours(torch.randn(T, B, I), torch.zeros(1, B + 1, H))
    with pytest.raises(ValueError, match="input_size"):
        ours(torch.randn(T, B, I + 1))
    with pytest.raises(TypeError, match="one tensor"):
        ours(torch.randn(T, B, I), (torch.zeros(1, B, H), torch.zeros(1, B, H)))
    meta = ft.RNN(I, H, device="meta")
    with pytest.raises(NotImplementedError, match="CPU only"):
        meta(torch.randn(T, B, I, device="meta"))


def test_threads_share_a_module():
    """Several threads training through one module at once (each its own graph) get the
    single-threaded results."""
    ours, _ = make_pair("lstm", torch.float64, num_layers=2)
    xs = [torch.randn(T, B, I, dtype=torch.float64) for _ in range(4)]

    def grads(x):
        x = x.clone().requires_grad_(True)
        y, _ = ours(x)
        return torch.autograd.grad(y.square().sum(), [x, ours.weight_hh_l1])

    expected = [grads(x) for x in xs]
    results = [None] * len(xs)

    def work(i):
        for _ in range(5):
            results[i] = grads(xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        assert all(torch.equal(a, b) for a, b in zip(got, want))
