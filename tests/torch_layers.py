"""Run one direction of a single-layer torch.nn.RNN/LSTM/GRU on a test Problem, with
lengths through pack_padded_sequence(enforce_sorted=False) and the reverse direction as
the reverse half of a bidirectional layer; lstmp as LSTM(proj_size=P). Returns every
output and gradient by name."""
import numpy as np

from fastseq.cells import CELLS

torch = __import__("pytest").importorskip("torch", reason="torch is not installed: torch parity tests need it")


def torch_run(p) -> dict:
    dtype = torch.float64 if p.dtype == np.float64 else torch.float32
    T, B, I = p.x.shape
    H = p.w_hh.shape[0] // CELLS[p.cell].gates
    E = p.w_hh.shape[1]  # the width of h and y: the projection size P for lstmp, else H
    kind = "lstm" if p.cell == "lstmp" else p.cell
    kwargs = dict(bias=p.b_ih is not None, bidirectional=p.reverse, dtype=dtype)
    if kind.startswith("rnn"):
        layer = torch.nn.RNN(I, H, nonlinearity=kind[4:], **kwargs)
    elif kind == "lstm":
        layer = torch.nn.LSTM(I, H, proj_size=E if E != H else 0, **kwargs)
    else:
        assert kind == "gru", "torch has only the reset-after GRU"
        layer = torch.nn.GRU(I, H, **kwargs)
    sfx = "_reverse" if p.reverse else ""
    names = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0", "w_hr": "weight_hr_l0",
             "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}
    with torch.no_grad():
        for ours, theirs in names.items():
            if getattr(p, ours) is not None:
                getattr(layer, theirs + sfx).copy_(torch.from_numpy(getattr(p, ours)))
    D = 2 if p.reverse else 1
    d = D - 1

    def state(s, width):
        full = torch.zeros(D, B, width, dtype=dtype)
        if s is not None:
            full[d] = torch.from_numpy(s)
        return full.requires_grad_()

    x = torch.from_numpy(p.x.copy()).requires_grad_()
    h0 = state(p.h0, E)
    c0 = state(p.c0, H)
    inp = x
    if p.lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(x, torch.from_numpy(p.lengths), enforce_sorted=False)
    out, st = layer(inp, (h0, c0) if kind == "lstm" else h0)
    if p.lengths is not None:
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    y = out[:, :, d * E:(d + 1) * E]
    h_n = (st[0] if kind == "lstm" else st)[d]
    loss = (y * torch.from_numpy(p.dy)).sum()
    if p.dh_n is not None:
        loss = loss + (h_n * torch.from_numpy(p.dh_n)).sum()
    result = {"y": y, "h_n": h_n}
    if kind == "lstm":
        c_n = st[1][d]
        result["c_n"] = c_n
        if p.dc_n is not None:
            loss = loss + (c_n * torch.from_numpy(p.dc_n)).sum()
    loss.backward()
    result = {k: v.detach().numpy() for k, v in result.items()}
    result["dx"] = x.grad.numpy()
    result["dh0"] = h0.grad[d].numpy()
    if kind == "lstm":
        result["dc0"] = c0.grad[d].numpy()
    for ours, theirs in names.items():
        if ours == "w_hr" and p.w_hr is None:
            continue  # no such parameter, and no such gradient in our results
        param = getattr(layer, theirs + sfx, None) if getattr(p, ours) is not None else None
        result["d" + ours] = None if param is None else param.grad.numpy()
    return result
