"""The LSTM cell's steps, gates i, f, g, o: ``c' = f*c + i*g``, ``m = o*tanh(c')``.

The step's output is ``m``: the driver makes it the new h (lstm), or projects it,
``h' = m·W_hrᵀ`` (lstmp, torch's ``proj_size``); the step does not know which (``option``,
the projection, is the driver's business), and its backward receives ``dm``.

Reserve: ``gates`` (N, 4H) the pre-activations; ``aux`` (N, 2H): c before the step, then
c after it.
"""
from __future__ import annotations

from .primitives import carve, step, sigmoid_pair, tanh_of, tanh_slope, vexp

GATES = 4
HAS_C = True


def facts(projection):
    """What the driver needs to know of this cell (see ``driver``)."""
    return dict(two_products=False, recurrent_bias_apart=False, separate_recurrent_grad=False,
                direct_h=False, aux_blocks=2)


@step
def forward(projection, ws, scratch, m, o, gx, gh, bias, b_apart, h, c, mid, out, training,
            gates, aux):
    B, H = c.shape
    G = 4 * H
    ex = carve(scratch, 0, B, G)      # exp arguments, then exps, of the four gates
    ec = carve(scratch, B * G, B, H)  # the same for tanh(c')
    one = ws[0][0]
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
            for q in range(G):
                gates[r, q] = gh[j, q]
            for k in range(H):
                aux[r, k] = c[j, k]
    vexp(ex.reshape(B * G), m * G, ws)
    # b. gates and the new cell state
    for j in range(m):
        for k in range(H):
            ig = one / (one + ex[j, k])
            fg = one / (one + ex[j, H + k])
            gg = tanh_of(gh[j, 2 * H + k], ex[j, 2 * H + k], one)
            cn = fg * c[j, k] + ig * gg
            c[j, k] = cn
            ec[j, k] = -2 * abs(cn)
    vexp(ec.reshape(B * H), m * H, ws)
    # c. the output m = o * tanh(c')
    for j in range(m):
        r = o + j
        for k in range(H):
            og = one / (one + ex[j, 3 * H + k])
            out[j, k] = og * tanh_of(c[j, k], ec[j, k], one)
        if training:
            for k in range(H):
                aux[r, H + k] = c[j, k]


@step
def backward(projection, ws, scratch, m, o, gates, aux, hprev, dout, dh, dc, dgx, dgh, dmid):
    B, H = dc.shape
    G = 4 * H
    ex = carve(scratch, 0, B, G)
    ec = carve(scratch, B * G, B, H)
    one, four = ws[0][0], ws[0][2]
    for j in range(m):
        r = o + j
        for k in range(H):
            ex[j, k] = -abs(gates[r, k])
            ex[j, H + k] = -abs(gates[r, H + k])
            ex[j, 2 * H + k] = -2 * abs(gates[r, 2 * H + k])
            ex[j, 3 * H + k] = -abs(gates[r, 3 * H + k])
            ec[j, k] = -2 * abs(aux[r, H + k])
    vexp(ex.reshape(B * G), m * G, ws)
    vexp(ec.reshape(B * H), m * H, ws)
    for j in range(m):
        r = o + j
        for k in range(H):
            ig, ig1 = sigmoid_pair(gates[r, k], ex[j, k], one)  # ig1 = 1 - ig
            fg, fg1 = sigmoid_pair(gates[r, H + k], ex[j, H + k], one)
            og, og1 = sigmoid_pair(gates[r, 3 * H + k], ex[j, 3 * H + k], one)
            gg = tanh_of(gates[r, 2 * H + k], ex[j, 2 * H + k], one)
            tc = tanh_of(aux[r, H + k], ec[j, k], one)
            dmk = dout[j, k]
            dck = dc[j, k] + dmk * og * tanh_slope(ec[j, k], one, four)
            dgx[r, k] = dck * gg * ig * ig1
            dgx[r, H + k] = dck * aux[r, k] * fg * fg1
            dgx[r, 2 * H + k] = dck * ig * tanh_slope(ex[j, 2 * H + k], one, four)
            dgx[r, 3 * H + k] = dmk * tc * og * og1
            dc[j, k] = dck * fg
