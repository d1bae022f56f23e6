"""The numba backend's shared primitives: GEMM, the vectorised exp, the gate functions and
the packed-row schedule. Every cell and the driver build on these; none knows a cell.

GEMMs go to OpenBLAS (``scipy_cblas_[sd]gemm`` of scipy-openblas32) through cffi. The cffi
function is an *argument* of every kernel, never a global: Numba refuses to cache a
function that holds a foreign function pointer as a global. When the library cannot be
loaded, the argument is None and ``gemm`` compiles to plain loops instead.
"""
from __future__ import annotations

import warnings

import numpy as np
from numba import njit

try:
    from .._blas_cffi import dgemm, ffi, set_num_threads as set_blas_threads, sgemm
except Exception as _exc:  # ImportError (cffi, scipy_openblas32) or OSError (dlopen)
    ffi = sgemm = dgemm = set_blas_threads = None
    BLAS_ERROR: str | None = f"{type(_exc).__name__}: {_exc}"
    warnings.warn(
        f"fastseq's numba backend could not load OpenBLAS through cffi ({BLAS_ERROR}); "
        "matrix products fall back to plain jitted loops, which are much slower",
        RuntimeWarning,
        stacklevel=2,
    )
else:
    BLAS_ERROR = None

# Every kernel is compiled once per (dtype, BLAS-or-loops) and cached on disk. nogil: the
# kernels touch no Python object, so Python threads can run several models at once.
# error_model="numpy": no zero-division checks in the hot loops (1 + exp(-v) >= 1 anyway).
jit = njit(cache=True, nogil=True, error_model="numpy")
# The cells' steps: inlined into each driver at numba's IR level, so that the driver's
# constants (the option, training) reach them and the step is not a call with a dozen
# arrays per time step.
step = njit(cache=True, nogil=True, error_model="numpy", inline="always")

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


# --------------------------------------------------------------------------------------
# GEMM: C[co:] = alpha · op(A[ao:]) · op(B[bo:]) + beta · C[co:], row-major, on flat arrays.
# a, b, c are 1-D C-contiguous; ao/bo/co are element offsets and lda/ldb/ldc row strides,
# so column blocks (a GRU gate block, a step's rows) are addressed without copies.
# --------------------------------------------------------------------------------------


@jit
def gemm_loops(ta, tb, m, n, k, alpha, a, ao, lda, b, bo, ldb, beta, c, co, ldc):
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


@jit
def gemm(blas, ta, tb, m, n, k, alpha, a, ao, lda, b, bo, ldb, beta, c, co, ldc):
    # `blas is None` is decided at compile time: each specialisation keeps one branch.
    if blas is None:
        gemm_loops(ta, tb, m, n, k, alpha, a, ao, lda, b, bo, ldb, beta, c, co, ldc)
    else:
        blas(_ROW_MAJOR, _TRANS if ta else _NO_TRANS, _TRANS if tb else _NO_TRANS,
             m, n, k, alpha, ffi.from_buffer(a[ao:]), lda, ffi.from_buffer(b[bo:]), ldb,
             beta, ffi.from_buffer(c[co:]), ldc)


# --------------------------------------------------------------------------------------
# Small helpers shared by the cells
# --------------------------------------------------------------------------------------


@jit
def flat(a):
    return a.reshape(a.size)


@jit
def carve(buf, start, rows, cols):
    """A (rows, cols) C-contiguous view of the 1-D ``buf`` from element ``start`` on."""
    return buf[start:start + rows * cols].reshape(rows, cols)


# Vectorised exp. The epilogues would otherwise spend most of their time in scalar libm
# calls (one per gate and unit): instead each phase fills a block of arguments, one loop
# (which LLVM vectorises) takes exp of the whole block, and the gate formulas read it:
#   sigmoid(a) = 1 / (1 + exp(-a)),   1 - sigmoid(a) = exp(-a) / (1 + exp(-a));
#   tanh(a) = sign(a) (1 - e) / (1 + e),   1 - tanh(a)^2 = 4e / (1 + e)^2,  e = exp(-2|a|).
# (Why backward starts from pre-activations: the package docstring.)
#
# exp(v) = 2^t · exp(r), t = round(v / ln 2), r = v - t ln 2 (ln 2 split in two so that
# t·ln2_hi is exact), exp(r) by its Taylor polynomial of degree 11 (|r| <= ln2/2: relative
# error < 1e-14), 2^t built in the exponent bits. v is clamped first, to where t is at most
# 128 (float32) or 1024 (float64): 2^t then has the exponent bits of +inf, so exp(v) is +inf
# from v = 88.38 (709.44) on, a little before its true overflow, and exp(inf) = inf. sigmoid
# is then exactly 0 at -inf (0 * inf downstream is NaN, as in the reference), sigmoid and
# tanh saturate exactly, and NaN stays NaN.


@jit
def exp_workspace(n, like):
    """Constants in ``like``'s dtype, and exponent-bit scratch, for ``vexp`` of n values.

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


@jit
def vexp(a, n, ws):
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


@jit
def sigmoid_pair(a, e, one):
    """(sigmoid(a), 1 - sigmoid(a)) from e = exp(-|a|), each to full relative precision."""
    q = one / (one + e)
    if a >= 0:
        return q, e * q
    return e * q, q


@jit
def tanh_of(a, e, one):
    """tanh(a) from e = exp(-2|a|)."""
    t = (one - e) / (one + e)
    return t if a >= 0 else -t


@jit
def tanh_slope(e, one, four):
    """1 - tanh(a)^2 from e = exp(-2|a|), accurate where tanh(a) rounds to +-1."""
    q = one / (one + e)
    return four * e * q * q


@jit
def schedule(lengths):
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


@jit
def copy_row(dst, src):
    # explicit loop: slice assignment compiles to far more code (and compile time)
    for k in range(dst.size):
        dst[k] = src[k]


@jit
def is_identity(T, B, ls, reverse):
    """Packed order equals time-major order: every sequence has T steps, forward."""
    return (not reverse) and ls[B - 1] == T


@jit
def pack(x, order, ls, nact, offs, reverse):
    """(T, B, F) time-major -> (N, F) packed step order (a view when nothing moves)."""
    T, B, F = x.shape
    if is_identity(T, B, ls, reverse):
        return x.reshape(T * B, F)
    out = np.empty((offs[nact.size], F), x.dtype)
    for s in range(nact.size):
        for j in range(nact[s]):
            t = ls[j] - 1 - s if reverse else s
            copy_row(out[offs[s] + j], x[t, order[j]])
    return out


@jit
def unpack(xp, T, B, order, ls, nact, offs, reverse):
    """(N, F) packed -> (T, B, F) time-major, zeros past each length."""
    F = xp.shape[1]
    if is_identity(T, B, ls, reverse):
        return xp.reshape(T, B, F)
    out = np.zeros((T, B, F), xp.dtype)
    for s in range(nact.size):
        for j in range(nact[s]):
            t = ls[j] - 1 - s if reverse else s
            copy_row(out[t, order[j]], xp[offs[s] + j])
    return out


@jit
def gather_state(h0, order):
    out = np.empty(h0.shape, h0.dtype)
    for j in range(order.size):
        copy_row(out[j], h0[order[j]])
    return out


@jit
def scatter_state(h, order):
    out = np.empty(h.shape, h.dtype)
    for j in range(order.size):
        copy_row(out[order[j]], h[j])
    return out


@jit
def colsum(a):
    out = np.zeros(a.shape[1], a.dtype)
    for r in range(a.shape[0]):
        for k in range(a.shape[1]):
            out[k] += a[r, k]
    return out


@jit
def weight_grads(blas, dgx, xp, w_ih, T, B, order, ls, nact, offs, reverse):
    """dW_ih = dGxᵀ·X and dx = dGx·W_ih (both one GEMM over all N packed rows)."""
    N, GH = dgx.shape
    I = xp.shape[1]
    dw_ih = np.empty((GH, I), dgx.dtype)
    gemm(blas, True, False, GH, I, N, 1.0, flat(dgx), 0, GH, flat(xp), 0, I,
          0.0, flat(dw_ih), 0, I)
    dxp = np.empty((N, I), dgx.dtype)
    gemm(blas, False, False, N, I, GH, 1.0, flat(dgx), 0, GH, flat(w_ih), 0, I,
          0.0, flat(dxp), 0, I)
    return dw_ih, unpack(dxp, T, B, order, ls, nact, offs, reverse)


