"""A character-level language model trained in NumPy with fastseq.

Embedding -> LSTM (or GRU) -> Linear, cross-entropy, Adam, gradient clipping, on the
short stories in examples/data/lighthouse.txt (CC0). Prints a loss line every
``--log-every`` steps, then samples text from the trained model.

    python examples/char_lm.py                  # well under a minute on two cores
    python examples/char_lm.py --cell gru --steps 300 --backend numba
"""
from __future__ import annotations

import argparse
import os
import sys
import time

# NumPy's own BLAS only does the small products of the embedding and output layers here;
# with one thread it leaves the cores to fastseq's kernels instead of spinning against them
# (on a busy two-core machine the two thread pools slow each other down many times over).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

try:
    import fastseq
except ImportError:  # not installed: run from the source tree this example sits in
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import fastseq
from fastseq import GRU, LSTM, Embedding, Linear, Module  # noqa: E402
from fastseq.losses import cross_entropy  # noqa: E402
from fastseq.optim import Adam, CosineAnnealingLR, clip_grad_norm_  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "lighthouse.txt")


class CharModel(Module):
    """Embedding (V, E) -> recurrent (E -> H) -> Linear (H, V); batch_first (B, T)."""

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, cell: str,
                 dropout: float, seed: np.random.Generator) -> None:
        super().__init__()
        self.embed = Embedding(vocab, embed, seed=seed)
        rnn = LSTM if cell == "lstm" else GRU
        self.rnn = rnn(embed, hidden, num_layers=layers, batch_first=True,
                       dropout=dropout if layers > 1 else 0.0, seed=seed)
        self.head = Linear(hidden, vocab, seed=seed)

    def forward(self, tokens: np.ndarray, state=None):
        """tokens (B, T) int -> logits (B, T, V), final state."""
        y, state = self.rnn(self.embed(tokens), state)
        return self.head(y), state

    def backward(self, dlogits: np.ndarray) -> None:
        dy = self.head.backward(dlogits)
        dx, _ = self.rnn.backward(dy)
        self.embed.backward(dx)


def batches(data: np.ndarray, batch: int, steps: int, rng: np.random.Generator):
    """Random windows: inputs (B, T) and the next characters as targets (B, T)."""
    while True:
        starts = rng.integers(0, data.size - steps - 1, size=batch)
        windows = data[starts[:, None] + np.arange(steps + 1)]
        yield windows[:, :-1], windows[:, 1:]


def evaluate(model: CharModel, data: np.ndarray, steps: int) -> float:
    """Mean cross-entropy (nats per character) over consecutive windows of ``data``."""
    model.eval()
    n = (data.size - 1) // steps
    x = data[: n * steps].reshape(n, steps)
    y = data[1: n * steps + 1].reshape(n, steps)
    logits, _ = model(x)
    loss, _ = cross_entropy(logits, y)
    model.train()
    return float(loss)


def sample(model: CharModel, chars: list[str], prompt: str, length: int,
           temperature: float, rng: np.random.Generator) -> str:
    """Feed ``prompt``, then draw ``length`` characters one at a time."""
    index = {c: i for i, c in enumerate(chars)}
    model.eval()
    logits, state = model(np.array([[index[c] for c in prompt]]))
    out = list(prompt)
    for _ in range(length):
        z = logits[0, -1].astype(np.float64) / temperature
        p = np.exp(z - z.max())
        token = rng.choice(len(chars), p=p / p.sum())
        out.append(chars[token])
        logits, state = model(np.array([[token]]), state)
    model.train()
    return "".join(out)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    parser.add_argument("--steps", type=int, default=400, help="training steps")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--bptt", type=int, default=64, help="characters per window")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.2, help="between stacked layers")
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default=None, help="cpp, numba or reference")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--sample-chars", type=int, default=400)
    args = parser.parse_args(argv)
    if args.backend:
        fastseq.set_backend(args.backend)

    text = open(DATA, encoding="utf-8").read()
    chars = sorted(set(text))
    data = np.array([chars.index(c) for c in text], dtype=np.int64)
    split = int(0.9 * data.size)
    train, valid = data[:split], data[split:]

    rng = np.random.default_rng(args.seed)  # one generator seeds everything: a run repeats
    model = CharModel(len(chars), 32, args.hidden, args.layers, args.cell, args.dropout, rng)
    opt = Adam(model.parameters(), lr=args.lr)
    schedule = CosineAnnealingLR(opt, T_max=args.steps, eta_min=args.lr / 10)
    n_params = sum(p.size for p in model.parameters())
    print(f"{len(text)} characters, vocabulary {len(chars)}, {n_params} parameters, "
          f"{args.layers}-layer {args.cell.upper()} H={args.hidden}, backend {fastseq.get_backend()}")

    start, running = time.perf_counter(), None
    stream = batches(train, args.batch, args.bptt, rng)
    for step in range(1, args.steps + 1):
        x, y = next(stream)
        opt.zero_grad()
        logits, _ = model(x)
        loss, dlogits = cross_entropy(logits, y)
        model.backward(dlogits)
        clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        schedule.step()
        running = float(loss) if running is None else 0.9 * running + 0.1 * float(loss)
        if step % args.log_every == 0 or step == args.steps:
            elapsed = time.perf_counter() - start
            rate = step * args.batch * args.bptt / elapsed
            print(f"step {step:5d}  loss {running:.3f}  valid {evaluate(model, valid, args.bptt):.3f}"
                  f"  lr {schedule.get_last_lr()[0]:.2e}  {elapsed:6.1f}s  {rate:8.0f} chars/s",
                  flush=True)
    final = evaluate(model, valid, args.bptt)
    print(f"\nvalidation loss {final:.3f} nats/char after {time.perf_counter() - start:.1f}s\n")
    print(sample(model, chars, "The ", args.sample_chars, 0.7, rng))
    return final


if __name__ == "__main__":
    main()
