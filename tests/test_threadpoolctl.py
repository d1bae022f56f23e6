"""threadpoolctl sees fastseq's pool and limits it, whichever of the two is imported first;
``import fastseq`` imports neither threadpoolctl nor the distributed extras. Each case in
a fresh interpreter (what is imported, and in which order, is the point)."""
from __future__ import annotations

import pytest

from subprocesses import run_python

pytest.importorskip("threadpoolctl", reason="threadpoolctl is not installed (in the test extra)")

CHECK = """
import json, fastseq, threadpoolctl
fastseq.set_num_threads(3)
info = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "fastseq"]
with threadpoolctl.threadpool_limits(1):
    inside = fastseq.get_num_threads()
with threadpoolctl.threadpool_limits(limits=2, user_api="fastseq"):
    only = fastseq.get_num_threads()
print(json.dumps({"info": info, "inside": inside, "after": fastseq.get_num_threads(),
                  "only": only, "version": fastseq.__version__}))
"""


@pytest.mark.parametrize("first", ["fastseq", "threadpoolctl"])
def test_threadpool_limits_caps_fastseq(first):
    out = run_python(f"import {first}\n" + CHECK, timeout=120)
    [info] = out["info"]
    assert info["internal_api"] == "fastseq" and info["prefix"] == "libfastseq"
    assert info["num_threads"] == 3 and info["version"] == out["version"]
    assert out["inside"] == 1 and out["only"] == 2 and out["after"] == 3


def test_a_limit_set_before_the_first_kernel_holds():
    out = run_python(
        "import json, numpy as np, fastseq, threadpoolctl\n"
        "with threadpoolctl.threadpool_limits(1):\n"
        "    fastseq.functional.rnn_forward(np.ones((2, 1, 3)), np.ones((4, 3)), np.ones((4, 4)))\n"
        "    inside = fastseq.get_num_threads()\n"
        "print(json.dumps(inside))\n", timeout=120)
    assert out == 1


def test_import_fastseq_imports_no_extra():
    out = run_python(
        "import json, sys, fastseq\n"
        "print(json.dumps([m for m in ('threadpoolctl', 'mpi4py', 'dask', 'distributed')"
        " if m in sys.modules]))\n", timeout=120)
    assert out == []
