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
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from numba import njit

try:
    from ._blas_cffi import ffi, sgemm, dgemm
except Exception as _exc:  # ImportError (cffi, scipy_openblas32) or OSError (dlopen)
    ffi = None
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


@_jit
def _sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))  # exp overflow gives 1/inf = 0: saturates cleanly


# Backward recomputes activations from the pre-activations kept in the reserve, because
# the slopes cannot be taken from float32 activations: sigmoid(20) rounds to 1.0f, and
# 1 - 1.0f = 0 loses a slope of 2e-9 that a large input turns into a visible weight
# gradient. From the pre-activation both factors keep full relative precision.


@_jit
def _sigmoid_pair(v):
    """(sigmoid(v), 1 - sigmoid(v)), each with full relative precision."""
    e = math.exp(-abs(v))
    q = 1.0 / (1.0 + e)
    if v >= 0.0:
        return q, e * q
    return e * q, q


@_jit
def _tanh_slope(v):
    """1 - tanh(v)^2 = 4e / (1 + e)^2 with e = exp(-2|v|), accurate where tanh(v) rounds to 1."""
    e = math.exp(-2.0 * abs(v))
    q = 1.0 / (1.0 + e)
    return 4.0 * e * q * q


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
    hf, ghf, whf = _flat(h), _flat(gh), _flat(w_hh)
    # 2. the time loop: recurrent GEMM, then the epilogue on the active rows
    for s in range(nact.size):
        m, o = nact[s], offs[s]
        _gemm(blas, False, True, m, H, H, 1.0, hf, 0, H, whf, 0, H, 0.0, ghf, 0, H)
        for j in range(m):
            r = o + j
            t = ls[j] - 1 - s if reverse else s
            b = order[j]
            if training:
                _copy_row(hprev[r], h[j])
            for k in range(H):
                v = gx[r, k] + gh[j, k] + bias[k]
                if training:
                    pre[r, k] = v
                if relu:
                    v = 0.0 if v <= 0.0 else v  # NaN stays NaN
                else:
                    v = math.tanh(v)
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
    dhf, dgf, whf = _flat(dh), _flat(dg), _flat(w_hh)
    # 1. steps in reverse: pointwise gate gradient, then dh_prev = dG · W_hh
    for s in range(nact.size - 1, -1, -1):
        m, o = nact[s], offs[s]
        for j in range(m):
            r = o + j
            t = ls[j] - 1 - s if reverse else s
            b = order[j]
            for k in range(H):
                d = dh[j, k] + dy[t, b, k]
                v = pre[r, k]
                if relu:
                    dg[r, k] = d if v > 0.0 else 0.0
                else:
                    dg[r, k] = d * _tanh_slope(v)
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
    gh = np.empty((B, G), dt)
    hf, ghf, whf = _flat(h), _flat(gh), _flat(w_hh)
    # 2. time loop
    for s in range(nact.size):
        m, o = nact[s], offs[s]
        _gemm(blas, False, True, m, G, H, 1.0, hf, 0, H, whf, 0, H, 0.0, ghf, 0, G)
        for j in range(m):
            r = o + j
            t = ls[j] - 1 - s if reverse else s
            b = order[j]
            if training:
                _copy_row(hprev[r], h[j])
                _copy_row(cprev[r], c[j])
            for k in range(H):
                ai = gx[r, k] + gh[j, k] + bias[k]
                af = gx[r, H + k] + gh[j, H + k] + bias[H + k]
                ag = gx[r, 2 * H + k] + gh[j, 2 * H + k] + bias[2 * H + k]
                ao = gx[r, 3 * H + k] + gh[j, 3 * H + k] + bias[3 * H + k]
                ig = _sigmoid(ai)
                fg = _sigmoid(af)
                gg = math.tanh(ag)
                og = _sigmoid(ao)
                cn = fg * c[j, k] + ig * gg
                hn = og * math.tanh(cn)
                c[j, k] = cn
                h[j, k] = hn
                y[t, b, k] = hn
                if training:
                    gates[r, k] = ai
                    gates[r, H + k] = af
                    gates[r, 2 * H + k] = ag
                    gates[r, 3 * H + k] = ao
                    cs[r, k] = cn
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
    dhf, dgf, whf = _flat(dh), _flat(dg), _flat(w_hh)
    # 1. steps in reverse
    for s in range(nact.size - 1, -1, -1):
        m, o = nact[s], offs[s]
        for j in range(m):
            r = o + j
            t = ls[j] - 1 - s if reverse else s
            b = order[j]
            for k in range(H):
                dhk = dh[j, k] + dy[t, b, k]
                ig, ig1 = _sigmoid_pair(gates[r, k])  # ig1 = 1 - ig
                fg, fg1 = _sigmoid_pair(gates[r, H + k])
                og, og1 = _sigmoid_pair(gates[r, 3 * H + k])
                ag = gates[r, 2 * H + k]
                gg = math.tanh(ag)
                ck = cs[r, k]
                tc = math.tanh(ck)
                dck = dc[j, k] + dhk * og * _tanh_slope(ck)
                dg[r, k] = dck * gg * ig * ig1
                dg[r, H + k] = dck * cprev[r, k] * fg * fg1
                dg[r, 2 * H + k] = dck * ig * _tanh_slope(ag)
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
    gh = np.empty((B, G), dt)
    rh = np.empty((B, H), dt)
    hf, ghf, rhf, whf = _flat(h), _flat(gh), _flat(rh), _flat(w_hh)
    # 2. time loop
    for s in range(nact.size):
        m, o = nact[s], offs[s]
        if reset_after:
            _gemm(blas, False, True, m, G, H, 1.0, hf, 0, H, whf, 0, H, 0.0, ghf, 0, G)
        else:
            # r must be known before the n-block product: two dependent GEMMs per step
            _gemm(blas, False, True, m, 2 * H, H, 1.0, hf, 0, H, whf, 0, H, 0.0, ghf, 0, G)
            for j in range(m):
                r = o + j
                for k in range(H):
                    ar = gx[r, k] + gh[j, k] + bias[k]
                    gh[j, k] = ar  # keep the pre-activation of r for the epilogue below
                    rh[j, k] = _sigmoid(ar) * h[j, k]
            _gemm(blas, False, True, m, H, H, 1.0, rhf, 0, H, whf, 2 * H * H, H,
                  0.0, ghf, 2 * H, G)
        for j in range(m):
            r = o + j
            t = ls[j] - 1 - s if reverse else s
            b = order[j]
            if training:
                _copy_row(hprev[r], h[j])
            for k in range(H):
                az = gx[r, H + k] + gh[j, H + k] + bias[H + k]
                zg = _sigmoid(az)
                if reset_after:
                    ar = gx[r, k] + gh[j, k] + bias[k]
                    hn = gh[j, 2 * H + k] + b_hn[k]
                    an = gx[r, 2 * H + k] + bias[2 * H + k] + _sigmoid(ar) * hn
                    if training:
                        aux[r, k] = hn
                else:
                    ar = gh[j, k]
                    an = gx[r, 2 * H + k] + bias[2 * H + k] + gh[j, 2 * H + k]
                    if training:
                        aux[r, k] = rh[j, k]
                ng = math.tanh(an)
                hk = h[j, k]
                hk = ng + zg * (hk - ng)
                h[j, k] = hk
                y[t, b, k] = hk
                if training:
                    gates[r, k] = ar
                    gates[r, H + k] = az
                    gates[r, 2 * H + k] = an
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
    dhf, dgxf, dghf, drhf, whf = _flat(dh), _flat(dgx), _flat(dgh), _flat(drh), _flat(w_hh)
    # 1. steps in reverse
    for s in range(nact.size - 1, -1, -1):
        m, o = nact[s], offs[s]
        for j in range(m):
            r = o + j
            t = ls[j] - 1 - s if reverse else s
            b = order[j]
            for k in range(H):
                dhk = dh[j, k] + dy[t, b, k]
                zg, zg1 = _sigmoid_pair(gates[r, H + k])  # zg1 = 1 - zg
                an = gates[r, 2 * H + k]
                ng = math.tanh(an)
                dn = dhk * zg1 * _tanh_slope(an)
                dgx[r, H + k] = dhk * (hprev[r, k] - ng) * zg * zg1
                dgx[r, 2 * H + k] = dn
                if reset_after:
                    rg, rg1 = _sigmoid_pair(gates[r, k])
                    dgx[r, k] = dn * aux[r, k] * rg * rg1
                    dgh[r, k] = dgx[r, k]
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
                    rg, rg1 = _sigmoid_pair(gates[r, k])
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
