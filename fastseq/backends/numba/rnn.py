"""The Elman RNN cell's steps (``option``: relu): ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``,
act = tanh (rnn_tanh) or relu (rnn_relu).

Reserve: ``gates`` (N, H) the pre-activations; no ``aux``.
"""
from __future__ import annotations

from .primitives import carve, step, tanh_of, tanh_slope, vexp

GATES = 1
HAS_C = False


def facts(relu):
    """What the driver needs to know of this cell (see ``driver``)."""
    return dict(two_products=False, recurrent_bias_apart=False, separate_recurrent_grad=False,
                direct_h=False, aux_blocks=0)


@step
def forward(relu, ws, scratch, m, o, gx, gh, bias, b_apart, h, c, mid, out, training, gates, aux):
    B, H = gh.shape
    ex = carve(scratch, 0, B, H)
    one = ws[0][0]
    for j in range(m):
        r = o + j
        for k in range(H):
            v = gx[r, k] + gh[j, k] + bias[k]
            gh[j, k] = v
            ex[j, k] = -2 * abs(v)
            if training:
                gates[r, k] = v
    if not relu:
        vexp(scratch, m * H, ws)
    for j in range(m):
        for k in range(H):
            v = gh[j, k]
            if relu:
                v = 0 if v <= 0 else v  # NaN stays NaN
            else:
                v = tanh_of(v, ex[j, k], one)
            out[j, k] = v


@step
def backward(relu, ws, scratch, m, o, gates, aux, hprev, dout, dh, dc, dgx, dgh, dmid):
    H = gates.shape[1]
    B = dout.shape[0]
    ex = carve(scratch, 0, B, H)
    one, four = ws[0][0], ws[0][2]
    zero = one - one
    if not relu:
        for j in range(m):
            for k in range(H):
                ex[j, k] = -2 * abs(gates[o + j, k])
        vexp(scratch, m * H, ws)
    for j in range(m):
        r = o + j
        for k in range(H):
            d = dout[j, k]
            if relu:  # d * relu'(pre), NaN where pre is NaN (a diverged unit)
                p = gates[r, k]
                dgx[r, k] = d if p > 0 else (d * zero if p <= 0 else p)
            else:
                dgx[r, k] = d * tanh_slope(ex[j, k], one, four)
