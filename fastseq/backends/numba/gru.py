"""The GRU cell's steps, gates r, z, n: ``h' = (1-z)*n + z*h`` (``option``: reset_after).

- reset_after (gru, PyTorch): ``n = tanh(W_in x + b_in + r*(W_hn h + b_hn))``. One product
  per step; b_hn stays apart from the folded bias (the driver passes it as ``b_apart``).
  Reserve: ``gates`` (N, 3H) pre-activations; ``aux`` (N, H): W_hn h + b_hn.
- reset_before (gru_reset_before, Cho et al.): ``n = tanh(W_in x + b_in + W_hn (r*h) + b_hn)``.
  Two dependent products per step: ``forward`` computes r, z and ``mid = r*h``, the driver
  the n block of the product from ``mid``, ``forward2`` the rest; backward mirrors it
  (``backward``, the driver's ``dmid = dn·W_hn``, ``backward2``). Reserve: ``gates``; the
  driver keeps ``mid`` for the weight gradient.
"""
from __future__ import annotations

from .primitives import carve, step, sigmoid_pair, tanh_of, tanh_slope, vexp

GATES = 3
HAS_C = False


def facts(reset_after):
    """What the driver needs to know of this cell (see ``driver``)."""
    return dict(two_products=not reset_after, recurrent_bias_apart=reset_after,
                separate_recurrent_grad=reset_after, direct_h=True,
                aux_blocks=1 if reset_after else 0)


# Forward scratch: the exps of r and z (B, 2H), then of n (B, H), n's pre-activation (B, H).


@step
def forward(reset_after, ws, scratch, m, o, gx, gh, bias, b_apart, h, c, mid, out, training,
            gates, aux):
    B, G = gh.shape
    H = G // 3
    ex = carve(scratch, 0, B, 2 * H)
    # r and z: pre-activations (over their product, which is read once) and exps
    for j in range(m):
        r = o + j
        for k in range(2 * H):
            v = gx[r, k] + gh[j, k] + bias[k]
            gh[j, k] = v
            ex[j, k] = -v
    vexp(scratch, m * 2 * H, ws)
    if reset_after:
        _n_and_h(reset_after, ws, scratch, m, o, gx, gh, bias, b_apart, h, out, training,
                 gates, aux)
    else:  # r*h, the input of the n block's product
        one = ws[0][0]
        for j in range(m):
            for k in range(H):
                mid[j, k] = h[j, k] / (one + ex[j, k])


@step
def forward2(reset_after, ws, scratch, m, o, gx, gh, bias, b_apart, h, c, mid, out, training,
             gates, aux):
    _n_and_h(reset_after, ws, scratch, m, o, gx, gh, bias, b_apart, h, out, training, gates, aux)


@step
def _n_and_h(reset_after, ws, scratch, m, o, gx, gh, bias, b_apart, h, out, training, gates,
             aux):
    B, G = gh.shape
    H = G // 3
    ex = carve(scratch, 0, B, 2 * H)
    en = carve(scratch, B * 2 * H, B, H)
    pn = carve(scratch, B * 3 * H, B, H)
    one = ws[0][0]
    for j in range(m):
        r = o + j
        for k in range(H):
            if reset_after:
                hn = gh[j, 2 * H + k] + b_apart[k]
                gh[j, 2 * H + k] = hn
                v = gx[r, 2 * H + k] + bias[2 * H + k] + hn / (one + ex[j, k])
            else:
                v = gx[r, 2 * H + k] + bias[2 * H + k] + gh[j, 2 * H + k]
            pn[j, k] = v
            en[j, k] = -2 * abs(v)
    vexp(en.reshape(B * H), m * H, ws)
    for j in range(m):
        r = o + j
        if training:
            for k in range(2 * H):
                gates[r, k] = gh[j, k]
            for k in range(H):
                gates[r, 2 * H + k] = pn[j, k]
                if reset_after:
                    aux[r, k] = gh[j, 2 * H + k]
        for k in range(H):
            zg = one / (one + ex[j, H + k])
            ng = tanh_of(pn[j, k], en[j, k], one)
            out[j, k] = ng + zg * (h[j, k] - ng)


@step
def backward(reset_after, ws, scratch, m, o, gates, aux, hprev, dout, dh, dc, dgx, dgh, dmid):
    N, G = gates.shape
    H = G // 3
    B = dout.shape[0]
    ex = carve(scratch, 0, B, G)
    one, four = ws[0][0], ws[0][2]
    for j in range(m):
        r = o + j
        for k in range(H):
            ex[j, k] = -abs(gates[r, k])
            ex[j, H + k] = -abs(gates[r, H + k])
            ex[j, 2 * H + k] = -2 * abs(gates[r, 2 * H + k])
    vexp(scratch, m * G, ws)
    for j in range(m):
        r = o + j
        for k in range(H):
            dhk = dout[j, k]
            zg, zg1 = sigmoid_pair(gates[r, H + k], ex[j, H + k], one)  # zg1 = 1 - zg
            ng = tanh_of(gates[r, 2 * H + k], ex[j, 2 * H + k], one)
            dn = dhk * zg1 * tanh_slope(ex[j, 2 * H + k], one, four)
            dgx[r, H + k] = dhk * (hprev[r, k] - ng) * zg * zg1
            dgx[r, 2 * H + k] = dn
            if reset_after:
                rg, rg1 = sigmoid_pair(gates[r, k], ex[j, k], one)
                dr = dn * aux[r, k] * rg * rg1
                dgx[r, k] = dr
                dgh[r, k] = dr
                dgh[r, H + k] = dgx[r, H + k]
                dgh[r, 2 * H + k] = dn * rg
            dh[j, k] = dhk * zg  # the direct path h -> h'; the driver's product adds the rest


@step
def backward2(reset_after, ws, scratch, m, o, gates, aux, hprev, dout, dh, dc, dgx, dgh, dmid):
    # the r gate, and the r*h path into dh, from dmid = d(r*h) = dn·W_hn
    N, G = gates.shape
    H = G // 3
    B = dout.shape[0]
    ex = carve(scratch, 0, B, G)
    one = ws[0][0]
    for j in range(m):
        r = o + j
        for k in range(H):
            rg, rg1 = sigmoid_pair(gates[r, k], ex[j, k], one)
            dgx[r, k] = dmid[j, k] * hprev[r, k] * rg * rg1
            dh[j, k] += dmid[j, k] * rg
