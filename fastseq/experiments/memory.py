"""Long-term dependencies: the adding problem and the copy task at growing T, for the tanh
RNN, the LSTM and the GRU, at equal hidden size and at equal parameter count.
"""
from __future__ import annotations

import numpy as np

from ._run import Run, fmt
from .tasks import (ADDING_BASELINE_MSE, COPY_SYMBOLS, SeqModel, adding_batch, cell_params,
                    copy_batch, evaluate, hidden_for_params, train)

NAME = "memory"
CELLS = ("rnn_tanh", "lstm", "gru")
LABELS = {"rnn_tanh": "tanh RNN", "lstm": "LSTM", "gru": "GRU"}
#: test error at or below which a task counts as solved (and training stops)
SOLVED = {"adding": 0.01, "copy": 0.01}
IO = {"adding": (2, 1), "copy": (COPY_SYMBOLS + 2, COPY_SYMBOLS + 2)}
BASELINE = {"adding": ADDING_BASELINE_MSE, "copy": 1 - 1 / COPY_SYMBOLS}


def configurations(task: str, H: int) -> list[tuple[str, str, int]]:
    """(setting, cell, hidden size): every cell at H, and the RNN and GRU resized to the
    LSTM's parameter count (the LSTM run is shared by both settings)."""
    I, O = IO[task]
    budget = cell_params("lstm", I, H, O)
    runs = [("equal hidden", cell, H) for cell in CELLS]
    runs += [("equal params", cell, hidden_for_params(cell, I, O, budget))
             for cell in CELLS if cell != "lstm"]
    return runs


def run(r: Run) -> dict:
    H = r.pick(8, 64, 64)
    batch = r.pick(8, 64, 64)
    Ts = r.pick([6], [25, 50], [25, 50, 100, 200])
    steps = {"adding": r.pick(6, 600, 3000), "copy": r.pick(6, 500, 3000)}
    eval_every = r.pick(3, 50, 100)
    test_size = r.pick(16, 512, 512)
    lr, clip = 1e-2, 1.0
    tasks = ("adding", "copy")
    total = sum(steps[t] * (T + (20 if t == "copy" else 0)) * len(configurations(t, H))
                for t in tasks for T in Ts)
    bar = r.progress(total)
    results = {"H": H, "batch": batch, "T": Ts, "steps": steps, "lr": lr, "clip": clip,
               "optimizer": "Adam", "eval_every": eval_every, "test_size": test_size,
               "solved_at": SOLVED, "baseline": BASELINE, "runs": []}
    for task in tasks:
        make = adding_batch if task == "adding" else copy_batch
        I, O = IO[task]
        for T in Ts:
            test = make(r.rng("test", task, T), test_size, T)
            length = T + (20 if task == "copy" else 0)
            for setting, cell, h in configurations(task, H):
                model = SeqModel(cell, I, h, O, r.rng("model", task, T, cell, h),
                                 last=task == "adding")
                done = [0]

                def tick(length=length, cell=cell, T=T, task=task, done=done):
                    done[0] += 1
                    bar.update(length, f"{task} T={T} {cell} H={h}")

                log = train(model, task, T, steps[task], batch, r.rng("train", task, T, cell, h),
                            lr=lr, clip=clip, test=test, eval_every=eval_every, tick=tick,
                            solved=SOLVED[task])
                bar.update((steps[task] - done[0]) * length)  # stopped early: skip its share
                final = evaluate(model, task, *test)
                solved_step = next((s for s, e in log.test_error if e <= SOLVED[task]), None)
                results["runs"].append({
                    "task": task, "T": T, "setting": setting, "cell": cell, "H": h,
                    "params": cell_params(cell, I, h, O), "test_error": final["error"],
                    "test_loss": final["loss"], "solved_step": solved_step,
                    "steps_run": log.steps[-1] if log.steps else 0,
                    "diverged_at": log.diverged_at, "curve": log.test_error,
                })
    bar.close()
    r.write(results, summary(results), lambda plt, path: plot(plt, path, results))
    return results


def find(res: dict, task: str, T: int, setting: str, cell: str) -> dict:
    for run in res["runs"]:
        if (run["task"], run["T"], run["cell"]) == (task, T, cell) and (
                run["setting"] == setting or cell == "lstm"):
            return run
    raise KeyError((task, T, setting, cell))


def summary(res: dict) -> str:
    out = [
        f"Each run: Adam (lr {res['lr']}), gradients clipped at norm {res['clip']}, batch "
        f"{res['batch']} of fresh sequences per step, at most {res['steps']['adding']} steps "
        f"(adding) and {res['steps']['copy']} (copy), stopped once the test error on "
        f"{res['test_size']} fixed sequences is ≤ {res['solved_at']['adding']} (evaluated every "
        f"{res['eval_every']} steps). Equal hidden: H = {res['H']} for every cell; equal "
        "params: the RNN and the GRU resized to the LSTM's parameter count (layer and head). "
        "Adding problem (Arjovsky et al.'s variant): test MSE, predicting 1 gives "
        f"{fmt(res['baseline']['adding'])}. Copy task: 10 symbols of 8 to recall after T blanks; "
        "error rate on the recalled symbols (chance: 0.875; the loss is scored on those 10 "
        "steps only).",
        "",
    ]
    for task in ("adding", "copy"):
        out += [f"**{task}** — test error at the end (step solved, or ✗ not solved within the budget)",
                "", "| T | setting | " + " | ".join(LABELS[c] for c in CELLS) + " |",
                "|---|---|" + "---:|" * len(CELLS)]
        for T in res["T"]:
            for setting in ("equal hidden", "equal params"):
                cells = []
                for cell in CELLS:
                    run = find(res, task, T, setting, cell)
                    mark = f"step {run['solved_step']}" if run["solved_step"] else "✗"
                    cells.append(f"{fmt(run['test_error'])} (H {run['H']}, {mark})")
                out.append(f"| {T} | {setting} | " + " | ".join(cells) + " |")
        out.append("")
    out += findings(res)
    return "\n".join(out)


def findings(res: dict) -> list[str]:
    """Sentences computed from the runs: who solved what, and where LSTM and GRU differ."""
    lines = ["**What the runs show**", ""]
    for task in ("adding", "copy"):
        for T in res["T"]:
            solved = [c for c in CELLS if find(res, task, T, "equal hidden", c)["solved_step"]]
            failed = [c for c in CELLS if c not in solved]
            lstm = find(res, task, T, "equal hidden", "lstm")
            gru = find(res, task, T, "equal hidden", "gru")
            text = f"- {task}, T = {T} (equal hidden): solved by " + (
                ", ".join(LABELS[c] for c in solved) if solved else "none")
            if failed:
                text += "; not solved by " + ", ".join(
                    f"{LABELS[c]} (error {fmt(find(res, task, T, 'equal hidden', c)['test_error'])})"
                    for c in failed)
            if lstm["solved_step"] and gru["solved_step"]:
                faster = "GRU" if gru["solved_step"] < lstm["solved_step"] else "LSTM"
                text += (f". LSTM at step {lstm['solved_step']}, GRU at step {gru['solved_step']}"
                         f" ({faster} first)")
            lines.append(text + ".")
    if 100 in res["T"]:
        tanh = find(res, "adding", 100, "equal hidden", "rnn_tanh")
        lstm = find(res, "adding", 100, "equal hidden", "lstm")
        gru = find(res, "adding", 100, "equal hidden", "gru")
        ok = (not tanh["solved_step"]) and lstm["test_error"] < 0.01 and gru["test_error"] < 0.01
        lines += ["", "The claim — the tanh RNN fails the adding problem at T = 100 while the LSTM "
                  "and the GRU reach test MSE < 0.01 within the budget — "
                  + ("**holds** in this run." if ok else "**does not hold** in this run.")]
    else:
        lines += ["", "(T = 100, where the literature's claim is checked, runs in the full "
                  "experiment only: `python -m fastseq.experiments memory`.)"]
    return lines


def plot(plt, path: str, res: dict) -> None:
    tasks = ("adding", "copy")
    fig, axes = plt.subplots(2, 1 + len(res["T"]), figsize=(4 * (1 + len(res["T"])), 7),
                             squeeze=False)
    colors = {"rnn_tanh": "C0", "lstm": "C1", "gru": "C2"}
    for row, task in enumerate(tasks):
        ax = axes[row][0]
        for cell in CELLS:
            for setting, style in (("equal hidden", "-o"), ("equal params", "--s")):
                if cell == "lstm" and setting == "equal params":
                    continue
                errs = [find(res, task, T, setting, cell)["test_error"] for T in res["T"]]
                label = LABELS[cell] + ("" if cell == "lstm" else f" ({setting})")
                ax.plot(res["T"], errs, style, color=colors[cell], label=label)
        ax.axhline(res["baseline"][task], color="gray", lw=0.8, ls=":", label="baseline")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(res["T"], [str(t) for t in res["T"]])
        ax.set_xlabel("T")
        ax.set_ylabel("test MSE" if task == "adding" else "test error rate")
        ax.set_title(f"{task}: test error against T")
        if row == 0:
            ax.legend(fontsize=7)
        for col, T in enumerate(res["T"], start=1):
            ax = axes[row][col]
            for cell in CELLS:
                run = find(res, task, T, "equal hidden", cell)
                if run["curve"]:
                    s, e = zip(*run["curve"])
                    ax.plot(s, e, color=colors[cell], label=LABELS[cell])
            ax.axhline(res["baseline"][task], color="gray", lw=0.8, ls=":")
            ax.set_yscale("log")
            ax.set_title(f"{task}, T = {T} (equal hidden)")
            ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
