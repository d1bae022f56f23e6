"""The reference backend: plain NumPy forward and backward through time. The oracle.

Readable before fast. Every other backend is tested against this file, and this file
is tested against finite differences and against PyTorch. It computes in float64
whatever the input dtype, and returns arrays of the input dtype.

Shape letters: T steps, B batch, I input size, H hidden size, G gates (1 RNN, 4 LSTM,
3 GRU), P the LSTM's projection size. Weights follow PyTorch: ``w_ih (G*H, I)``,
``w_hh (G*H, H)`` (``(4H, P)`` with a projection), ``w_hr (P, H)``, ``b_ih, b_hh (G*H,)``,
gates stacked in the order i, f, g, o (LSTM) and r, z, n (GRU).

How it is organised: each cell is a small class with ``step`` (one time step for the
whole batch) and ``step_backward`` (its vector-Jacobian product). The input projection
``x @ w_ih.T + b_ih`` is not part of the cell: the driver computes it for all steps
first and differentiates it after the loop, as the fused kernels do. The driver also
owns what is common to every cell: lengths, the reverse direction, masking. A cell with
a parameter of its own besides ``w_hh`` (the projection's ``w_hr``) holds it, and hands
its gradient over through ``parameter_grads`` after the loop.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "rnn_forward", "rnn_backward",
    "lstm_forward", "lstm_backward",
    "gru_forward", "gru_backward",
]

NAME = "reference"
#: This backend runs the LSTM with a projection (``lstm_forward(..., w_hr=...)``).
PROJECTION = True


def _sigmoid(a):
    # Written so that neither branch overflows: exp of a non-positive number only.
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# --------------------------------------------------------------------------- cells


class ElmanCell:
    """Elman RNN cell.

    Equations::

        a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
        h_t = tanh(a_t)      (nonlinearity="tanh")
        h_t = max(a_t, 0)    (nonlinearity="relu")
    """

    gates = 1
    state_names = ("h",)

    def widths(self, H):
        """The width of each state, in ``state_names`` order."""
        return (H,)

    def __init__(self, nonlinearity: str):
        self.relu = nonlinearity == "relu"

    def step(self, gx, state, w_hh, b_hh):
        (h,) = state
        a = gx + h @ w_hh.T + b_hh
        h_new = np.maximum(a, 0.0) if self.relu else np.tanh(a)
        return (h_new,), (h, a, h_new)

    def step_backward(self, dstate, cache, w_hh):
        (dh_new,) = dstate
        h, a, h_new = cache
        # heaviside(a, 0) is 1 above 0, 0 at and below, and NaN at NaN: divergence shows
        # in the gradients (a comparison a > 0 would be a finite 0 there).
        da = dh_new * np.heaviside(a, 0.0) if self.relu else dh_new * (1.0 - h_new**2)
        # da is the gradient of both pre-activation sums: the input and the recurrent one.
        return da, (da @ w_hh,), da.T @ h, da


class LSTMCell:
    """LSTM cell (gates i, f, g, o, as in PyTorch).

    Equations::

        [i; f; g; o] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh   (pre-activations)
        i, f, o = sigmoid(i), sigmoid(f), sigmoid(o)
        g = tanh(g)
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)
    """

    gates = 4
    state_names = ("h", "c")

    def widths(self, H):
        return (H, H)

    def step(self, gx, state, w_hh, b_hh):
        h, c = state
        pre = gx + h @ w_hh.T + b_hh
        i, f, g, o = np.split(pre, 4, axis=1)
        i, f, g, o = _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)
        c_new = f * c + i * g
        tanh_c = np.tanh(c_new)
        h_new = o * tanh_c
        return (h_new, c_new), (h, c, i, f, g, o, tanh_c)

    def step_backward(self, dstate, cache, w_hh):
        dh_new, dc_new = dstate
        h, c, i, f, g, o, tanh_c = cache
        do = dh_new * tanh_c
        dc = dc_new + dh_new * o * (1.0 - tanh_c**2)
        di, df, dg = dc * g, dc * c, dc * i
        dpre = np.concatenate(
            [di * i * (1 - i), df * f * (1 - f), dg * (1 - g**2), do * o * (1 - o)], axis=1
        )
        return dpre, (dpre @ w_hh, dc * f), dpre.T @ h, dpre


class LSTMPCell(LSTMCell):
    """LSTM cell with a projection (torch's ``proj_size``): the LSTM step, then the
    H-wide output projected to P < H features, which are the new h (c stays H wide).

    Equations::

        [i; f; g; o] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh   (W_hh is (4H, P))
        c_t = f * c_{t-1} + i * g
        m_t = o * tanh(c_t)                                     (H wide)
        h_t = W_hr m_t                                          (P wide, no bias)
    """

    def __init__(self, w_hr):
        self.w_hr = w_hr  # (P, H), float64
        self.dw_hr = None  # summed over the steps by step_backward

    def widths(self, H):
        return (self.w_hr.shape[0], H)

    def step(self, gx, state, w_hh, b_hh):
        (m, c_new), cache = super().step(gx, state, w_hh, b_hh)
        return (m @ self.w_hr.T, c_new), cache + (m,)

    def step_backward(self, dstate, cache, w_hh):
        dh_new, dc_new = dstate
        m = cache[-1]
        if self.dw_hr is None:
            self.dw_hr = np.zeros_like(self.w_hr)
        # h = W_hr m: dW_hr += dh^T m, and the LSTM's own step sees dm = dh W_hr.
        self.dw_hr += dh_new.T @ m
        return super().step_backward((dh_new @ self.w_hr, dc_new), cache[:-1], w_hh)

    def parameter_grads(self):
        return {"dw_hr": self.dw_hr if self.dw_hr is not None else np.zeros_like(self.w_hr)}


class GRUCell:
    """GRU cell (gates r, z, n, as in PyTorch), in either formulation.

    Equations, with ``x_r = (W_ih x_t + b_ih)_r`` etc. the input projections::

        r = sigmoid(x_r + W_hr h_{t-1} + b_hr)
        z = sigmoid(x_z + W_hz h_{t-1} + b_hz)
        n = tanh(x_n + r * (W_hn h_{t-1} + b_hn))      reset_after=True  (PyTorch, cuDNN)
        n = tanh(x_n + W_hn (r * h_{t-1}) + b_hn)      reset_after=False (Cho et al. 2014)
        h_t = (1 - z) * n + z * h_{t-1}
    """

    gates = 3
    state_names = ("h",)

    def widths(self, H):
        return (H,)

    def __init__(self, reset_after: bool):
        self.reset_after = reset_after

    def step(self, gx, state, w_hh, b_hh):
        (h,) = state
        H = h.shape[1]
        x_r, x_z, x_n = gx[:, :H], gx[:, H:2 * H], gx[:, 2 * H:]
        w_rz, w_n = w_hh[: 2 * H], w_hh[2 * H:]
        b_rz, b_n = b_hh[: 2 * H], b_hh[2 * H:]
        rz = _sigmoid(np.concatenate([x_r, x_z], axis=1) + h @ w_rz.T + b_rz)
        r, z = rz[:, :H], rz[:, H:]
        if self.reset_after:
            hn = h @ w_n.T + b_n  # W_hn h + b_hn: kept, the backward needs it
            n = np.tanh(x_n + r * hn)
        else:
            hn = r * h  # r * h: kept, dW_hn is taken against it
            n = np.tanh(x_n + hn @ w_n.T + b_n)
        h_new = (1.0 - z) * n + z * h
        return (h_new,), (h, r, z, n, hn)

    def step_backward(self, dstate, cache, w_hh):
        (dh_new,) = dstate
        h, r, z, n, hn = cache
        H = h.shape[1]
        w_rz, w_n = w_hh[: 2 * H], w_hh[2 * H:]
        dn = dh_new * (1.0 - z)
        dz = dh_new * (h - n)
        dn_pre = dn * (1.0 - n**2)
        if self.reset_after:
            dr = dn_pre * hn
            dhn = dn_pre * r  # gradient of W_hn h + b_hn
            dh_from_n = dhn @ w_n
            dw_n = dhn.T @ h
        else:
            dhn = dn_pre  # gradient of W_hn (r*h) + b_hn
            d_rh = dhn @ w_n
            dr = d_rh * h
            dh_from_n = d_rh * r
            dw_n = dhn.T @ hn
        drz = np.concatenate([dr * r * (1 - r), dz * z * (1 - z)], axis=1)
        dgx = np.concatenate([drz, dn_pre], axis=1)
        dgh = np.concatenate([drz, dhn], axis=1)  # gradient of the recurrent sums (bias b_hh)
        dh = dh_new * z + dh_from_n + drz @ w_rz
        dw_hh = np.concatenate([drz.T @ h, dw_n], axis=0)
        return dgx, (dh,), dw_hh, dgh


# --------------------------------------------------------------------------- driver


def _schedule(T, B, lengths, reverse):
    """Per step s and sequence b: the time index it reads, and whether it is active.

    Sequence b has L_b valid steps. Forward it visits t = 0..L_b-1, reverse
    t = L_b-1..0; for s >= L_b it is inactive (its state is frozen).
    """
    L = np.full(B, T, dtype=np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
    s = np.arange(T)[:, None]
    active = s < L[None, :]
    t = (L[None, :] - 1 - s) if reverse else np.broadcast_to(s, (T, B))
    return np.where(active, t, 0), active


class _Reserve:
    """What a training forward keeps for backward."""

    def __init__(self, cell, x, w_ih, w_hh, has_bias, lengths, reverse, caches, dtype):
        self.cell, self.x, self.w_ih, self.w_hh = cell, x, w_ih, w_hh
        self.has_bias, self.lengths, self.reverse = has_bias, lengths, reverse
        self.caches, self.dtype = caches, dtype


def _forward(cell, x, w_ih, w_hh, b_ih, b_hh, state0, lengths, reverse, training):
    dtype = x.dtype
    x, w_ih, w_hh = (np.asarray(a, dtype=np.float64) for a in (x, w_ih, w_hh))
    T, B, _ = x.shape
    GH = w_hh.shape[0]
    widths = cell.widths(GH // cell.gates)  # h is P wide with a projection, else H
    has_bias = b_ih is not None
    b_ih = np.zeros(GH) if b_ih is None else np.asarray(b_ih, dtype=np.float64)
    b_hh = np.zeros(GH) if b_hh is None else np.asarray(b_hh, dtype=np.float64)
    state = tuple(
        np.zeros((B, n)) if s is None else np.asarray(s, dtype=np.float64)
        for s, n in zip(state0, widths)
    )

    # 1. input projection for all T steps at once
    gx = x @ w_ih.T + b_ih  # (T, B, G*H)

    # 2. the sequential loop
    t_of, active = _schedule(T, B, lengths, reverse)
    rows = np.arange(B)
    y = np.zeros((T, B, widths[0]))
    caches = []
    for s in range(T):
        t, m = t_of[s], active[s]
        new_state, cache = cell.step(gx[t, rows], state, w_hh, b_hh)
        state = tuple(np.where(m[:, None], new, old) for new, old in zip(new_state, state))
        y[t[m], rows[m]] = new_state[0][m]
        caches.append(cache)

    reserve = (
        _Reserve(cell, x, w_ih, w_hh, has_bias, lengths, reverse, caches, dtype) if training else None
    )
    return (y.astype(dtype),) + tuple(s.astype(dtype) for s in state) + (reserve,)


def _backward(reserve, dy, dstate_n):
    cell, x, w_ih, w_hh = reserve.cell, reserve.x, reserve.w_ih, reserve.w_hh
    T, B, I = x.shape
    GH = w_hh.shape[0]
    dy = np.asarray(dy, dtype=np.float64)
    dstate = tuple(
        np.zeros((B, n)) if d is None else np.asarray(d, dtype=np.float64)
        for d, n in zip(dstate_n, cell.widths(GH // cell.gates))
    )
    t_of, active = _schedule(T, B, reserve.lengths, reserve.reverse)
    rows = np.arange(B)

    dgx = np.zeros((T, B, GH))
    dw_hh = np.zeros_like(w_hh)
    db_hh = np.zeros(GH)
    for s in reversed(range(T)):
        t, m = t_of[s], active[s]
        # the output at this step feeds h; past a sequence's length dy is ignored
        dh = dstate[0] + np.where(m[:, None], dy[t, rows], 0.0)
        incoming = (dh,) + dstate[1:]
        masked = tuple(np.where(m[:, None], d, 0.0) for d in incoming)
        dgx_s, dprev, dw_hh_s, dgh_s = cell.step_backward(masked, reserve.caches[s], w_hh)
        dgx[t[m], rows[m]] = dgx_s[m]
        dw_hh += dw_hh_s
        db_hh += dgh_s.sum(axis=0)
        # an inactive sequence passes its gradient through the frozen state untouched
        dstate = tuple(np.where(m[:, None], dp, di) for dp, di in zip(dprev, incoming))

    # 3. gradients of the input projection, over all T*B rows at once. Padding rows of x
    #    (past a sequence's length) are zeroed first: their dG is zero, but 0 * NaN is not.
    flat_dgx = dgx.reshape(T * B, -1)
    valid = _schedule(T, B, reserve.lengths, False)[1]  # (t, b) is valid iff t < L_b
    x_valid = np.where(valid[:, :, None], x, 0.0).reshape(T * B, I)
    grads = {
        "dx": np.where(valid[:, :, None], dgx @ w_ih, 0.0),  # 0 past lengths, NaN weights too
        "dw_ih": flat_dgx.T @ x_valid,
        "dw_hh": dw_hh,
        "db_ih": flat_dgx.sum(axis=0) if reserve.has_bias else None,
        "db_hh": db_hh if reserve.has_bias else None,
    }
    grads.update(getattr(cell, "parameter_grads", dict)())  # dw_hr of the projection
    for name, d in zip(cell.state_names, dstate):
        grads[f"d{name}0"] = d
    return {k: (None if v is None else v.astype(reserve.dtype)) for k, v in grads.items()}


# --------------------------------------------------------------------------- contract


def rnn_forward(x, w_ih, w_hh, b_ih, b_hh, h0, lengths, reverse, training, nonlinearity):
    """Elman RNN forward over a whole sequence: ``(y, h_n, reserve)``. See :class:`ElmanCell`."""
    return _forward(ElmanCell(nonlinearity), x, w_ih, w_hh, b_ih, b_hh, (h0,), lengths, reverse, training)


def lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, reverse, training, w_hr=None):
    """LSTM forward over a whole sequence: ``(y, h_n, c_n, reserve)``. See :class:`LSTMCell`;
    with ``w_hr`` (P, H), :class:`LSTMPCell` (``y`` and ``h`` are P wide)."""
    cell = LSTMCell() if w_hr is None else LSTMPCell(np.asarray(w_hr, dtype=np.float64))
    return _forward(cell, x, w_ih, w_hh, b_ih, b_hh, (h0, c0), lengths, reverse, training)


def gru_forward(x, w_ih, w_hh, b_ih, b_hh, h0, lengths, reverse, training, reset_after):
    """GRU forward over a whole sequence: ``(y, h_n, reserve)``. See :class:`GRUCell`."""
    return _forward(GRUCell(reset_after), x, w_ih, w_hh, b_ih, b_hh, (h0,), lengths, reverse, training)


def rnn_backward(reserve, dy, dh_n):
    """Backprop through time: ``dict(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)``."""
    return _backward(reserve, dy, (dh_n,))


def lstm_backward(reserve, dy, dh_n, dc_n):
    """Backprop through time: ``dict(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh)``, and
    ``dw_hr`` when the forward had a projection."""
    return _backward(reserve, dy, (dh_n, dc_n))


def gru_backward(reserve, dy, dh_n):
    """Backprop through time: ``dict(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)``."""
    return _backward(reserve, dy, (dh_n,))
