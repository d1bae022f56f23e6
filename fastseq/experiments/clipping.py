"""Exploding gradients and ``fastseq.clip_grad_norm_``: one run without clipping and one with
it, from the same initial weights and the same batches, and their loss curves.

The model is Le et al.'s (2015) IRNN — a relu RNN whose W_hh starts as the identity — on
the adding problem, trained with SGD and momentum: a configuration known to need clipping.
"""
from __future__ import annotations

import numpy as np

from ._run import Run, fmt
from .tasks import ADDING_BASELINE_MSE, SeqModel, adding_batch, evaluate, train

NAME = "clipping"


def irnn(H: int, rng) -> SeqModel:
    model = SeqModel("rnn_relu", 2, H, 1, rng, last=True)
    model.rnn.weight_hh_l0.data[...] = np.eye(H)
    model.rnn.bias_hh_l0.data[...] = 0
    model.rnn.bias_ih_l0.data[...] = 0
    return model


def run(r: Run) -> dict:
    H = r.pick(8, 64, 64)
    T = r.pick(8, 20, 20)
    batch = r.pick(8, 64, 64)
    steps = r.pick(10, 800, 2000)
    lr, max_norm = 1e-2, 1.0
    test = adding_batch(r.rng("test"), r.pick(16, 512, 512), T)
    bar = r.progress(2 * steps)
    results = {"H": H, "T": T, "batch": batch, "steps": steps, "lr": lr, "momentum": 0.9,
               "optimizer": "SGD", "max_norm": max_norm, "baseline": ADDING_BASELINE_MSE,
               "runs": {}}
    for name, clip in (("no clipping", None), ("clip_grad_norm_", max_norm)):
        model = irnn(H, r.rng("model"))          # the same weights for both runs
        with np.errstate(over="ignore", invalid="ignore"):
            log = train(model, "adding", T, steps, batch, r.rng("batches"), lr=lr,
                        optimizer="sgd", clip=clip, test=test,
                        eval_every=max(steps // 40, 1), tick=lambda: bar.update(1, name))
            final = evaluate(model, "adding", *test)["error"]
        norms = np.asarray(log.grad_norm, float)
        losses = np.asarray(log.train_loss, float)
        results["runs"][name] = {
            "train_loss": log.train_loss, "grad_norm": log.grad_norm, "test": log.test_error,
            "final_test_mse": final, "diverged_at": log.diverged_at,
            "max_grad_norm": float(np.nanmax(norms)) if norms.size else None,
            "max_train_loss": float(np.nanmax(losses)) if losses.size else None,
            "steps_clipped": int(np.sum(norms > max_norm)) if clip else 0,
        }
    bar.close()
    r.write(results, summary(results), lambda plt, path: plot(plt, path, results))
    return results


def summary(res: dict) -> str:
    a, b = res["runs"]["no clipping"], res["runs"]["clip_grad_norm_"]
    lines = [
        f"IRNN (relu RNN, W_hh = I, zero biases; H = {res['H']}) on the adding problem at "
        f"T = {res['T']}, SGD (lr {res['lr']}, momentum {res['momentum']}), batch "
        f"{res['batch']}, {res['steps']} steps; both runs start from the same weights and see "
        "the same batches. Predicting 1 gives test MSE "
        f"{fmt(res['baseline'])}.",
        "",
        "| run | largest gradient norm | largest training loss | test MSE at the end | steps clipped |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, v in res["runs"].items():
        end = fmt(v["final_test_mse"]) if v["diverged_at"] is None else f"NaN (step {v['diverged_at']})"
        lines.append(f"| {name} | {fmt(v['max_grad_norm'])} | {fmt(v['max_train_loss'])} | {end} "
                     f"| {v['steps_clipped']} of {len(v['grad_norm'])} |")
    unclipped_failed = (a["diverged_at"] is not None or a["final_test_mse"] > 0.5 * res["baseline"])
    clipped_learned = b["final_test_mse"] < 0.5 * res["baseline"]
    lines += ["", (
        f"Without clipping the gradient norm reaches {fmt(a['max_grad_norm'])}"
        + (f" and the loss becomes non-finite at step {a['diverged_at']}" if a["diverged_at"]
           else f", the loss jumps to {fmt(a['max_train_loss'])}")
        + (" and the run never recovers" if unclipped_failed else "")
        + f" (test MSE {fmt(a['final_test_mse'])}); with `clip_grad_norm_(params, "
        f"{res['max_norm']})` the same run reaches test MSE {fmt(b['final_test_mse'])}."
        + ("" if unclipped_failed and clipped_learned else
           " In this run the contrast the experiment looks for (unclipped diverges, clipped "
           "learns) did not appear; see the curves.")
    )]
    return "\n".join(lines)


def plot(plt, path: str, res: dict) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, v in res["runs"].items():
        loss = np.asarray(v["train_loss"], float)
        axes[0].semilogy(np.arange(1, loss.size + 1), loss, lw=0.7, label=name)
        axes[1].semilogy(np.arange(1, len(v["grad_norm"]) + 1), v["grad_norm"], lw=0.7, label=name)
    axes[0].axhline(res["baseline"], color="gray", ls=":", lw=0.8, label="predict 1")
    axes[0].set_title("training loss (MSE)")
    axes[1].axhline(res["max_norm"], color="k", ls=":", lw=0.8, label="max_norm")
    axes[1].set_title("gradient norm before clipping")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.suptitle(f"IRNN on the adding problem, T = {res['T']}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
