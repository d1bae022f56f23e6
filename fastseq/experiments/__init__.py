"""``python -m fastseq.experiments``: the textbook claims about RNN, LSTM and GRU, measured
with fastseq's own layers, optimizers and kernels.

One module per experiment (gradients, memory, cost, clipping, chain_rule), each with
``run(Run) -> dict`` writing NAME.json, NAME.md and NAME.png; ``tasks`` holds the adding
problem, the copy task, the model and the training loop, ``_run`` sizes, seeds, progress
and report writing. Not imported by ``import fastseq``.
"""
from __future__ import annotations

import importlib

#: CLI name -> module, in the order ``all`` runs them.
EXPERIMENTS = {
    "chain-rule": "chain_rule",
    "gradients": "gradients",
    "memory": "memory",
    "cost": "cost",
    "clipping": "clipping",
}


def run_experiment(name: str, size: str = "full", seed: int = 0, out: str = "experiments",
                   progress: bool = True) -> dict:
    """Run one experiment (``size``: "smoke", "quick" or "full"); returns its results."""
    from ._run import Run

    module = importlib.import_module(f"{__name__}.{EXPERIMENTS[name]}")
    return module.run(Run(name, size, seed, out, progress=progress))
