"""The character LM of char_lm.py, trained data-parallel over MPI (``fastseq[mpi]``).

    mpiexec -n 2 python -m mpi4py examples/char_lm_ddp.py          # or: mpiexec -n 2 python examples/char_lm_ddp.py

Every rank builds the same model and draws the same global batches from one seed; each
takes its share of every batch (``fastseq.distributed.shard``), sums its loss, and one
allreduce per step gives every rank the gradient of the whole batch (divided by the global
count of characters), which is then clipped and applied identically everywhere. With
``-m mpi4py`` an exception on any rank aborts the job instead of leaving the others
waiting. Threads: each rank takes the CPUs divided by the ranks on its node.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # NumPy's BLAS: see char_lm.py

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from char_lm import DATA, CharModel, batches, evaluate, sample  # noqa: E402  (also finds fastseq)

import fastseq  # noqa: E402
from fastseq.losses import cross_entropy  # noqa: E402
from fastseq.optim import Adam, CosineAnnealingLR, clip_grad_norm_  # noqa: E402


def main(argv: list[str] | None = None) -> float:
    from mpi4py import MPI

    from fastseq import distributed

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32, help="global batch, split over ranks")
    parser.add_argument("--bptt", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--sample-chars", type=int, default=300)
    args = parser.parse_args(argv)

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    setup = distributed.setup(comm)
    text = open(DATA, encoding="utf-8").read()
    chars = sorted(set(text))
    data = np.array([chars.index(c) for c in text], dtype=np.int64)
    split = int(0.9 * data.size)
    train, valid = data[:split], data[split:]

    rng = np.random.default_rng(args.seed)  # the same on every rank: same model, same batches
    model = CharModel(len(chars), 32, args.hidden, args.layers, args.cell, args.dropout, rng)
    distributed.broadcast_parameters(model, comm)
    params = list(model.parameters())
    opt = Adam(params, lr=args.lr)
    schedule = CosineAnnealingLR(opt, T_max=args.steps, eta_min=args.lr / 10)
    if rank == 0:
        print(f"{comm.Get_size()} ranks x {setup['threads']} threads, global batch {args.batch}, "
              f"{sum(p.size for p in params)} parameters, {args.layers}-layer "
              f"{args.cell.upper()} H={args.hidden}", flush=True)

    start, running = time.perf_counter(), None
    stream = batches(train, args.batch, args.bptt, rng)
    for step in range(1, args.steps + 1):
        x, y = distributed.shard(next(stream), comm)  # this rank's rows of the global batch
        opt.zero_grad()
        logits, _ = model(x)
        loss, dlogits = cross_entropy(logits, y, reduction="sum")
        model.backward(dlogits)
        loss = distributed.allreduce_gradients(params, comm, count=y.size, loss=loss).loss
        clip_grad_norm_(params, args.clip)  # after the allreduce: the global norm
        opt.step()
        schedule.step()
        running = loss if running is None else 0.9 * running + 0.1 * loss
        if rank == 0 and (step % args.log_every == 0 or step == args.steps):
            elapsed = time.perf_counter() - start
            print(f"step {step:5d}  loss {running:.3f}  valid {evaluate(model, valid, args.bptt):.3f}"
                  f"  {elapsed:6.1f}s  {step * args.batch * args.bptt / elapsed:8.0f} chars/s",
                  flush=True)
    final = evaluate(model, valid, args.bptt) if rank == 0 else float("nan")
    if rank == 0:
        print(f"\nvalidation loss {final:.3f} nats/char after {time.perf_counter() - start:.1f}s\n")
        print(sample(model, chars, "The ", args.sample_chars, 0.7, rng))
    return final


if __name__ == "__main__":
    main()
