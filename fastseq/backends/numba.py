"""Numba backend: the fused RNN/LSTM/GRU time loops, JIT-compiled, with OpenBLAS GEMMs via cffi.

Same algorithm as the cpp backend (DESIGN.md "How a fused time loop works"): one input
GEMM over all rows, then per step one recurrent GEMM and a fused pointwise epilogue inside
the compiled loop; backward runs the steps in reverse with one dh·W_hh GEMM per step, then
the weight gradients as large GEMMs. The six public functions follow the contract in
``fastseq.backends``; arguments arrive validated by ``fastseq.functional``.

Rows are kept in "packed" step order, as PyTorch's packed sequences: the batch is sorted
by length (longest first, ``order``), step ``s`` works on the ``nact[s]`` sequences still
running, and its rows are ``offs[s] .. offs[s] + nact[s]`` of every (N, ·) buffer, where
N = Σ lengths. So a finished sequence costs nothing, every per-step GEMM reads a
contiguous block, and padding never enters a weight-gradient GEMM.

GEMMs go to OpenBLAS (``scipy_cblas_[sd]gemm`` of scipy-openblas32) through cffi. The cffi
function is an *argument* of every kernel, never a global: Numba refuses to cache a
function that holds a foreign function pointer as a global. When the library cannot be
loaded, the argument is None and ``_gemm`` compiles to plain loops instead.

The reserve is a dict: packed copies of what backward needs (pre-activations, states) and
references to ``w_ih``, ``w_hh`` and, when packing moves nothing (all lengths T, forward),
``x``: backward reads those as they are when it runs, as the cpp backend does.
"""
from __future__ import annotations

import warnings

import numpy as np
from numba import njit

from ..threads import get_num_threads

try:
    from ._blas_cffi import dgemm, ffi, set_num_threads as _set_blas_threads, sgemm
except Exception as _exc:  # ImportError (cffi, scipy_openblas32) or OSError (dlopen)
    ffi = None
    _set_blas_threads = None
    BLAS_ERROR: str | None = f"{type(_exc).__name__}: {_exc}"
    _GEMM = {np.dtype(np.float32): None, np.dtype(np.float64): None}
    warnings.warn(
        f"fastseq's numba backend could not load OpenBLAS through cffi ({BLAS_ERROR}); "
        "matrix products fall back to plain jitted loops, which are much slower",
        RuntimeWarning,
        stacklevel=2,
    )
else:
    BLAS_ERROR = None
    _GEMM = {np.dtype(np.float32): sgemm, np.dtype(np.float64): dgemm}

__all__ = [
    "rnn_forward", "rnn_backward",
    "lstm_forward", "lstm_backward",
    "gru_forward", "gru_backward",
]

# Every kernel is compiled once per (dtype, BLAS-or-loops) and cached on disk. nogil: the
# kernels touch no Python object, so Python threads can run several models at once.
# error_model="numpy": no zero-division checks in the hot loops (1 + exp(-v) >= 1 anyway).
_jit = njit(cache=True, nogil=True, error_model="numpy")

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


# --------------------------------------------------------------------------------------
# GEMM: C[co:] = alpha · op(A[ao:]) · op(B[bo:]) + beta · C[co:], row-major, on flat arrays.
# a, b, c are 1-D C-contiguous; ao/bo/co are element offsets and lda/ldb/ldc row strides,
# so column blocks (a GRU gate block, a step's rows) are addressed without copies.
# --------------------------------------------------------------------------------------


@_jit
def _gemm_loops(ta, tb, m, n, k, alpha, a, ao, lda, b, bo, ldb, beta, c, co, ldc):
    for i in range(m):
        ci = co + i * ldc
        for j in range(n):
            c[ci + j] = 0.0 if beta == 0.0 else beta * c[ci + j]
        if tb:  # C[i, j] += A[i, :] · B[j, :]: a dot product per output
            for j in range(n):
                acc = 0.0
                bj = bo + j * ldb
                for p in range(k):
                    aip = a[ao + p * lda + i] if ta else a[ao + i * lda + p]
                    acc += aip * b[bj + p]
                c[ci + j] += alpha * acc
        else:  # C[i, :] += A[i, p] · B[p, :]: unit stride in the inner loop
            for p in range(k):
                aip = alpha * (a[ao + p * lda + i] if ta else a[ao + i * lda + p])
                bp = bo + p * ldb
                for j in range(n):
                    c[ci + j] += aip * b[bp + j]


@_jit
def _gemm(blas, ta, tb, m, n, k, alpha, a, ao, lda, b, bo, ldb, beta, c, co, ldc):
    # `blas is None` is decided at compile time: each specialisation keeps one branch.
    if blas is None:
        _gemm_loops(ta, tb, m, n, k, alpha, a, ao, lda, b, bo, ldb, beta, c, co, ldc)
    else:
        blas(_ROW_MAJOR, _TRANS if ta else _NO_TRANS, _TRANS if tb else _NO_TRANS,
             m, n, k, alpha, ffi.from_buffer(a[ao:]), lda, ffi.from_buffer(b[bo:]), ldb,
             beta, ffi.from_buffer(c[co:]), ldc)


# --------------------------------------------------------------------------------------
# Small helpers shared by the cells
# --------------------------------------------------------------------------------------


@_jit
def _flat(a):
    return a.reshape(a.size)


# Vectorised exp. The epilogues would otherwise spend most of their time in scalar libm
# calls (one per gate and unit): instead each phase fills a block of arguments, one loop
# (which LLVM vectorises) takes exp of the whole block, and the gate formulas read it:
#   sigmoid(a) = 1 / (1 + exp(-a)),   1 - sigmoid(a) = exp(-a) / (1 + exp(-a));
#   tanh(a) = sign(a) (1 - e) / (1 + e),   1 - tanh(a)^2 = 4e / (1 + e)^2,  e = exp(-2|a|).
# The reserve keeps pre-activations, not activations, so that backward gets both sigmoid
# factors and the tanh slope with full relative precision: sigmoid(20) rounds to 1.0f, and
# 1 - 1.0f = 0 would lose a slope of 2e-9 that a large input turns into a visible weight
# gradient.
#
# exp(v) = 2^t · exp(r), t = round(v / ln 2), r = v - t ln 2 (ln 2 split in two so that
# t·ln2_hi is exact), exp(r) by its Taylor polynomial of degree 11 (|r| <= ln2/2: relative
# error < 1e-14), 2^t built in the exponent bits. v is clamped first, to where t is at most
# 128 (float32) or 1024 (float64): 2^t then has the exponent bits of +inf, so exp(v) is +inf
# from v = 88.38 (709.44) on, a little before its true overflow, and exp(inf) = inf. sigmoid
# is then exactly 0 at -inf (0 * inf downstream is NaN, as in the reference), sigmoid and
# tanh saturate exactly, and NaN stays NaN.


@_jit
def _exp_workspace(n, like):
    """Constants in ``like``'s dtype, and exponent-bit scratch, for ``_vexp`` of n values.

    Returns (c, bits32, bits64); c[0:3] are 1, 2, 4 in the array dtype, for the epilogues
    (a float literal would promote float32 arithmetic to float64).
    """
    c = np.empty(21, like.dtype)
    single = like.itemsize == 4
    c[0], c[1], c[2] = 1.0, 2.0, 4.0
    c[3] = 1.4426950408889634  # log2(e)
    if single:
        c[4], c[5], c[6], c[7] = 0.693145751953125, 1.428606765330187e-06, -87.0, 89.0
    else:
        c[4], c[5], c[6], c[7] = 0.6931471803691238, 1.9082149292705877e-10, -708.0, 710.0
    c[8] = 0.5
    f = 1.0
    for k in range(1, 12):
        f *= k
    for i in range(12):  # c[9 + i] = 1 / (11 - i)!
        c[9 + i] = 1.0 / f
        f /= max(11 - i, 1)
    return c, np.empty(n if single else 0, np.int32), np.empty(0 if single else n, np.int64)


@_jit
def _vexp(a, n, ws):
    """a[:n] = exp(a[:n]) in place (a is 1-D, C-contiguous)."""
    c, bits32, bits64 = ws
    l2e, hi, lo, vmin, vmax, half = c[3], c[4], c[5], c[6], c[7], c[8]
    p11, p10, p9, p8, p7, p6 = c[9], c[10], c[11], c[12], c[13], c[14]
    p5, p4, p3, p2, p1, p0 = c[15], c[16], c[17], c[18], c[19], c[20]
    single = bits32.size > 0
    for k in range(n):
        v = a[k]
        v = vmin if v < vmin else v
        v = vmax if v > vmax else v
        t = np.floor(v * l2e + half)
        t = t if t == t else half - half  # NaN: a finite t (the result stays NaN through r)
        r = (v - t * hi) - t * lo
        p = p11 * r + p10
        p = p * r + p9
        p = p * r + p8
        p = p * r + p7
        p = p * r + p6
        p = p * r + p5
        p = p * r + p4
        p = p * r + p3
        p = p * r + p2
        p = p * r + p1
        a[k] = p * r + p0
        if single:
            bits32[k] = (np.int64(t) + 127) << 23
        else:
            bits64[k] = (np.int64(t) + 1023) << 52
    if single:
        scale32 = bits32.view(np.float32)
        for k in range(n):
            a[k] *= scale32[k]
    else:
        scale64 = bits64.view(np.float64)
        for k in range(n):
            a[k] *= scale64[k]


@_jit
def _sigmoid_pair(a, e, one):
    """(sigmoid(a), 1 - sigmoid(a)) from e = exp(-|a|), each to full relative precision."""
    q = one / (one + e)
    if a >= 0:
        return q, e * q
    return e * q, q


@_jit
def _tanh_of(a, e, one):
    """tanh(a) from e = exp(-2|a|)."""
    t = (one - e) / (one + e)
    return t if a >= 0 else -t


@_jit
def _tanh_slope(e, one, four):
    """1 - tanh(a)^2 from e = exp(-2|a|), accurate where tanh(a) rounds to +-1."""
    q = one / (one + e)
    return four * e * q * q


@_jit
def _schedule(lengths):
    """Sort the batch by length and count, per step, the sequences still running.

    Returns order (B,) batch index of packed row j; ls (B,) lengths[order], descending;
    nact (S,) active rows at step s, S = max length; offs (S+1,) first packed row of step s.
    """
    B = lengths.size
    # Counting sort, longest first, stable (equal lengths keep batch order); it compiles in
    # a fraction of the time np.argsort takes.
    S = 0
    for b in range(B):
        S = max(S, lengths[b])
    start = np.zeros(S + 2, np.int64)  # start[S - L + 1] counts the sequences of length L
    for b in range(B):
        start[S - lengths[b] + 1] += 1
    for i in range(1, S + 2):
        start[i] += start[i - 1]
    order = np.empty(B, np.int64)
    ls = np.empty(B, np.int64)
    for b in range(B):
        i = start[S - lengths[b]]
        start[S - lengths[b]] += 1
        order[i] = b
        ls[i] = lengths[b]
    nact = np.empty(S, np.int64)
    offs = np.empty(S + 1, np.int64)
    offs[0] = 0
    j = B
    for s in range(S):
        while j > 0 and ls[j - 1] <= s:
            j -= 1
        nact[s] = j
        offs[s + 1] = offs[s] + j
    return order, ls, nact, offs


@_jit
def _copy_row(dst, src):
    # explicit loop: slice assignment compiles to far more code (and compile time)
    for k in range(dst.size):
        dst[k] = src[k]


@_jit
def _is_identity(T, B, ls, reverse):
    """Packed order equals time-major order: every sequence has T steps, forward."""
    return (not reverse) and ls[B - 1] == T


@_jit
def _pack(x, order, ls, nact, offs, reverse):
    """(T, B, F) time-major -> (N, F) packed step order (a view when nothing moves)."""
    T, B, F = x.shape
    if _is_identity(T, B, ls, reverse):
        return x.reshape(T * B, F)
    out = np.empty((offs[nact.size], F), x.dtype)
    for s in range(nact.size):
        for j in range(nact[s]):
            t = ls[j] - 1 - s if reverse else s
            _copy_row(out[offs[s] + j], x[t, order[j]])
    return out


@_jit
def _unpack(xp, T, B, order, ls, nact, offs, reverse):
    """(N, F) packed -> (T, B, F) time-major, zeros past each length."""
    F = xp.shape[1]
    if _is_identity(T, B, ls, reverse):
        return xp.reshape(T, B, F)
    out = np.zeros((T, B, F), xp.dtype)
    for s in range(nact.size):
        for j in range(nact[s]):
            t = ls[j] - 1 - s if reverse else s
            _copy_row(out[t, order[j]], xp[offs[s] + j])
    return out


@_jit
def _gather_state(h0, order):
    out = np.empty(h0.shape, h0.dtype)
    for j in range(order.size):
        _copy_row(out[j], h0[order[j]])
    return out


@_jit
def _scatter_state(h, order):
    out = np.empty(h.shape, h.dtype)
    for j in range(order.size):
        _copy_row(out[order[j]], h[j])
    return out


@_jit
def _colsum(a):
    out = np.zeros(a.shape[1], a.dtype)
    for r in range(a.shape[0]):
        for k in range(a.shape[1]):
            out[k] += a[r, k]
    return out


@_jit
def _weight_grads(blas, dgx, xp, w_ih, T, B, order, ls, nact, offs, reverse):
    """dW_ih = dGxᵀ·X and dx = dGx·W_ih (both one GEMM over all N packed rows)."""
    N, GH = dgx.shape
    I = xp.shape[1]
    dw_ih = np.empty((GH, I), dgx.dtype)
    _gemm(blas, True, False, GH, I, N, 1.0, _flat(dgx), 0, GH, _flat(xp), 0, I,
          0.0, _flat(dw_ih), 0, I)
    dxp = np.empty((N, I), dgx.dtype)
    _gemm(blas, False, False, N, I, GH, 1.0, _flat(dgx), 0, GH, _flat(w_ih), 0, I,
          0.0, _flat(dxp), 0, I)
    return dw_ih, _unpack(dxp, T, B, order, ls, nact, offs, reverse)


# --------------------------------------------------------------------------------------
# RNN: h' = act(W_ih x + b_ih + W_hh h + b_hh), act = tanh or relu
# reserve: xp (N, I), pre (N, H) pre-activations, hprev (N, H) states before each step
# --------------------------------------------------------------------------------------


@_jit
def _rnn_forward(blas, x, w_ih, w_hh, bias, h0, lengths, reverse, training, relu):
    T, B, I = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    order, ls, nact, offs = _schedule(lengths)
    N = offs[nact.size]
    xp = _pack(x, order, ls, nact, offs, reverse)
    # 1. input projection for all steps: one GEMM over N rows
    gx = np.empty((N, H), dt)
    _gemm(blas, False, True, N, H, I, 1.0, _flat(xp), 0, I, _flat(w_ih), 0, I,
          0.0, _flat(gx), 0, H)
    y = np.zeros((T, B, H), dt) if N < T * B else np.empty((T, B, H), dt)
    R = N if training else 0
    pre = np.empty((R, H), dt)
    hprev = np.empty((R, H), dt)
    h = _gather_state(h0, order)
    gh = np.empty((B, H), dt)
    ex = np.empty((B, H), dt)
    ws = _exp_workspace(B * H, x)
    one = ws[0][0]
    hf, ghf, exf, whf = _flat(h), _flat(gh), _flat(ex), _flat(w_hh)
    # 2. the time loop: recurrent GEMM, then the epilogue on the active rows
    for s in range(nact.size):
        m, o = nact[s], offs[s]
        _gemm(blas, False, True, m, H, H, 1.0, hf, 0, H, whf, 0, H, 0.0, ghf, 0, H)
        for j in range(m):
            r = o + j
            if training:
                _copy_row(hprev[r], h[j])
            for k in range(H):
                v = gx[r, k] + gh[j, k] + bias[k]
                gh[j, k] = v
                ex[j, k] = -2 * abs(v)
                if training:
                    pre[r, k] = v
        if not relu:
            _vexp(exf, m * H, ws)
        for j in range(m):
            t = ls[j] - 1 - s if reverse else s
            b = order[j]
            for k in range(H):
                v = gh[j, k]
                if relu:
                    v = 0 if v <= 0 else v  # NaN stays NaN
                else:
                    v = _tanh_of(v, ex[j, k], one)
                h[j, k] = v
                y[t, b, k] = v
    return y, _scatter_state(h, order), xp, pre, hprev, order, ls, nact, offs


@_jit
def _rnn_backward(blas, xp, w_ih, w_hh, pre, hprev, order, ls, nact, offs, reverse, relu,
                  dy, dh_n):
    T, B, H = dy.shape
    N = pre.shape[0]
    dt = dy.dtype
    dg = np.empty((N, H), dt)
    dh = _gather_state(dh_n, order)  # the carried gradient wrt h, packed order
    ex = np.empty((B, H), dt)
    ws = _exp_workspace(B * H, dy)
    one, four = ws[0][0], ws[0][2]
    zero = one - one
    dhf, dgf, exf, whf = _flat(dh), _flat(dg), _flat(ex), _flat(w_hh)
    # 1. steps in reverse: pointwise gate gradient, then dh_prev = dG · W_hh
    for s in range(nact.size - 1, -1, -1):
        m, o = nact[s], offs[s]
        if not relu:
            for j in range(m):
                for k in range(H):
                    ex[j, k] = -2 * abs(pre[o + j, k])
            _vexp(exf, m * H, ws)
        for j in range(m):
            r = o + j
            t = ls[j] - 1 - s if reverse else s
            b = order[j]
            for k in range(H):
                d = dh[j, k] + dy[t, b, k]
                if relu:  # d * relu'(pre), NaN where pre is NaN (a diverged unit)
                    p = pre[r, k]
                    dg[r, k] = d if p > 0 else (d * zero if p <= 0 else p)
                else:
                    dg[r, k] = d * _tanh_slope(ex[j, k], one, four)
        _gemm(blas, False, False, m, H, H, 1.0, dgf, o * H, H, whf, 0, H, 0.0, dhf, 0, H)
    # 2. weight gradients: large GEMMs over all rows
    dw_hh = np.empty((H, H), dt)
    _gemm(blas, True, False, H, H, N, 1.0, dgf, 0, H, _flat(hprev), 0, H,
          0.0, _flat(dw_hh), 0, H)
    dw_ih, dx = _weight_grads(blas, dg, xp, w_ih, T, B, order, ls, nact, offs, reverse)
    db = _colsum(dg)
    return dx, _scatter_state(dh, order), dw_ih, dw_hh, db


# --------------------------------------------------------------------------------------
# LSTM, gates i, f, g, o: c' = f*c + i*g, h' = o*tanh(c')
# reserve: xp (N, I), gates (N, 4H) pre-activations, cs (N, H) c', cprev (N, H), hprev (N, H)
# --------------------------------------------------------------------------------------


@_jit
def _lstm_forward(blas, x, w_ih, w_hh, bias, h0, c0, lengths, reverse, training):
    T, B, I = x.shape
    H = w_hh.shape[1]
    G = 4 * H
    dt = x.dtype
    order, ls, nact, offs = _schedule(lengths)
    N = offs[nact.size]
    xp = _pack(x, order, ls, nact, offs, reverse)
    # 1. input projection for all steps
    gx = np.empty((N, G), dt)
    _gemm(blas, False, True, N, G, I, 1.0, _flat(xp), 0, I, _flat(w_ih), 0, I,
          0.0, _flat(gx), 0, G)
    y = np.zeros((T, B, H), dt) if N < T * B else np.empty((T, B, H), dt)
    R = N if training else 0
    gates = np.empty((R, G), dt)
    cs = np.empty((R, H), dt)
    cprev = np.empty((R, H), dt)
    hprev = np.empty((R, H), dt)
    h = _gather_state(h0, order)
    c = _gather_state(c0, order)
    gh = np.empty((B, G), dt)   # recurrent product, then the pre-activations
    ex = np.empty((B, G), dt)   # exp arguments, then exps, of the four gates
    ec = np.empty((B, H), dt)   # the same for tanh(c')
    ws = _exp_workspace(B * G, x)
    one = ws[0][0]
    hf, ghf, exf, ecf, whf = _flat(h), _flat(gh), _flat(ex), _flat(ec), _flat(w_hh)
    # 2. time loop
    for s in range(nact.size):
        m, o = nact[s], offs[s]
        _gemm(blas, False, True, m, G, H, 1.0, hf, 0, H, whf, 0, H, 0.0, ghf, 0, G)
        # a. pre-activations of the block, and the arguments of their exps
        for j in range(m):
            r = o + j
            for q in range(G):
                gh[j, q] = gx[r, q] + gh[j, q] + bias[q]
            for k in range(H):
                ex[j, k] = -gh[j, k]
                ex[j, H + k] = -gh[j, H + k]
                ex[j, 2 * H + k] = -2 * abs(gh[j, 2 * H + k])
                ex[j, 3 * H + k] = -gh[j, 3 * H + k]
            if training:
                _copy_row(gates[r], gh[j])
                _copy_row(hprev[r], h[j])
                _copy_row(cprev[r], c[j])
        _vexp(exf, m * G, ws)
        # b. gates and the new cell state
        for j in range(m):
            for k in range(H):
                ig = one / (one + ex[j, k])
                fg = one / (one + ex[j, H + k])
                gg = _tanh_of(gh[j, 2 * H + k], ex[j, 2 * H + k], one)
                cn = fg * c[j, k] + ig * gg
                c[j, k] = cn
                ec[j, k] = -2 * abs(cn)
        _vexp(ecf, m * H, ws)
        # c. the new hidden state
        for j in range(m):
            r = o + j
            t = ls[j] - 1 - s if reverse else s
            b = order[j]
            for k in range(H):
                og = one / (one + ex[j, 3 * H + k])
                hn = og * _tanh_of(c[j, k], ec[j, k], one)
                h[j, k] = hn
                y[t, b, k] = hn
            if training:
                _copy_row(cs[r], c[j])
    return (y, _scatter_state(h, order), _scatter_state(c, order),
            xp, gates, cs, cprev, hprev, order, ls, nact, offs)


@_jit
def _lstm_backward(blas, xp, w_ih, w_hh, gates, cs, cprev, hprev, order, ls, nact, offs,
                   reverse, dy, dh_n, dc_n):
    T, B, H = dy.shape
    G = 4 * H
    N = cs.shape[0]
    dt = dy.dtype
    dg = np.empty((N, G), dt)
    dh = _gather_state(dh_n, order)
    dc = _gather_state(dc_n, order)
    ex = np.empty((B, G), dt)
    ec = np.empty((B, H), dt)
    ws = _exp_workspace(B * G, dy)
    one, four = ws[0][0], ws[0][2]
    dhf, dgf, exf, ecf, whf = _flat(dh), _flat(dg), _flat(ex), _flat(ec), _flat(w_hh)
    # 1. steps in reverse
    for s in range(nact.size - 1, -1, -1):
        m, o = nact[s], offs[s]
        for j in range(m):
            r = o + j
            for k in range(H):
                ex[j, k] = -abs(gates[r, k])
                ex[j, H + k] = -abs(gates[r, H + k])
                ex[j, 2 * H + k] = -2 * abs(gates[r, 2 * H + k])
                ex[j, 3 * H + k] = -abs(gates[r, 3 * H + k])
                ec[j, k] = -2 * abs(cs[r, k])
        _vexp(exf, m * G, ws)
        _vexp(ecf, m * H, ws)
        for j in range(m):
            r = o + j
            t = ls[j] - 1 - s if reverse else s
            b = order[j]
            for k in range(H):
                ig, ig1 = _sigmoid_pair(gates[r, k], ex[j, k], one)  # ig1 = 1 - ig
                fg, fg1 = _sigmoid_pair(gates[r, H + k], ex[j, H + k], one)
                og, og1 = _sigmoid_pair(gates[r, 3 * H + k], ex[j, 3 * H + k], one)
                gg = _tanh_of(gates[r, 2 * H + k], ex[j, 2 * H + k], one)
                tc = _tanh_of(cs[r, k], ec[j, k], one)
                dhk = dh[j, k] + dy[t, b, k]
                dck = dc[j, k] + dhk * og * _tanh_slope(ec[j, k], one, four)
                dg[r, k] = dck * gg * ig * ig1
                dg[r, H + k] = dck * cprev[r, k] * fg * fg1
                dg[r, 2 * H + k] = dck * ig * _tanh_slope(ex[j, 2 * H + k], one, four)
                dg[r, 3 * H + k] = dhk * tc * og * og1
                dc[j, k] = dck * fg
        _gemm(blas, False, False, m, H, G, 1.0, dgf, o * G, G, whf, 0, H, 0.0, dhf, 0, H)
    # 2. weight gradients
    dw_hh = np.empty((G, H), dt)
    _gemm(blas, True, False, G, H, N, 1.0, dgf, 0, G, _flat(hprev), 0, H,
          0.0, _flat(dw_hh), 0, H)
    dw_ih, dx = _weight_grads(blas, dg, xp, w_ih, T, B, order, ls, nact, offs, reverse)
    db = _colsum(dg)
    return dx, _scatter_state(dh, order), _scatter_state(dc, order), dw_ih, dw_hh, db


# --------------------------------------------------------------------------------------
# GRU, gates r, z, n: h' = (1-z)*n + z*h
#   reset_after:  n = tanh(W_in x + b_in + r*(W_hn h + b_hn))
#   reset_before: n = tanh(W_in x + b_in + W_hn (r*h) + b_hn)
# reserve: xp (N, I), gates (N, 3H) pre-activations, hprev (N, H), and
#   aux (N, H): W_hn h + b_hn (reset_after) or r*h (reset_before)
# --------------------------------------------------------------------------------------


@_jit
def _gru_forward(blas, x, w_ih, w_hh, b_ih, b_hh, h0, lengths, reverse, training,
                 reset_after):
    T, B, I = x.shape
    H = w_hh.shape[1]
    G = 3 * H
    dt = x.dtype
    order, ls, nact, offs = _schedule(lengths)
    N = offs[nact.size]
    xp = _pack(x, order, ls, nact, offs, reverse)
    # b_hn stays out of the folded bias only when reset applies after the product.
    bias = b_ih + b_hh
    b_hn = np.zeros(H, dt)
    if reset_after:
        for k in range(H):
            bias[2 * H + k] = b_ih[2 * H + k]
            b_hn[k] = b_hh[2 * H + k]
    # 1. input projection for all steps
    gx = np.empty((N, G), dt)
    _gemm(blas, False, True, N, G, I, 1.0, _flat(xp), 0, I, _flat(w_ih), 0, I,
          0.0, _flat(gx), 0, G)
    y = np.zeros((T, B, H), dt) if N < T * B else np.empty((T, B, H), dt)
    R = N if training else 0
    gates = np.empty((R, G), dt)
    aux = np.empty((R, H), dt)
    hprev = np.empty((R, H), dt)
    h = _gather_state(h0, order)
    gh = np.empty((B, G), dt)   # recurrent products
    pa = np.empty((B, G), dt)   # pre-activations
    ex = np.empty((B, 2 * H), dt)  # exp arguments, then exps: r and z
    en = np.empty((B, H), dt)      # the same for n
    rh = np.empty((B, H), dt)
    ws = _exp_workspace(B * 2 * H, x)
    one = ws[0][0]
    hf, ghf, exf, enf, rhf, whf = _flat(h), _flat(gh), _flat(ex), _flat(en), _flat(rh), _flat(w_hh)
    # 2. time loop
    for s in range(nact.size):
        m, o = nact[s], offs[s]
        # a. r and z. Without reset_after, r must be known before the n-block product:
        # two dependent GEMMs per step.
        _gemm(blas, False, True, m, G if reset_after else 2 * H, H, 1.0, hf, 0, H, whf, 0, H,
              0.0, ghf, 0, G)
        for j in range(m):
            r = o + j
            for k in range(2 * H):
                v = gx[r, k] + gh[j, k] + bias[k]
                pa[j, k] = v
                ex[j, k] = -v
        _vexp(exf, m * 2 * H, ws)
        if not reset_after:
            for j in range(m):
                for k in range(H):
                    rh[j, k] = h[j, k] / (one + ex[j, k])
            _gemm(blas, False, True, m, H, H, 1.0, rhf, 0, H, whf, 2 * H * H, H,
                  0.0, ghf, 2 * H, G)
        # b. the n gate
        for j in range(m):
            r = o + j
            for k in range(H):
                if reset_after:
                    hn = gh[j, 2 * H + k] + b_hn[k]
                    gh[j, 2 * H + k] = hn
                    v = gx[r, 2 * H + k] + bias[2 * H + k] + hn / (one + ex[j, k])
                else:
                    v = gx[r, 2 * H + k] + bias[2 * H + k] + gh[j, 2 * H + k]
                pa[j, 2 * H + k] = v
                en[j, k] = -2 * abs(v)
        _vexp(enf, m * H, ws)
        # c. the new hidden state
        for j in range(m):
            r = o + j
            t = ls[j] - 1 - s if reverse else s
            b = order[j]
            if training:
                _copy_row(hprev[r], h[j])
                _copy_row(gates[r], pa[j])
                for k in range(H):
                    aux[r, k] = gh[j, 2 * H + k] if reset_after else rh[j, k]
            for k in range(H):
                zg = one / (one + ex[j, H + k])
                ng = _tanh_of(pa[j, 2 * H + k], en[j, k], one)
                hk = ng + zg * (h[j, k] - ng)
                h[j, k] = hk
                y[t, b, k] = hk
    return y, _scatter_state(h, order), xp, gates, aux, hprev, order, ls, nact, offs


@_jit
def _gru_backward(blas, xp, w_ih, w_hh, gates, aux, hprev, order, ls, nact, offs, reverse,
                  reset_after, dy, dh_n):
    T, B, H = dy.shape
    G = 3 * H
    N = hprev.shape[0]
    dt = dy.dtype
    # dgx: gradient wrt the input-side pre-activations (W_ih, b_ih, dx); dgh: wrt the
    # recurrent side (W_hh, b_hh, dh). They differ only in the n block with reset_after
    # (dgh_n = dgx_n * r), so reset_before uses one array for both.
    dgx = np.empty((N, G), dt)
    dgh = np.empty((N, G), dt) if reset_after else dgx
    dh = _gather_state(dh_n, order)
    drh = np.empty((B, H), dt)
    ex = np.empty((B, G), dt)
    ws = _exp_workspace(B * G, dy)
    one, four = ws[0][0], ws[0][2]
    dhf, dgxf, dghf, drhf, exf, whf = (_flat(dh), _flat(dgx), _flat(dgh), _flat(drh),
                                       _flat(ex), _flat(w_hh))
    # 1. steps in reverse
    for s in range(nact.size - 1, -1, -1):
        m, o = nact[s], offs[s]
        for j in range(m):
            r = o + j
            for k in range(H):
                ex[j, k] = -abs(gates[r, k])
                ex[j, H + k] = -abs(gates[r, H + k])
                ex[j, 2 * H + k] = -2 * abs(gates[r, 2 * H + k])
        _vexp(exf, m * G, ws)
        for j in range(m):
            r = o + j
            t = ls[j] - 1 - s if reverse else s
            b = order[j]
            for k in range(H):
                dhk = dh[j, k] + dy[t, b, k]
                zg, zg1 = _sigmoid_pair(gates[r, H + k], ex[j, H + k], one)  # zg1 = 1 - zg
                ng = _tanh_of(gates[r, 2 * H + k], ex[j, 2 * H + k], one)
                dn = dhk * zg1 * _tanh_slope(ex[j, 2 * H + k], one, four)
                dgx[r, H + k] = dhk * (hprev[r, k] - ng) * zg * zg1
                dgx[r, 2 * H + k] = dn
                if reset_after:
                    rg, rg1 = _sigmoid_pair(gates[r, k], ex[j, k], one)
                    dr = dn * aux[r, k] * rg * rg1
                    dgx[r, k] = dr
                    dgh[r, k] = dr
                    dgh[r, H + k] = dgx[r, H + k]
                    dgh[r, 2 * H + k] = dn * rg
                dh[j, k] = dhk * zg  # the direct path h -> h'; GEMMs add the rest
        if not reset_after:
            # d(r*h) = dn · W_hn, then the r gate and the r*h path into dh
            _gemm(blas, False, False, m, H, H, 1.0, dgxf, o * G + 2 * H, G, whf, 2 * H * H, H,
                  0.0, drhf, 0, H)
            for j in range(m):
                r = o + j
                for k in range(H):
                    rg, rg1 = _sigmoid_pair(gates[r, k], ex[j, k], one)
                    dgx[r, k] = drh[j, k] * hprev[r, k] * rg * rg1
                    dh[j, k] += drh[j, k] * rg
            _gemm(blas, False, False, m, H, 2 * H, 1.0, dgxf, o * G, G, whf, 0, H,
                  1.0, dhf, 0, H)
        else:
            _gemm(blas, False, False, m, H, G, 1.0, dghf, o * G, G, whf, 0, H, 1.0, dhf, 0, H)
    # 2. weight gradients
    dw_hh = np.empty((G, H), dt)
    dwf = _flat(dw_hh)
    if reset_after:
        _gemm(blas, True, False, G, H, N, 1.0, dghf, 0, G, _flat(hprev), 0, H, 0.0, dwf, 0, H)
    else:  # r and z against h, n against r*h
        _gemm(blas, True, False, 2 * H, H, N, 1.0, dgxf, 0, G, _flat(hprev), 0, H,
              0.0, dwf, 0, H)
        _gemm(blas, True, False, H, H, N, 1.0, dgxf, 2 * H, G, _flat(aux), 0, H,
              0.0, dwf, 2 * H * H, H)
    dw_ih, dx = _weight_grads(blas, dgx, xp, w_ih, T, B, order, ls, nact, offs, reverse)
    return dx, _scatter_state(dh, order), dw_ih, dw_hh, _colsum(dgx), _colsum(dgh)


# --------------------------------------------------------------------------------------
# The contract (see fastseq.backends): argument normalisation around the kernels
# --------------------------------------------------------------------------------------


def _blas(dtype):
    """The GEMM for ``dtype``, with OpenBLAS set to fastseq's thread count.

    This backend's parallelism is OpenBLAS's own. The library is shared with libfastseq,
    which pins it to one thread for its kernels (they run their own pool), so every call
    here sets it back to ``fastseq.get_num_threads()``.
    """
    if _set_blas_threads is not None:
        _set_blas_threads(get_num_threads())
    return _GEMM[np.dtype(dtype)]


def _lengths(lengths, T, B):
    return np.full(B, T, np.int64) if lengths is None else lengths


def _state(s, B, H, dtype):
    return np.zeros((B, H), dtype) if s is None else s


def _biases(b_ih, b_hh, GH, dtype):
    if b_ih is None:
        z = np.zeros(GH, dtype)
        return z, z
    return b_ih, b_hh


def rnn_forward(x, w_ih, w_hh, b_ih, b_hh, h0, lengths, reverse, training, nonlinearity):
    """Elman RNN over a sequence: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``.

    Shapes as in the backend contract; returns ``(y, h_n, reserve)``.
    """
    T, B, _ = x.shape
    H = w_hh.shape[1]
    b_ih_, b_hh_ = _biases(b_ih, b_hh, H, x.dtype)
    relu = nonlinearity == "relu"
    y, h_n, *saved = _rnn_forward(
        _blas(x.dtype), x, w_ih, w_hh, b_ih_ + b_hh_, _state(h0, B, H, x.dtype),
        _lengths(lengths, T, B), bool(reverse), bool(training), relu)
    if not training:
        return y, h_n, None
    reserve = dict(cell="rnn", w_ih=w_ih, w_hh=w_hh, bias=b_ih is not None,
                   reverse=bool(reverse), relu=relu, saved=saved)
    return y, h_n, reserve


def rnn_backward(reserve, dy, dh_n):
    """Gradients of an RNN forward; returns dict(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)."""
    xp, pre, hprev, order, ls, nact, offs = reserve["saved"]
    B, H = dy.shape[1], dy.shape[2]
    dx, dh0, dw_ih, dw_hh, db = _rnn_backward(
        _blas(dy.dtype), xp, reserve["w_ih"], reserve["w_hh"], pre, hprev, order, ls, nact,
        offs, reserve["reverse"], reserve["relu"], dy, _state(dh_n, B, H, dy.dtype))
    return _grads(reserve, dx=dx, dh0=dh0, dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db, db_hh=db)


def lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, reverse, training):
    """LSTM over a sequence (gates i, f, g, o): ``c' = f*c + i*g``, ``h' = o*tanh(c')``.

    Shapes as in the backend contract; returns ``(y, h_n, c_n, reserve)``.
    """
    T, B, _ = x.shape
    H = w_hh.shape[1]
    b_ih_, b_hh_ = _biases(b_ih, b_hh, 4 * H, x.dtype)
    y, h_n, c_n, *saved = _lstm_forward(
        _blas(x.dtype), x, w_ih, w_hh, b_ih_ + b_hh_, _state(h0, B, H, x.dtype),
        _state(c0, B, H, x.dtype), _lengths(lengths, T, B), bool(reverse), bool(training))
    if not training:
        return y, h_n, c_n, None
    reserve = dict(cell="lstm", w_ih=w_ih, w_hh=w_hh, bias=b_ih is not None,
                   reverse=bool(reverse), saved=saved)
    return y, h_n, c_n, reserve


def lstm_backward(reserve, dy, dh_n, dc_n):
    """Gradients of an LSTM forward; returns dict(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh)."""
    xp, gates, cs, cprev, hprev, order, ls, nact, offs = reserve["saved"]
    B, H = dy.shape[1], dy.shape[2]
    dx, dh0, dc0, dw_ih, dw_hh, db = _lstm_backward(
        _blas(dy.dtype), xp, reserve["w_ih"], reserve["w_hh"], gates, cs, cprev, hprev,
        order, ls, nact, offs, reserve["reverse"], dy, _state(dh_n, B, H, dy.dtype),
        _state(dc_n, B, H, dy.dtype))
    return _grads(reserve, dx=dx, dh0=dh0, dc0=dc0, dw_ih=dw_ih, dw_hh=dw_hh,
                  db_ih=db, db_hh=db)


def gru_forward(x, w_ih, w_hh, b_ih, b_hh, h0, lengths, reverse, training, reset_after):
    """GRU over a sequence (gates r, z, n): ``h' = (1-z)*n + z*h``.

    ``reset_after=True``: ``n = tanh(W_in x + b_in + r*(W_hn h + b_hn))`` (PyTorch);
    ``False``: ``n = tanh(W_in x + b_in + W_hn (r*h) + b_hn)`` (Cho et al.).
    Shapes as in the backend contract; returns ``(y, h_n, reserve)``.
    """
    T, B, _ = x.shape
    H = w_hh.shape[1]
    b_ih_, b_hh_ = _biases(b_ih, b_hh, 3 * H, x.dtype)
    y, h_n, *saved = _gru_forward(
        _blas(x.dtype), x, w_ih, w_hh, b_ih_, b_hh_, _state(h0, B, H, x.dtype),
        _lengths(lengths, T, B), bool(reverse), bool(training), bool(reset_after))
    if not training:
        return y, h_n, None
    reserve = dict(cell="gru", w_ih=w_ih, w_hh=w_hh, bias=b_ih is not None,
                   reverse=bool(reverse), reset_after=bool(reset_after), saved=saved)
    return y, h_n, reserve


def gru_backward(reserve, dy, dh_n):
    """Gradients of a GRU forward; returns dict(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)."""
    xp, gates, aux, hprev, order, ls, nact, offs = reserve["saved"]
    B, H = dy.shape[1], dy.shape[2]
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = _gru_backward(
        _blas(dy.dtype), xp, reserve["w_ih"], reserve["w_hh"], gates, aux, hprev, order, ls,
        nact, offs, reserve["reverse"], reserve["reset_after"], dy,
        _state(dh_n, B, H, dy.dtype))
    return _grads(reserve, dx=dx, dh0=dh0, dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db_ih,
                  db_hh=db_hh)


def _grads(reserve, **grads):
    if not reserve["bias"]:
        grads["db_ih"] = grads["db_hh"] = None
    elif grads["db_ih"] is grads["db_hh"]:
        grads["db_hh"] = grads["db_hh"].copy()  # the two are equal; never hand out one array twice
    return grads
