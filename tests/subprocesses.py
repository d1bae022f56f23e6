"""Fresh interpreters for tests that need one (import-time behaviour, caches, scripts).

They must import the same fastseq as the test process: the source tree during
development (`python -m pytest` after tools/dev-build.sh), the installed package in CI
(`pytest`). So PYTHONPATH starts with the directory that holds the tested package, and
the child runs from there too (`python -c` puts its working directory first on sys.path).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import fastseq

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastseq.__file__)))


def child_env(extra: dict | None = None) -> dict:
    """This process's environment, minus FASTSEQ_BACKEND, finding the tested fastseq first."""
    env = {k: v for k, v in os.environ.items() if k != "FASTSEQ_BACKEND"}
    env["PYTHONPATH"] = PACKAGE_PARENT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def run_python(code: str, env: dict | None = None, timeout: float = 900) -> object:
    """Run ``code`` in a fresh interpreter; it prints one JSON line last, which is returned."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE_PARENT, env=child_env(env),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])
