"""python -m fastseq.experiments at smoke size (seconds): each experiment writes its JSON,
markdown and (with matplotlib) plot with the expected keys; a seed repeats the numbers; and
``import fastseq`` imports neither the experiments nor matplotlib."""
import json
import subprocess
import sys

import pytest

from fastseq.experiments import EXPERIMENTS, run_experiment
from fastseq.experiments._run import have_matplotlib

KEYS = {
    "chain-rule": {"cells", "two_step", "worst_finite_difference_error", "worst_vs_reference",
                   "all_pass"},
    "gradients": {"H", "T", "batch", "steps", "cells", "tanh_vs_lstm", "tanh_vs_gru", "holds_10x"},
    "memory": {"H", "batch", "T", "steps", "runs", "baseline"},
    "cost": {"T", "B", "I", "rounds", "settings"},
    "clipping": {"H", "T", "steps", "runs", "max_norm"},
}
#: timings are not reproducible; everything else is
TIMED = {"cost"}


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_experiment_smoke(name, tmp_path):
    results = run_experiment(name, "smoke", seed=3, out=str(tmp_path), progress=False)
    assert KEYS[name] <= set(results)
    data = json.loads((tmp_path / f"{name}.json").read_text())
    assert set(data) == {"meta", "results"}
    assert data["meta"]["seed"] == 3 and data["meta"]["size"] == "smoke"
    assert KEYS[name] <= set(data["results"])
    text = (tmp_path / f"{name}.md").read_text()
    assert f"python -m fastseq.experiments {name} --smoke --seed 3 --threads" in text
    if name != "chain-rule" and have_matplotlib():
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


@pytest.mark.parametrize("name", [n for n in EXPERIMENTS if n not in TIMED])
def test_same_seed_same_numbers(name, tmp_path):
    a = run_experiment(name, "smoke", seed=5, out=str(tmp_path / "a"), progress=False)
    b = run_experiment(name, "smoke", seed=5, out=str(tmp_path / "b"), progress=False)
    ja = json.loads((tmp_path / "a" / f"{name}.json").read_text())["results"]
    jb = json.loads((tmp_path / "b" / f"{name}.json").read_text())["results"]
    assert ja == jb
    if name in ("gradients", "memory"):
        c = run_experiment(name, "smoke", seed=6, out=str(tmp_path / "c"), progress=False)
        assert json.dumps(c, default=str) != json.dumps(a, default=str)
    del b


def test_cli_all_writes_index(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "fastseq.experiments", "all", "--smoke",
                           "--out", str(out), "--seed", "1"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    index = (out / "index.md").read_text()
    for name in EXPERIMENTS:
        assert (out / f"{name}.json").exists() and f"# {name}" in index
    assert "ETA" in proc.stderr  # the progress bar


def test_without_matplotlib_json_and_markdown_say_plots_need_the_extra(tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from fastseq.experiments import run_experiment\n"
        f"run_experiment('clipping', 'smoke', out={str(tmp_path)!r}, progress=False)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    assert not (tmp_path / "clipping.png").exists()
    assert "fastseq[plot]" in (tmp_path / "clipping.md").read_text()
    assert json.loads((tmp_path / "clipping.json").read_text())["results"]["runs"]


def test_import_fastseq_stays_light():
    code = ("import sys, fastseq; "
            "print('matplotlib' in sys.modules, 'fastseq.experiments' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.split() == ["False", "False"]
