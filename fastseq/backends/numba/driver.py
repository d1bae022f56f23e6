"""The one time loop of the numba backend, forward and backward, shared by every cell.

The driver owns everything a cell does not: the schedule (lengths, reverse, packed rows),
the input projection (one GEMM over all rows), the recurrent product of every step, the
second product of a two-product cell, the projection of an LSTM with ``w_hr``, the saved
inputs of those products, the scatter of y and the final states, the reverse loop of
backward with its dh·W_hh product, and the weight-gradient GEMMs and bias sums after it.

A cell is a step module (``rnn``, ``lstm``, ``gru``) and an option (``fastseq.cells``'
family and option: nonlinearity relu, reset_after, projection). The module provides:

- ``GATES`` and ``HAS_C`` (whether there is a cell state c besides h);
- ``facts(option)``: a dict of ``two_products`` (the n block's product needs the step's
  own ``mid`` first: ``forward2``/``backward2`` exist), ``recurrent_bias_apart`` (the last
  block's b_hh is not folded into the bias but passed as ``b_apart``),
  ``separate_recurrent_grad`` (the recurrent side's gate gradient ``dgh`` differs from the
  input side's ``dgx``), ``direct_h`` (h_{t-1} reaches h_t outside the product, so the
  step writes that part of dh and the product adds to it), ``aux_blocks`` (the width, in
  H, of the cell's own reserve ``aux``);
- the jitted steps, one batch block of ``m`` rows (packed rows ``o .. o+m-1``)::

    forward(option, ws, scratch, m, o, gx, gh, bias, b_apart, h, c, mid, out, training,
            gates, aux)
    backward(option, ws, scratch, m, o, gates, aux, hprev, dout, dh, dc, dgx, dgh, dmid)

  ``forward`` reads the input projection ``gx`` (N, G·H) and this step's product ``gh``
  (B, G·H, free to overwrite), updates ``c`` in place, writes the new output into ``out``
  (which may be ``h`` itself: read ``h[j, k]`` before writing ``out[j, k]``) and, when
  training, the pre-activations into ``gates`` and its extras into ``aux``. ``backward``
  reads ``dout``, the gradient of that output (may be ``dh``), and the carried ``dc``;
  writes the gate gradients into ``dgx`` (and ``dgh``), updates ``dc``, and with
  ``direct_h`` sets ``dh`` to the direct path. ``scratch`` (B·(G+1)·H elements) and ``ws``
  (``primitives.exp_workspace`` of that size) are the step's to use.

Each (cell, option) gets its own compiled driver: ``make_forward``/``make_backward`` return
a jitted closure over the module and the option (named after the cell), so the facts are
compile-time constants (the branches of other cells are pruned before typing), and the
steps (``primitives.step``: inlined at numba's IR level) see the option as a constant.
Numba caches a closure on disk keyed by its closure variables; a module pickles by name,
so the closure also holds a digest of this package's sources, or an edited step would be
served from the stale cache of the driver that inlines it.
"""
from __future__ import annotations

import hashlib
import pathlib

import numpy as np

from .primitives import (colsum, exp_workspace, flat, gather_state, gemm, jit, pack,
                         scatter_state, schedule, weight_grads)

#: Digest of every source file of this package: part of each driver's cache key.
SOURCE_DIGEST = hashlib.sha256(b"".join(
    p.read_bytes() for p in sorted(pathlib.Path(__file__).parent.glob("*.py")))).hexdigest()


def make_forward(name, cell, option):
    """The jitted forward driver of cell ``name``: step module ``cell`` with ``option``.

    ``forward(blas, x, w_ih, w_hh, w_hr, b_ih, b_hh, h0, c0, lengths, reverse, training)``
    -> ``(y, h_n, c_n, xp, gates, aux, hprev, mids, ms, order, ls, nact, offs)``: the
    outputs, then the reserve. ``w_hr`` is None or the projection (P, H); ``c0`` is
    (B, H), or (B, 0) for a cell without c; biases are arrays (zeros when absent).
    """
    G = cell.GATES
    f = cell.facts(option)
    two, apart, aux_blocks = f["two_products"], f["recurrent_bias_apart"], f["aux_blocks"]
    digest = SOURCE_DIGEST

    def forward(blas, x, w_ih, w_hh, w_hr, b_ih, b_hh, h0, c0, lengths, reverse, training):
        digest  # noqa: B018  (keeps the digest a closure variable: the cache key)
        T, B, I = x.shape
        GH, P = w_hh.shape  # P: the width of h (H, or the projection's size)
        H = GH // G
        W1 = GH - H if two else GH  # the columns of the first product
        dt = x.dtype
        order, ls, nact, offs = schedule(lengths)
        N = offs[nact.size]
        xp = pack(x, order, ls, nact, offs, reverse)
        # 1. input projection for all steps: one GEMM over N rows
        gx = np.empty((N, GH), dt)
        gemm(blas, False, True, N, GH, I, 1.0, flat(xp), 0, I, flat(w_ih), 0, I,
             0.0, flat(gx), 0, GH)
        bias = b_ih + b_hh
        b_apart = np.zeros(H, dt)
        if apart:
            for k in range(H):
                bias[GH - H + k] = b_ih[GH - H + k]
                b_apart[k] = b_hh[GH - H + k]
        y = np.zeros((T, B, P), dt) if N < T * B else np.empty((T, B, P), dt)
        R = N if training else 0
        gates = np.empty((R, GH), dt)
        aux = np.empty((R, aux_blocks * H), dt)
        hprev = np.empty((R, P), dt)
        mids = np.empty((R if two else 0, H), dt)
        ms = np.empty((0 if w_hr is None else R, H), dt)
        h = gather_state(h0, order)
        c = gather_state(c0, order)
        gh = np.empty((B, GH), dt)
        mid = np.empty((B, H if two else 0), dt)
        out = h if w_hr is None else np.empty((B, H), dt)
        scratch = np.empty(B * (GH + H), dt)
        ws = exp_workspace(B * (GH + H), x)
        # 2. the time loop (copies index elements: a row view per row costs more than its
        # copy at small H)
        for s in range(nact.size):
            m, o = nact[s], offs[s]
            if training:
                for j in range(m):
                    for k in range(P):
                        hprev[o + j, k] = h[j, k]
            gemm(blas, False, True, m, W1, P, 1.0, flat(h), 0, P, flat(w_hh), 0, P,
                 0.0, flat(gh), 0, GH)
            cell.forward(option, ws, scratch, m, o, gx, gh, bias, b_apart, h, c, mid, out,
                         training, gates, aux)
            if two:
                gemm(blas, False, True, m, H, H, 1.0, flat(mid), 0, H, flat(w_hh), W1 * H, H,
                     0.0, flat(gh), W1, GH)
                if training:
                    for j in range(m):
                        for k in range(H):
                            mids[o + j, k] = mid[j, k]
                cell.forward2(option, ws, scratch, m, o, gx, gh, bias, b_apart, h, c, mid,
                              out, training, gates, aux)
            if w_hr is not None:  # h = m·W_hrᵀ
                gemm(blas, False, True, m, P, H, 1.0, flat(out), 0, H, flat(w_hr), 0, H,
                     0.0, flat(h), 0, P)
                if training:
                    for j in range(m):
                        for k in range(H):
                            ms[o + j, k] = out[j, k]
            for j in range(m):
                t = ls[j] - 1 - s if reverse else s
                b = order[j]
                for k in range(P):
                    y[t, b, k] = h[j, k]
        return (y, scatter_state(h, order), scatter_state(c, order),
                xp, gates, aux, hprev, mids, ms, order, ls, nact, offs)

    return _jit_named(forward, name)


def make_backward(name, cell, option):
    """The jitted backward driver of cell ``name``: step module ``cell`` with ``option``.

    ``backward(blas, xp, w_ih, w_hh, w_hr, gates, aux, hprev, mids, ms, order, ls, nact,
    offs, reverse, dy, dh_n, dc_n)`` -> ``(dx, dh0, dc0, dw_ih, dw_hh, dw_hr, db_ih,
    db_hh)``; ``dw_hr`` is (0, H) without a projection.
    """
    G = cell.GATES
    f = cell.facts(option)
    two, separate, direct = f["two_products"], f["separate_recurrent_grad"], f["direct_h"]
    digest = SOURCE_DIGEST

    def backward(blas, xp, w_ih, w_hh, w_hr, gates, aux, hprev, mids, ms, order, ls, nact,
                 offs, reverse, dy, dh_n, dc_n):
        digest  # noqa: B018
        T, B, P = dy.shape
        GH = w_hh.shape[0]
        H = GH // G
        W1 = GH - H if two else GH
        N = gates.shape[0]
        dt = dy.dtype
        # dgx: gradient wrt the input-side pre-activations (W_ih, b_ih, dx); dgh: wrt the
        # recurrent side (W_hh, b_hh, dh), the same array unless the cell says otherwise.
        dgx = np.empty((N, GH), dt)
        dgh = np.empty((N, GH), dt) if separate else dgx
        dh = gather_state(dh_n, order)  # the carried gradient wrt h, packed order
        dc = gather_state(dc_n, order)
        dout = dh if w_hr is None else np.empty((B, H), dt)
        dhs = np.empty((0 if w_hr is None else N, P), dt)  # each step's dh, for dW_hr
        dmid = np.empty((B, H if two else 0), dt)
        scratch = np.empty(B * (GH + H), dt)
        ws = exp_workspace(B * (GH + H), dy)
        # 1. steps in reverse: dh += dy, the cell's gate gradients, dh_prev = dG·W_hh
        for s in range(nact.size - 1, -1, -1):
            m, o = nact[s], offs[s]
            for j in range(m):
                t = ls[j] - 1 - s if reverse else s
                b = order[j]
                for k in range(P):
                    dh[j, k] += dy[t, b, k]
            if w_hr is not None:  # dm = dh·W_hr
                for j in range(m):
                    for k in range(P):
                        dhs[o + j, k] = dh[j, k]
                gemm(blas, False, False, m, H, P, 1.0, flat(dh), 0, P, flat(w_hr), 0, H,
                     0.0, flat(dout), 0, H)
            cell.backward(option, ws, scratch, m, o, gates, aux, hprev, dout, dh, dc, dgx,
                          dgh, dmid)
            if two:  # dmid = dn·W_hn
                gemm(blas, False, False, m, H, H, 1.0, flat(dgx), o * GH + W1, GH,
                     flat(w_hh), W1 * H, H, 0.0, flat(dmid), 0, H)
                cell.backward2(option, ws, scratch, m, o, gates, aux, hprev, dout, dh, dc,
                               dgx, dgh, dmid)
            gemm(blas, False, False, m, P, W1, 1.0, flat(dgh), o * GH, GH, flat(w_hh), 0, P,
                 1.0 if direct else 0.0, flat(dh), 0, P)
        # 2. weight gradients: large GEMMs over all rows
        dw_hh = np.empty((GH, P), dt)
        gemm(blas, True, False, W1, P, N, 1.0, flat(dgh), 0, GH, flat(hprev), 0, P,
             0.0, flat(dw_hh), 0, P)
        if two:  # the n block against the second product's input
            gemm(blas, True, False, H, H, N, 1.0, flat(dgx), W1, GH, flat(mids), 0, H,
                 0.0, flat(dw_hh), W1 * H, H)
        dw_hr = np.empty((0 if w_hr is None else P, H), dt)
        if w_hr is not None:  # dW_hr = Σ dh_tᵀ m_t
            gemm(blas, True, False, P, H, N, 1.0, flat(dhs), 0, P, flat(ms), 0, H,
                 0.0, flat(dw_hr), 0, H)
        dw_ih, dx = weight_grads(blas, dgx, xp, w_ih, T, B, order, ls, nact, offs, reverse)
        db_ih = colsum(dgx)
        db_hh = colsum(dgh) if separate else db_ih.copy()
        return (dx, scatter_state(dh, order), scatter_state(dc, order), dw_ih, dw_hh, dw_hr,
                db_ih, db_hh)

    return _jit_named(backward, name)


def _jit_named(fn, name):
    # Named after its cell ("forward_lstmp"), a driver gets its own cache index file: the
    # closures of one factory would otherwise share one, and two processes compiling two
    # cells at once could each number a new entry alike and overwrite the other's.
    fn.__name__ = fn.__qualname__ = f"{fn.__name__}_{name}"
    return jit(fn)
