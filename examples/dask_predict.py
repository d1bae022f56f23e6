"""Batch inference over Dask (``fastseq[dask]``): a LocalCluster of two worker processes runs
a GRU over many variable-length sequences, bucketed by length, results in input order.

    python examples/dask_predict.py                    # about 10 s on two cores
    python examples/dask_predict.py --sequences 20000 --hidden 256

On a real cluster, connect a ``distributed.Client`` to its scheduler instead: the same
``fastseq.dask.predict`` call runs there (the workers need fastseq installed).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

try:
    import fastseq
except ImportError:  # not installed: run from the source tree this example sits in
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import fastseq


def make_partition(seeds, count, max_length, features):
    """``count`` sequences of random lengths for each seed: the data is made on the workers
    (as it would be read there from storage), not shipped inside the graph."""
    out = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        lengths = rng.integers(1, max_length + 1, count)
        out += [rng.standard_normal((int(n), features)).astype(np.float32) for n in lengths]
    return out


def main(argv: list[str] | None = None) -> None:
    import dask.bag as db
    from distributed import Client, LocalCluster

    from fastseq import dask as fdask

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=4000)
    parser.add_argument("--max-length", type=int, default=200)
    parser.add_argument("--input", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--partitions", type=int, default=16)
    args = parser.parse_args(argv)

    model = fastseq.GRU(args.input, args.hidden, batch_first=True, seed=0)
    per_part = -(-args.sequences // args.partitions)
    make = (per_part, args.max_length, args.input)

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        bag = db.from_sequence(range(args.partitions), npartitions=args.partitions)
        bag = bag.map_partitions(make_partition, *make)
        start = time.perf_counter()
        outputs = fdask.predict(model, bag, batch_size=args.batch).compute()
        elapsed = time.perf_counter() - start
        threads = client.run(fastseq.get_num_threads)

    first = make_partition([0], *make)
    assert [y.shape[0] for y in outputs[:per_part]] == [x.shape[0] for x in first]  # in order
    steps = sum(y.shape[0] for y in outputs)
    print(f"{len(outputs)} sequences ({steps} steps, lengths 1..{args.max_length}) through "
          f"GRU({args.input}, {args.hidden}) on 2 workers ({sorted(threads.values())} fastseq "
          f"threads): {elapsed:.2f} s, {args.sequences / elapsed:.0f} sequences/s, "
          f"{steps / elapsed:.0f} steps/s")
    # The first partition again, here, on one thread as on the workers: the same buckets
    # give the same bits.
    model.eval()
    fastseq.set_num_threads(1)
    local = fdask.predict_sequences(model, first, args.batch)
    same = all(np.array_equal(a, b) for a, b in zip(local, outputs[:per_part]))
    print(f"first partition run locally: {'bitwise equal' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
