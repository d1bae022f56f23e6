"""`python -m fastseq.bench` runs end to end on a small selection and writes its JSON.
(A smoke test of the harness: the figures themselves are benchmarks, never asserted.)"""
import json

from fastseq.bench.__main__ import main


def test_bench_quick_rnn_one_thread(tmp_path, capsys):
    out = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    assert main(["--quick", "--cells", "rnn", "--threads", "1", "--no-reference", "--no-torch",
                 "--budget", "0", "--json", str(out), "--markdown", str(md)]) == 0
    text = capsys.readouterr().out
    assert "SGEMM 2048^3" in text and "per-call overhead" in text
    data = json.loads(out.read_text())
    assert len(data["cases"]) == 4  # 2 quick configs x inference/training
    for case in data["cases"]:
        assert case["cell"] == "rnn" and case["threads"] == 1
        assert case["fastseq_s"] > 0 and case["gflops"] > 0 and case["sgemm_gflops"] > 0
        assert abs(case["pct_sgemm"] - 100 * case["gflops"] / case["sgemm_gflops"]) < 1e-9
    assert data["overhead_us"] > 0 and data["sgemm_gflops"]["1"] > 0
    table = md.read_text().splitlines()
    assert table[0].startswith("| cell |") and len(table) == 2 + 4
    assert all(line.startswith("| rnn |") and line.endswith("| - |") for line in table[2:])
