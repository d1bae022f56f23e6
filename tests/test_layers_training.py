"""A 50-step training loop (LSTM + Linear + cross-entropy + Adam + clipping) against the
same loop in torch from the same initial weights, in float64, on every backend."""
import numpy as np
import pytest

from fastseq.backends import available_backends, backend_module, use_backend
from fastseq.linear import Linear
from fastseq.losses import cross_entropy
from fastseq.optim import Adam, clip_grad_norm_
from fastseq.parameter import Module
from fastseq.recurrent import LSTM

torch = pytest.importorskip("torch", reason="torch is needed to compare with a torch loop")

T, B, I, H, C = 6, 4, 5, 8, 7


class Model(Module):
    def __init__(self):
        super().__init__()
        self.lstm = LSTM(I, H, num_layers=2, batch_first=True, dtype=np.float64, seed=0)
        self.fc = Linear(H, C, dtype=np.float64, seed=0)

    def forward(self, x, lengths):
        y, _ = self.lstm(x, lengths=lengths)
        return self.fc(y)

    def backward(self, dlogits):
        self.lstm.backward(self.fc.backward(dlogits))


class TorchModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(I, H, num_layers=2, batch_first=True, dtype=torch.float64)
        self.fc = torch.nn.Linear(H, C, dtype=torch.float64)

    def forward(self, x, lengths):
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                         enforce_sorted=False)
        y, _ = self.lstm(packed)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=T)
        return self.fc(y)


@pytest.mark.parametrize("name", available_backends())
def test_fifty_steps_match_torch(name):
    try:
        backend_module(name)
    except ValueError as exc:
        pytest.skip(f"backend {name!r} is listed but does not load: {exc}")
    torch.manual_seed(0)
    theirs = TorchModel()
    ours = Model()
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    opt = Adam(ours.parameters(), lr=0.02)
    topt = torch.optim.Adam(theirs.parameters(), lr=0.02)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, I))
    lengths = np.array([6, 3, 5, 1])
    targets = rng.integers(0, C, size=(B, T))
    targets[np.arange(T)[None, :] >= lengths[:, None]] = -100  # padding is ignored
    losses, tlosses, norms, tnorms = [], [], [], []
    with use_backend(name):
        for _ in range(50):
            opt.zero_grad()
            logits = ours(x, lengths)
            loss, dlogits = cross_entropy(logits, targets)
            ours.backward(dlogits)
            norms.append(clip_grad_norm_(ours.parameters(), 0.2))
            opt.step()
            losses.append(float(loss))

            topt.zero_grad()
            tlogits = theirs(torch.from_numpy(x), torch.from_numpy(lengths))
            tloss = torch.nn.functional.cross_entropy(tlogits.reshape(-1, C),
                                                      torch.from_numpy(targets).reshape(-1))
            tloss.backward()
            tnorms.append(float(torch.nn.utils.clip_grad_norm_(theirs.parameters(), 0.2)))
            topt.step()
            tlosses.append(tloss.item())
    losses, tlosses = np.array(losses), np.array(tlosses)
    rel = np.abs(losses - tlosses) / np.abs(tlosses)
    assert rel.max() <= 1e-9, f"worst step {rel.argmax()}: {rel.max():.3e}"
    assert np.max(np.abs(np.array(norms) - tnorms) / np.array(tnorms)) <= 1e-9
    assert losses[-1] < 0.7 * losses[0]  # it learns
    assert sum(n > 0.2 for n in norms) >= 10  # clipping was active at many steps
