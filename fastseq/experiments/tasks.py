"""The two synthetic memory tasks and the small model and training loop every experiment uses.

Adding problem (Hochreiter & Schmidhuber 1997, in the variant of Arjovsky et al. 2016) and the
copy task (Arjovsky et al. 2016); a recurrent layer with a linear head; Adam with optional
gradient clipping. Everything is drawn from one numpy Generator, so a seed repeats a run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

import fastseq
from fastseq.cells import CELLS as ALL_CELLS, FAMILIES, family_gates
from fastseq.losses import cross_entropy, mse

__all__ = ["adding_batch", "copy_batch", "SeqModel", "make_cell", "hidden_for_params",
           "cell_params", "train", "evaluate", "CELLS", "ADDING_BASELINE_MSE"]

#: (label, layer class, constructor options): the four cells the experiments compare.
CELLS = {
    "rnn_tanh": (fastseq.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (fastseq.RNN, {"nonlinearity": "relu"}),
    "lstm": (fastseq.LSTM, {}),
    "gru": (fastseq.GRU, {}),
}
GATES = {**{f: family_gates(f) for f in FAMILIES}, **{c.name: c.gates for c in ALL_CELLS.values()}}

#: Predicting 1 for every sequence: the target is the sum of two U(0, 1), variance 1/6.
ADDING_BASELINE_MSE = 1.0 / 6.0
COPY_SYMBOLS, COPY_LENGTH = 8, 10  # Arjovsky et al.: 10 symbols out of 8, then T blanks


def adding_batch(rng: np.random.Generator, B: int, T: int, dtype=np.float32):
    """Adding problem: x (T, B, 2), target (B, 1).

    Channel 0 holds U(0, 1) values, channel 1 marks two steps, one in each half of the
    sequence; the target is the sum of the two marked values.
    """
    values = rng.uniform(0.0, 1.0, (T, B))
    half = T // 2
    first = rng.integers(0, half, B)
    second = rng.integers(half, T, B)
    marks = np.zeros((T, B))
    cols = np.arange(B)
    marks[first, cols] = 1.0
    marks[second, cols] = 1.0
    x = np.stack([values, marks], axis=-1).astype(dtype)
    target = (values[first, cols] + values[second, cols])[:, None].astype(dtype)
    return x, target


def copy_batch(rng: np.random.Generator, B: int, T: int, dtype=np.float32):
    """Copy task: x (T + 20, B, 10) one-hot, targets (T + 20, B) with -100 where not scored.

    Symbols 1..8 for ten steps, blanks (0) for T - 1 steps, the delimiter (9), then ten
    blanks during which the model must output the ten symbols in order. Only those ten
    outputs are scored (the rest are -100, ignored by the loss); chance is 7/8 errors.
    """
    L = T + 2 * COPY_LENGTH
    symbols = rng.integers(1, COPY_SYMBOLS + 1, (COPY_LENGTH, B))
    tokens = np.zeros((L, B), np.int64)
    tokens[:COPY_LENGTH] = symbols
    tokens[COPY_LENGTH + T - 1] = COPY_SYMBOLS + 1
    x = np.eye(COPY_SYMBOLS + 2, dtype=dtype)[tokens]
    targets = np.full((L, B), -100, np.int64)
    targets[-COPY_LENGTH:] = symbols
    return x, targets


def cell_params(cell: str, I: int, H: int, O: int) -> int:
    """Parameters of one layer of ``cell`` (biases included) and its linear head."""
    G = GATES[cell]
    return G * H * (I + H) + 2 * G * H + O * H + O


def hidden_for_params(cell: str, I: int, O: int, budget: int) -> int:
    """The hidden size whose parameter count is closest to ``budget``."""
    G = GATES[cell]
    # G H^2 + (G (I + 2) + O) H + O = budget
    b = G * (I + 2) + O
    H = (-b + math.sqrt(b * b + 4 * G * (budget - O))) / (2 * G)
    candidates = [max(1, int(math.floor(H))), max(1, int(math.ceil(H)))]
    return min(candidates, key=lambda h: abs(cell_params(cell, I, h, O) - budget))


def make_cell(cell: str, I: int, H: int, rng, dtype=np.float32):
    cls, options = CELLS[cell]
    return cls(I, H, dtype=dtype, seed=rng, **options)


class SeqModel(fastseq.Module):
    """A recurrent layer and a linear head: on the last step only (``last=True``,
    the adding problem) or on every step (the copy task)."""

    def __init__(self, cell: str, I: int, H: int, O: int, rng, last: bool, dtype=np.float32):
        super().__init__()
        self.cell_name = cell
        self.rnn = make_cell(cell, I, H, rng, dtype)
        self.head = fastseq.Linear(H, O, dtype=dtype, seed=rng)
        self.last = last

    def forward(self, x):
        y, _ = self.rnn(x)
        self._y_shape = y.shape
        return self.head(y[-1] if self.last else y)

    def backward(self, dout):
        dh = self.head.backward(dout)
        if self.last:
            dy = np.zeros(self._y_shape, dh.dtype)
            dy[-1] = dh
        else:
            dy = dh
        self.rnn.backward(dy, need_dx=False)  # x is the task's data: no gradient wanted


def _loss(task: str, out, target):
    if task == "adding":
        return mse(out, target)
    return cross_entropy(out, target)


def evaluate(model: SeqModel, task: str, x, target) -> dict:
    """Test loss, and for the copy task the error rate on the ten recalled symbols."""
    model.eval()
    out = model(x)
    model.train()
    loss, _ = _loss(task, out, target)
    result = {"loss": float(loss)}
    if task == "copy":
        scored = target >= 0
        result["error"] = float(np.mean(out.argmax(-1)[scored] != target[scored]))
    else:
        result["error"] = float(loss)  # MSE is the adding problem's error
    return result


@dataclass
class TrainLog:
    steps: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    test_error: list = field(default_factory=list)
    grad_norm: list = field(default_factory=list)
    diverged_at: int | None = None


def train(model: SeqModel, task: str, T: int, steps: int, batch: int, rng, *, lr=1e-2,
          optimizer="adam", clip=None, eval_every=50, test=None, tick=None, solved=None) -> TrainLog:
    """Train ``model`` on fresh batches of ``task`` for ``steps`` steps.

    ``clip``: max norm for ``fastseq.clip_grad_norm_`` (None: no clipping). ``test``:
    a fixed (x, target) pair evaluated every ``eval_every`` steps. ``solved``: stop early
    once the test error is at most this. ``tick()`` is called once per step (progress).
    A non-finite loss stops the run and records the step in ``diverged_at``.
    """
    make = adding_batch if task == "adding" else copy_batch
    params = list(model.parameters())
    if optimizer == "adam":
        opt = fastseq.optim.Adam(params, lr=lr)
    elif optimizer == "sgd":
        opt = fastseq.optim.SGD(params, lr=lr, momentum=0.9)
    else:  # "sgdplain"
        opt = fastseq.optim.SGD(params, lr=lr)
    log = TrainLog()
    for step in range(1, steps + 1):
        x, target = make(rng, batch, T)
        opt.zero_grad()
        out = model(x)
        loss, dout = _loss(task, out, target)
        if not np.isfinite(loss):
            log.diverged_at = step
            log.steps.append(step)
            log.train_loss.append(float("nan"))
            log.grad_norm.append(float("nan"))
            break
        model.backward(dout)
        with np.errstate(over="ignore", invalid="ignore"):
            norm = fastseq.clip_grad_norm_(params, clip if clip is not None else math.inf)
        opt.step()
        log.steps.append(step)
        log.train_loss.append(float(loss))
        log.grad_norm.append(float(norm))
        if tick is not None:
            tick()
        if test is not None and (step % eval_every == 0 or step == steps):
            err = evaluate(model, task, *test)["error"]
            log.test_error.append((step, err))
            if solved is not None and err <= solved:
                break
    return log
