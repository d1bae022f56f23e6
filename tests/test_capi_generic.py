"""The C ABI's generic entry points (fastseq_forward / fastseq_backward with a versioned
fastseq_options, the parameters as an array in the cell's order, fastseq_buffer_bytes):
the same bits as the per-family functions that wrap them, for every cell; the projected LSTM
through them, bit for bit as fastseq._core; the options' versioning and checks."""
from __future__ import annotations

import functools

import numpy as np
import pytest

capi = pytest.importorskip("fastseq.capi")
from fastseq import _core, cells  # noqa: E402

ffi, lib = capi.ffi, capi.lib
FLAG = {"rnn_tanh": {"relu": 0}, "rnn_relu": {"relu": 1}, "gru": {"reset_after": 1},
        "gru_reset_before": {"reset_after": 0}, "lstm": {}}


def arrays(cell, dtype, T=5, B=4, I=3, H=6, P=0, *, bias=True, lengths=False, seed=0):
    """Random inputs of a call of ``cell``: parameters by name, states, gradients from above."""
    rng = np.random.default_rng(seed)
    c = cells.CELLS[cell]
    G, Hs = c.gates, P or H
    shapes = dict(w_ih=(G * H, I), w_hh=(G * H, Hs), w_hr=(P, H), b_ih=(G * H,), b_hh=(G * H,))
    params = {n: (rng.uniform(-0.4, 0.4, shapes[n]).astype(dtype)
                  if bias or not n.startswith("b_") else None) for n in c.parameters}
    width = dict(h=Hs, c=H)
    a = dict(x=rng.standard_normal((T, B, I)).astype(dtype), params=params,
             states0=[rng.standard_normal((B, width[s])).astype(dtype) for s in c.states],
             dy=rng.standard_normal((T, B, Hs)).astype(dtype),
             dstates_n=[rng.standard_normal((B, width[s])).astype(dtype) for s in c.states],
             lengths=None, sizes=(T, B, I, H), P=P, bias=bias)
    if lengths:
        a["lengths"] = rng.integers(1, T + 1, B).astype(np.int64)
        a["lengths"][1] = T
    return a


def generic_run(cell, a, dtype, reverse=False, accumulate=None):
    """Forward (training) and backward through fastseq_forward / fastseq_backward: outputs
    by name (parameter gradients as d<name>). accumulate: gradients to add into."""
    c = cells.CELLS[cell]
    T, B, I, H = a["sizes"]
    Hs = a["P"] or H
    opts = capi.options(dtype, T, B, I, H, proj_size=a["P"], bias=a["bias"],
                        lengths=a["lengths"] is not None, reverse=reverse,
                        accumulate=accumulate is not None)
    width = dict(h=Hs, c=H)
    empty = functools.partial(np.full, fill_value=np.nan, dtype=dtype)
    y = empty((T, B, Hs))
    states_n = [empty((B, width[s])) for s in c.states]
    reserve = capi.aligned_bytes(capi.buffer_bytes("reserve", cell, opts))
    scratch = capi.aligned_bytes(capi.buffer_bytes("training_scratch", cell, opts))
    params = [a["params"][n] for n in c.parameters]
    p = capi.ptr
    capi.check(lib.fastseq_forward(
        capi.CELLS[cell], opts, p(y, writable=True), capi.pointers(states_n, writable=True),
        p(reserve), reserve.nbytes, p(a["x"]), capi.pointers(params, dtype),
        capi.pointers(a["states0"], dtype), p(a["lengths"]), p(scratch), scratch.nbytes))
    out = dict(y=y, **{f"{s}_n": v for s, v in zip(c.states, states_n)})
    dx = empty(a["x"].shape)
    dstates0 = [empty((B, width[s])) for s in c.states]
    if accumulate is None:
        dparams = [None if v is None else empty(v.shape) for v in params]
    else:
        dparams = [accumulate.get("d" + n) for n in c.parameters]
    bscratch = capi.aligned_bytes(capi.buffer_bytes("backward_scratch", cell, opts))
    capi.check(lib.fastseq_backward(
        capi.CELLS[cell], opts, p(dx, writable=True), capi.pointers(dstates0, writable=True),
        capi.pointers(dparams, writable=True), p(reserve), reserve.nbytes, p(a["x"]),
        capi.pointers(params, dtype), p(a["lengths"]), p(a["dy"]),
        capi.pointers(a["dstates_n"], dtype), p(bscratch), bscratch.nbytes))
    out.update(dx=dx, **{f"d{s}0": v for s, v in zip(c.states, dstates0)},
               **{"d" + n: v for n, v in zip(c.parameters, dparams) if v is not None})
    return out


def family_run(cell, a, dtype, reverse=False):
    """The same through the per-family functions (scratch allocated by the call)."""
    c = cells.CELLS[cell]
    family = c.family
    T, B, I, H = a["sizes"]
    suffix = "f32" if np.dtype(dtype) == np.float32 else "f64"
    flags = capi.options(dtype, *a["sizes"], bias=a["bias"],
                         lengths=a["lengths"] is not None, reverse=reverse)
    empty = functools.partial(np.full, fill_value=np.nan, dtype=dtype)
    p = capi.ptr
    w = a["params"]
    y, h_n, c_n = empty((T, B, H)), empty((B, H)), empty((B, H))
    reserve = capi.aligned_bytes(capi.buffer_bytes("reserve", cell, flags))
    lstm = family == "lstm"
    state_in = [p(a["states0"][0])] + ([p(a["states0"][1])] if lstm else [])
    state_out = [p(h_n, writable=True)] + ([p(c_n, writable=True)] if lstm else [])
    fwd = getattr(lib, f"fastseq_{family}_forward_{suffix}")
    capi.check(fwd(p(y, writable=True), *state_out, p(reserve), reserve.nbytes, p(a["x"]),
                   p(w["w_ih"]), p(w["w_hh"]), p(w["b_ih"]), p(w["b_hh"]), *state_in,
                   p(a["lengths"]), ffi.NULL, 0, T, B, I, H, int(reverse),
                   *FLAG[cell].values()))
    dx, dh0, dc0 = empty(a["x"].shape), empty((B, H)), empty((B, H))
    dw = {n: None if v is None else empty(v.shape) for n, v in w.items()}
    bwd = getattr(lib, f"fastseq_{family}_backward_{suffix}")
    d_in = [p(dh0, writable=True)] + ([p(dc0, writable=True)] if lstm else [])
    d_n = [p(a["dstates_n"][0])] + ([p(a["dstates_n"][1])] if lstm else [])
    capi.check(bwd(p(dx, writable=True), *d_in,
                   *[p(dw[n], writable=True) for n in ("w_ih", "w_hh", "b_ih", "b_hh")],
                   p(reserve), reserve.nbytes, p(a["x"]), p(w["w_ih"]), p(w["w_hh"]),
                   p(a["lengths"]), p(a["dy"]), *d_n, ffi.NULL, 0, T, B, I, H, int(reverse),
                   *FLAG[cell].values()))
    out = dict(y=y, h_n=h_n, dx=dx, dh0=dh0, **{"d" + n: v for n, v in dw.items() if v is not None})
    if lstm:
        out.update(c_n=c_n, dc0=dc0)
    return out


def assert_same_bits(got, ref):
    assert set(got) == set(ref)
    for name, r in ref.items():
        assert np.array_equal(got[name], r), name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", [dict(), dict(bias=False, lengths=True, reverse=True)],
                         ids=["plain", "no_bias_lengths_reverse"])
@pytest.mark.parametrize("cell", sorted(FLAG))
def test_generic_and_family_functions_give_the_same_bits(cell, options, dtype):
    reverse = options.pop("reverse", False)
    a = arrays(cell, dtype, seed=1, **options)
    assert_same_bits(generic_run(cell, a, dtype, reverse), family_run(cell, a, dtype, reverse))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", [dict(), dict(bias=False, lengths=True)])
def test_projected_lstm_through_the_generic_call_is_core_bit_for_bit(options, dtype):
    a = arrays("lstmp", dtype, T=6, B=5, I=4, H=19, P=7, seed=2, **options)
    got = generic_run("lstmp", a, dtype, reverse=True)
    w = a["params"]
    y, h_n, c_n, reserve = _core.lstm_forward(
        a["x"], w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], *a["states0"], a["lengths"], True,
        True, w_hr=w["w_hr"])
    grads = _core.lstm_backward(reserve, a["dy"], *a["dstates_n"])
    ref = dict(y=y, h_n=h_n, c_n=c_n, **{k: v for k, v in grads.items() if v is not None})
    assert got["y"].shape == (6, 5, 7) and got["dw_hr"].shape == (7, 19)
    assert_same_bits(got, ref)


def test_generic_backward_accumulates():
    dtype = np.float64
    a = arrays("lstmp", dtype, T=4, B=3, I=2, H=9, P=4, seed=3)
    fresh = generic_run("lstmp", a, dtype)
    rng = np.random.default_rng(0)
    start = {"d" + n: rng.standard_normal(v.shape) for n, v in a["params"].items()}
    acc = {k: v.copy() for k, v in start.items()}
    generic_run("lstmp", a, dtype, accumulate=acc)
    for k, v in acc.items():
        np.testing.assert_allclose(v, start[k] + fresh[k], rtol=0, atol=1e-12, err_msg=k)


def test_buffer_bytes_agree_with_the_per_family_queries():
    for cell in FLAG:
        for flags in (dict(), dict(bias=True, lengths=True, reverse=True)):
            for dtype in (np.float32, np.float64):
                opts = capi.options(dtype, 7, 3, 5, 11, **flags)
                sizes = (cell, dtype, 7, 3, 5, 11)
                assert capi.buffer_bytes("reserve", cell, opts) == capi.reserve_bytes(*sizes, **flags)
                assert (capi.buffer_bytes("forward_scratch", cell, opts)
                        == capi.forward_scratch_bytes(*sizes, False, **flags))
                assert (capi.buffer_bytes("training_scratch", cell, opts)
                        == capi.forward_scratch_bytes(*sizes, True, **flags))
                assert (capi.buffer_bytes("backward_scratch", cell, opts)
                        == capi.backward_scratch_bytes(*sizes, **flags))


def _status(call):
    code = call()
    return capi.STATUS_NAMES[code], capi.last_error()


def test_options_struct_size_is_checked():
    opts = capi.options(np.float64, 3, 2, 2, 4)
    out = ffi.new("size_t *")
    query = lambda o: lambda: lib.fastseq_buffer_bytes(out, lib.FASTSEQ_RESERVE, 2, o)  # noqa: E731
    assert _status(query(opts)) == ("FASTSEQ_OK", "")
    opts.struct_size = ffi.sizeof("fastseq_options") - 8
    status, message = _status(query(opts))
    assert status == "FASTSEQ_ERR_ARGUMENT" and "struct_size" in message, message
    # A newer caller's larger struct: accepted while the fields this library lacks are zero.
    size = ffi.sizeof("fastseq_options")
    raw = ffi.new("unsigned char[]", size + 16)
    ffi.memmove(raw, capi.options(np.float64, 3, 2, 2, 4), size)
    newer = ffi.cast("fastseq_options *", raw)
    newer.struct_size = size + 16
    assert _status(query(newer)) == ("FASTSEQ_OK", "")
    raw[size + 3] = 1
    status, message = _status(query(newer))
    assert status == "FASTSEQ_ERR_ARGUMENT" and "does not know" in message, message
    assert _status(query(ffi.NULL))[0] == "FASTSEQ_ERR_NULL_POINTER"


@pytest.mark.parametrize("change, status, words", [
    (dict(proj_size=0), "FASTSEQ_ERR_SIZE", "0 < P < H"),
    (dict(proj_size=9), "FASTSEQ_ERR_SIZE", "0 < P < H"),
    (dict(cell="lstm", proj_size=3), "FASTSEQ_ERR_SIZE", "P must be 0"),
    (dict(buffer=9), "FASTSEQ_ERR_ARGUMENT", "buffer = 9"),
    (dict(cell_value=6), "FASTSEQ_ERR_ARGUMENT", "cell = 6"),
])
def test_buffer_bytes_refuses_bad_options(change, status, words):
    cell = change.get("cell", "lstmp")
    opts = capi.options(np.float32, 3, 2, 2, 9, proj_size=change.get("proj_size", 3))
    out = ffi.new("size_t *")
    code = lib.fastseq_buffer_bytes(out, change.get("buffer", lib.FASTSEQ_RESERVE),
                                    change.get("cell_value", capi.CELLS[cell]), opts)
    assert capi.STATUS_NAMES[code] == status and words in capi.last_error(), capi.last_error()


def test_per_family_queries_send_the_projection_to_buffer_bytes():
    with pytest.raises(capi.CapiError, match="fastseq_buffer_bytes"):
        capi.reserve_bytes("lstmp", np.float32, 3, 2, 2, 9)


def test_generic_forward_checks_what_the_options_say():
    dtype = np.float64
    a = arrays("lstmp", dtype, T=3, B=2, I=2, H=6, P=2)
    # The biases are given, the flags lack FASTSEQ_BIAS.
    a_no_flag = dict(a, bias=False)
    with pytest.raises(capi.CapiError, match="FASTSEQ_ERR_ARGUMENT.*lacks FASTSEQ_BIAS"):
        generic_run("lstmp", a_no_flag, dtype)
    # w_hr NULL is refused by name.
    params = dict(a["params"], w_hr=None)
    with pytest.raises(capi.CapiError, match="w_hr is NULL"):
        generic_run("lstmp", dict(a, params=params), dtype)


def test_reserves_of_the_plain_and_projected_lstm_do_not_mix():
    dtype = np.float64
    T, B, I, H, P = 3, 2, 2, 6, 2
    plain = arrays("lstm", dtype, T, B, I, H, seed=4)
    proj = arrays("lstmp", dtype, T, B, I, H, P, seed=4)
    p = capi.ptr

    def forward(cell, a):
        opts = capi.options(dtype, T, B, I, H, proj_size=a["P"], bias=True)
        reserve = capi.aligned_bytes(capi.buffer_bytes("reserve", cell, opts))
        width = a["P"] or H
        y, h, c = np.empty((T, B, width)), np.empty((B, width)), np.empty((B, H))
        params = [a["params"][n] for n in cells.CELLS[cell].parameters]
        capi.check(lib.fastseq_forward(capi.CELLS[cell], opts, p(y), capi.pointers([h, c]),
                                       p(reserve), reserve.nbytes, p(a["x"]),
                                       capi.pointers(params), ffi.NULL, ffi.NULL, ffi.NULL, 0))
        return reserve

    def backward(cell, a, reserve):
        opts = capi.options(dtype, T, B, I, H, proj_size=a["P"], bias=True)
        params = [a["params"][n] for n in cells.CELLS[cell].parameters]
        dparams = [np.empty_like(v) for v in params]
        width = a["P"] or H
        return lib.fastseq_backward(
            capi.CELLS[cell], opts, p(np.empty_like(a["x"])),
            capi.pointers([np.empty((B, width)), np.empty((B, H))]), capi.pointers(dparams),
            p(reserve), reserve.nbytes, p(a["x"]), capi.pointers(params), ffi.NULL,
            p(a["dy"]), ffi.NULL, ffi.NULL, 0)

    for (cell, a), (other, b) in ((("lstm", plain), ("lstmp", proj)),
                                  (("lstmp", proj), ("lstm", plain))):
        code = backward(other, b, forward(cell, a))
        assert capi.STATUS_NAMES[code] in ("FASTSEQ_ERR_RESERVE_SIZE",
                                           "FASTSEQ_ERR_RESERVE_MISMATCH"), capi.last_error()
        assert backward(cell, a, forward(cell, a)) == lib.FASTSEQ_OK, capi.last_error()


def test_the_reserve_header_holds_P():
    # T = B = 1: the hprev plane of P = 2 and of P = 3 rounds to the same 64 bytes, so only
    # the header can tell the two reserves apart.
    dtype, T, B, I, H = np.float64, 1, 1, 2, 10
    o2 = capi.options(dtype, T, B, I, H, proj_size=2)
    o3 = capi.options(dtype, T, B, I, H, proj_size=3)
    assert capi.buffer_bytes("reserve", "lstmp", o2) == capi.buffer_bytes("reserve", "lstmp", o3)
    a2 = arrays("lstmp", dtype, T, B, I, H, P=2, bias=False)
    a3 = arrays("lstmp", dtype, T, B, I, H, P=3, bias=False)
    p = capi.ptr
    reserve = capi.aligned_bytes(capi.buffer_bytes("reserve", "lstmp", o2))
    params2 = capi.pointers([a2["params"][n] for n in ("w_ih", "w_hh", "w_hr")] + [None] * 2)
    capi.check(lib.fastseq_forward(
        capi.CELLS["lstmp"], o2, p(np.empty((T, B, 2))),
        capi.pointers([np.empty((B, 2)), np.empty((B, H))]), p(reserve), reserve.nbytes,
        p(a2["x"]), params2, ffi.NULL, ffi.NULL, ffi.NULL, 0))
    params3 = [a3["params"][n] for n in ("w_ih", "w_hh", "w_hr")] + [None] * 2
    code = lib.fastseq_backward(
        capi.CELLS["lstmp"], o3, p(np.empty_like(a3["x"])),
        capi.pointers([np.empty((B, 3)), np.empty((B, H))]),
        capi.pointers([None if v is None else np.empty_like(v) for v in params3]),
        p(reserve), reserve.nbytes, p(a3["x"]), capi.pointers(params3), ffi.NULL,
        p(a3["dy"]), ffi.NULL, ffi.NULL, 0)
    assert capi.STATUS_NAMES[code] == "FASTSEQ_ERR_RESERVE_MISMATCH"
    assert "P 2 there, 3 here" in capi.last_error(), capi.last_error()
