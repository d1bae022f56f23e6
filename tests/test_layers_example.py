"""examples/char_lm.py runs end to end (a few tiny steps) and prints loss lines and a sample."""
import os
import subprocess
import sys

from subprocesses import child_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_char_lm_smoke():
    script = os.path.join(ROOT, "examples", "char_lm.py")
    result = subprocess.run(
        [sys.executable, "-W", "error", script, "--steps", "4", "--log-every", "2",
         "--hidden", "8", "--bptt", "16", "--batch", "4", "--sample-chars", "20",
         "--cell", "gru", "--backend", "reference"],
        capture_output=True, text=True, timeout=120, env=child_env(),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sum(line.startswith("step ") for line in lines) == 2
    done = [i for i, line in enumerate(lines) if line.startswith("validation loss")]
    assert len(done) == 1
    sample = "\n".join(lines[done[0] + 1:]).strip()
    assert sample.startswith("The ") and len(sample) >= 20
