"""The data-parallel training that test_distributed.py checks: Embedding -> LSTM -> Linear on
variable-length sequences (padding targets = ignore_index, LSTM lengths), Adam with
clipping, 20 steps on global batches of 7 split 4/3 over two ranks.

``train(dtype)`` is the single process on the combined batch; run under
``mpiexec -n N python -m mpi4py tests/ddp_train.py OUT.npz`` each rank trains its shard
and rank 0 writes the losses and final weights of both dtypes to OUT.npz, plus each
rank's ``fastseq.distributed.info()``.
"""
from __future__ import annotations

import json
import sys

import numpy as np

import fastseq
from fastseq import LSTM, Embedding, Linear, Module
from fastseq.losses import cross_entropy
from fastseq.optim import Adam, clip_grad_norm_

V, E, H, T, GLOBAL_BATCH, STEPS = 11, 6, 16, 9, 7, 20


class Model(Module):
    def __init__(self, dtype, seed):
        super().__init__()
        self.embed = Embedding(V, E, dtype=dtype, seed=seed)
        self.rnn = LSTM(E, H, batch_first=True, dtype=dtype, seed=seed)
        self.head = Linear(H, V, dtype=dtype, seed=seed)

    def forward(self, tokens, lengths):
        y, _ = self.rnn(self.embed(tokens), lengths=lengths)
        return self.head(y)

    def backward(self, dlogits):
        dx, _ = self.rnn.backward(self.head.backward(dlogits))
        self.embed.backward(dx)


def global_batches(seed=1):
    """The same global batches on every rank: tokens (B, T), targets (B, T), lengths (B,)."""
    rng = np.random.default_rng(seed)
    for _ in range(STEPS):
        tokens = rng.integers(0, V, (GLOBAL_BATCH, T))
        lengths = rng.integers(1, T + 1, GLOBAL_BATCH)
        targets = np.where(np.arange(T) < lengths[:, None], rng.integers(0, V, (GLOBAL_BATCH, T)), -100)
        yield tokens, targets, lengths


def train(dtype, comm=None):
    """Losses per step and the final state dict; comm=None: one process, mean loss."""
    model = Model(dtype, np.random.default_rng(0))
    params = list(model.parameters())
    opt = Adam(params, lr=1e-2)
    if comm is not None:
        from fastseq import distributed

        distributed.broadcast_parameters(model, comm)
    losses = []
    for tokens, targets, lengths in global_batches():
        if comm is not None:
            tokens, targets, lengths = distributed.shard((tokens, targets, lengths), comm)
        opt.zero_grad()
        logits = model(tokens, lengths)
        if comm is None:
            loss, dlogits = cross_entropy(logits, targets)
        else:
            loss, dlogits = cross_entropy(logits, targets, reduction="sum")
        model.backward(dlogits)
        if comm is not None:
            loss = distributed.allreduce_gradients(
                params, comm, count=np.count_nonzero(targets != -100), loss=loss).loss
        clip_grad_norm_(params, 0.5)
        opt.step()
        losses.append(float(loss))
    return np.array(losses), model.state_dict()


def main(out):
    from mpi4py import MPI

    from fastseq import distributed

    comm = MPI.COMM_WORLD
    results = {}
    for dtype in ("float64", "float32"):
        losses, state = train(dtype, comm)
        results[f"{dtype}/losses"] = losses
        results.update({f"{dtype}/{k}": v for k, v in state.items()})
    infos = comm.gather(distributed.info(), root=0)
    config = fastseq.show_config("dicts")["distributed"]
    if comm.Get_rank() == 0:
        np.savez(out, **results)
        print(json.dumps({"infos": infos, "config": config}))


if __name__ == "__main__":
    main(sys.argv[1])
