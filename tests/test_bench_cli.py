"""`python -m fastseq.bench`: the statistics and rules behind its columns (verdict, flags,
spreads), `--cases` parsing, `--compare`, and end-to-end runs on tiny cases with few
rounds. The measured figures themselves are never asserted (they are benchmarks); what is
checked is that the printed and saved figures follow from the saved per-round times."""
import json

import numpy as np
import pytest

import fastseq
from fastseq.bench import compare, ort, report, stats, timing
from fastseq.bench.__main__ import main
from fastseq.bench.cases import Case, grid
from fastseq.bench.select import parse_selector, parse_shape, select
from fastseq.bench.streaming import describe, streaming_step

TINY = ["--configs", "4,1,8,16", "4,2,8,8", "--budget", "0", "--sgemm-size", "64"]


# -- the verdict rule and the spread ------------------------------------------------------

def spread(values):
    return stats.Spread.of(values)


def test_spread_is_the_five_number_summary():
    s = spread([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.min, s.q1, s.median, s.q3, s.max, s.n) == (1.0, 2.0, 3.0, 4.0, 5.0, 5)
    with pytest.raises(ValueError, match="non-empty"):
        stats.Spread.of([])


@pytest.mark.parametrize("ratios, expected", [
    ([1.00, 1.01, 1.02, 1.03, 1.05, 1.06, 1.10], "faster"),   # median 1.03, q1 1.015
    ([0.90, 0.96, 0.97, 1.00, 1.01, 1.02, 1.04], "faster"),   # median exactly 1.0, q1 0.965
    ([0.80, 0.90, 0.94, 1.00, 1.01, 1.02, 1.04], "unclear"),  # median 1.0 but q1 0.92 < 0.95
    ([0.80, 0.85, 0.90, 0.95, 0.97, 0.98, 0.99], "slower"),   # median 0.95, q3 0.975
    ([0.90, 0.92, 0.95, 0.99, 1.05, 1.10, 1.20], "unclear"),  # median 0.99, q3 1.075 >= 1/0.95
    ([1.10, 1.20, 1.30], "few rounds"),                       # 3 < 7 rounds: no verdict
])
def test_verdict_rule(ratios, expected):
    assert stats.verdict(spread(ratios)) == expected


def test_paired_ratios_need_paired_rounds():
    np.testing.assert_allclose(stats.per_round_ratios([2.0, 3.0], [1.0, 2.0]), [2.0, 1.5])
    with pytest.raises(ValueError, match="paired"):
        stats.per_round_ratios([1.0, 2.0], [1.0])


# -- the flags ---------------------------------------------------------------------------

def row_with(sgemm_rounds, ratios=None, pct_sgemm=50.0, pct_bw=None):
    pct = lambda m: None if m is None else spread([m] * 7).as_dict()  # noqa: E731
    return {"rounds": {"sgemm": sgemm_rounds},
            "ratios": {k: spread([v] * 7).as_dict() for k, v in (ratios or {}).items()},
            "pct_sgemm": pct(pct_sgemm), "pct_bw": pct(pct_bw)}


def test_yardstick_drift_flag_uses_the_margin():
    steady = row_with([0.10, 0.11, 0.12, 0.10, 0.11, 0.10, 0.12])   # moved 20%
    moved = row_with([0.10, 0.11, 0.14, 0.10, 0.11, 0.10, 0.12])    # moved 40%
    assert stats.case_flags(steady) == []
    flags = stats.case_flags(moved)
    assert len(flags) == 1 and flags[0].startswith("yardstick moved 40%")
    assert stats.case_flags(moved, margin=0.5) == []


def test_implausible_ratios_and_percentages_are_flagged():
    plain = [0.1] * 7
    assert stats.case_flags(row_with(plain, {"torch": 4.9, "ort": 0.21, "reference": 9.0})) == []
    flags = stats.case_flags(row_with(plain, {"torch": 111.0, "ort": 0.1, "reference": 30.0},
                                      pct_sgemm=125.0, pct_bw=150.0))
    assert [f.split()[:2] for f in flags] == [["vs", "torch"], ["vs", "ort"], ["vs", "reference"],
                                              ["%SGEMM", "125%"], ["%BW", "150%"]]
    # and the printed ratio itself carries the mark
    row = row_with(plain, {"torch": 111.0})
    assert report.ratio_text(row, "torch").startswith("111.00x!")
    assert "!" not in report.ratio_text(row_with(plain, {"torch": 1.3}), "torch")


def test_thread_scaling_flag():
    assert stats.thread_scaling_flag(100.0, 190.0, 2) is None
    assert "not faster than 1-thread" in stats.thread_scaling_flag(100.0, 100.0, 2)
    assert stats.thread_scaling_flag(100.0, 90.0, 1) is None  # a 1-thread row has nothing to compare


def test_flags_print_under_their_row():
    row = {"cell": "lstm", "T": 4, "B": 1, "I": 8, "H": 16, "mode": "inference", "threads": 2,
           "fastseq_s": 1e-3, "gflops": 1.0, "sgemm_gflops": 100.0, "flags": ["first", "second"]}
    assert report.line(row).splitlines()[1:] == ["    ! first", "    ! second"]


# -- --cases -----------------------------------------------------------------------------

def test_selector_parsing():
    assert parse_selector("cell=lstm,gru B=1") == {"cell": {"lstm", "gru"}, "B": {1}}
    assert parse_selector("shape=25x1x512x512 mode=training threads=2") == {
        "shape": {(25, 1, 512, 512)}, "mode": {"training"}, "threads": {2}}
    assert parse_shape("50,16,256,256") == (50, 16, 256, 256)


@pytest.mark.parametrize("selector, message", [
    ("", "empty selector"),
    ("cell", "not key=value"),
    ("colour=red", "unknown key 'colour'"),
    ("cell=lsmt", "cell must be one of"),
    ("mode=eval", "mode must be one of"),
    ("B=one", "B must be an integer"),
    ("threads=0", "threads must be >= 1"),
    ("shape=25x1x512", "shape must be four positive integers"),
    ("B=1 B=16", "given twice"),
])
def test_selector_errors_name_the_problem(selector, message):
    with pytest.raises(ValueError, match=message):
        parse_selector(selector)


def test_select_is_the_union_of_selectors_in_grid_order():
    cases = grid(quick=False, threads=[1, 2])
    picked = select(cases, ["cell=lstm B=1 mode=inference", "cell=gru shape=50x64x512x512 threads=2"])
    assert [c.label() for c in picked] == [
        "lstm (25, 1, 512, 512) inference 1t", "lstm (25, 1, 512, 512) inference 2t",
        "gru (50, 64, 512, 512) inference 2t", "gru (50, 64, 512, 512) training 2t"]
    assert select(cases, None) == cases


def test_cli_rejects_a_bad_selector(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--cases", "cell=lstm B=x"])
    assert e.value.code == 2 and "B must be an integer" in capsys.readouterr().err


# -- --compare ---------------------------------------------------------------------------

def compared_row(times, pct):
    return {"cell": "rnn", "T": 4, "B": 1, "I": 8, "H": 8, "mode": "inference", "threads": 1,
            "fastseq_s": float(np.median(times)), "rounds": {"fastseq": times},
            "pct_sgemm": spread(pct).as_dict()}


def test_compare_calls_a_change_only_beyond_both_spreads():
    old = compared_row([1.0, 1.1, 1.2, 1.0, 1.1], [50, 52, 54, 50, 52])
    faster = compared_row([0.8, 0.85, 0.9, 0.8, 0.85], [60, 62, 64, 60, 62])
    slower = compared_row([1.5, 1.6, 1.7, 1.5, 1.6], [40, 41, 42, 40, 41])
    noisy = compared_row([0.8, 1.2, 0.9, 1.3, 1.0], [60, 45, 55, 40, 50])
    load_moved = compared_row([0.8, 0.85, 0.9, 0.8, 0.85], [50, 52, 54, 50, 52])  # raw only
    assert compare.change(old, faster)["call"] == "faster"
    assert compare.change(old, slower)["call"] == "slower"
    assert compare.change(old, noisy)["call"] == "within spread"
    assert compare.change(old, load_moved)["call"] == "within spread"
    c = compare.change(old, faster)
    assert c["speedup"] == pytest.approx(1.1 / 0.85)
    assert c["normalised_speedup"] == pytest.approx(62 / 52)
    legacy = {k: v for k, v in old.items() if k not in ("rounds", "pct_sgemm")}
    assert compare.change(legacy, faster)["call"] == "no rounds"


def test_compare_normalises_batch_one_by_the_bandwidth_bound():
    old = dict(compared_row([1.0, 1.1, 1.2, 1.0, 1.1], [50, 52, 54, 50, 52]),
               pct_bw=spread([80, 82, 84, 80, 82]).as_dict())
    # faster by the clock and by the GEMV bound, though the SGEMM ran faster still
    new = dict(compared_row([0.8, 0.85, 0.9, 0.8, 0.85], [30, 31, 32, 30, 31]),
               pct_bw=spread([95, 97, 99, 95, 97]).as_dict())
    c = compare.change(old, new)
    assert c["normalised_by"] == "GEMV" and c["normalised_speedup"] == pytest.approx(97 / 82)
    assert c["call"] == "faster"
    without_bw = {k: v for k, v in new.items() if k != "pct_bw"}
    c = compare.change(old, without_bw)
    assert c["normalised_by"] == "SGEMM" and c["call"] == "within spread"


# -- end to end --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """One tiny run with every competitor this environment has but the slow reference,
    7 rounds, saved."""
    path = tmp_path_factory.mktemp("bench") / "run.json"
    md = path.with_suffix(".md")
    code = main(TINY + ["--cells", "lstm", "--threads", "1", "--rounds", "7", "--no-reference",
                        "--json", str(path), "--markdown", str(md)])
    assert code == 0
    return json.loads(path.read_text()), md.read_text()


def test_saved_run_figures_follow_from_its_rounds(saved_run):
    data, _ = saved_run
    assert data["version"] == report.JSON_VERSION and data["settings"]["rounds"] == 7
    rows = data["cases"]
    assert [(r["B"], r["mode"]) for r in rows] == [(1, "inference"), (1, "training"),
                                                  (2, "inference"), (2, "training")]
    for r in rows:
        f = np.array(r["rounds"]["fastseq"])
        assert len(f) >= 7 and r["fastseq_s"] == pytest.approx(np.median(f))
        assert all(len(r["rounds"][k]) == len(f) for k in ("sgemm", "torch", "ort", "gemv") if k in r["rounds"])
        case = Case(r["cell"], r["T"], r["B"], r["I"], r["H"], r["mode"], r["threads"])
        sgemm_rate = 2.0 * 64**3 / np.array(r["rounds"]["sgemm"]) / 1e9
        assert r["pct_sgemm"]["median"] == pytest.approx(np.median(100 * case.flops / f / 1e9 / sgemm_rate))
        assert (r["pct_bw"] is not None) == (r["B"] == 1) == ("gemv" in r["rounds"])
        if r["B"] == 1:
            assert r["pct_bw"]["median"] == pytest.approx(np.median(100 * np.array(r["rounds"]["gemv"]) / f))
        for name, s in r["ratios"].items():
            other_fastseq = r["rounds"].get(f"{name}_fastseq", r["rounds"]["fastseq"])
            assert s["median"] == pytest.approx(np.median(np.array(r["rounds"][name]) / other_fastseq))
        for name, v in r["verdicts"].items():
            assert v == stats.verdict(stats.Spread(**r["ratios"][name]))
        assert r["flags"] == stats.case_flags(r, stats.YARDSTICK_MARGIN) or any(
            "ONNX Runtime not timed" in f for f in r["flags"])
        if ort.unavailable() is None:
            assert ("ort" in r["ratios"]) == (r["mode"] == "inference")


def test_markdown_has_the_new_columns(saved_run):
    _, md = saved_run
    lines = md.splitlines()
    assert "% BW (IQR)" in lines[0] and "vs ORT (IQR)" in lines[0] and "verdict" in lines[0]
    assert len(lines) == 2 + 4 and all(line.startswith("| lstm | 4,") for line in lines[2:])


def test_compare_against_a_saved_run(saved_run, tmp_path, capsys):
    data, _ = saved_run
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    assert main(TINY + ["--cells", "lstm", "--threads", "1", "--rounds", "3",
                        "--no-reference", "--cases", "B=1", "--compare", str(old)]) == 0
    out = capsys.readouterr().out
    if "torch" in data["settings"]["competitors"]:  # 3 rounds: no verdict by the 7-round rule
        assert out.count("few rounds") >= 2 and " faster " not in out.split("against")[0]
    section = out[out.index(f"against {old}"):].splitlines()
    assert section[1].split()[-3:] == ["speedup", "normalised", "call"]
    assert [line.split()[:7] for line in section[3:5]] == [
        ["lstm", "4", "1", "8", "16", "inference", "1"], ["lstm", "4", "1", "8", "16", "training", "1"]]
    assert section[5].startswith("2 case(s) only in the saved run")


def test_no_ort_is_skipped_with_its_reason(capsys, monkeypatch):
    assert main(TINY + ["--cells", "lstm", "--threads", "1", "--rounds", "2", "--no-reference",
                        "--no-ort", "--no-torch", "--cases", "B=2 mode=inference"]) == 0
    out = capsys.readouterr().out
    assert "ONNX Runtime skipped: --no-ort" in out
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # as if not installed
    assert ort.unavailable().startswith("ONNX Runtime skipped: onnxruntime not installed")


def test_ort_export_has_the_recurrent_node():
    pytest.importorskip("torch")
    if ort.unavailable():
        pytest.skip(ort.unavailable())
    import onnx
    from fastseq.bench import timing

    for cell, op in ort.ONNX_OP.items():
        case = Case(cell, 3, 2, 4, 5, "inference", 1)
        x, _ = timing.case_inputs(case)
        model = ort.export(timing.torch_module(case), x)
        assert op in {n.op_type for n in onnx.load_from_string(model).graph.node}
        infer, outputs = ort.ort_call(case, timing.torch_module(case), x)
        infer()
        import torch
        with torch.inference_mode():
            want = timing.torch_module(case)(torch.from_numpy(x))[0].numpy()
        np.testing.assert_allclose(outputs["y"], want, rtol=0, atol=2e-4 * max(1, np.abs(want).max()))


def test_flag_tags_are_short_forms_of_the_flags():
    flags = stats.case_flags(row_with([0.1, 0.2] * 4, {"torch": 111.0}, pct_bw=150.0))
    flags.append(stats.thread_scaling_flag(100.0, 90.0, 2))
    assert [report.flag_tag(f) for f in flags] == [
        "SGEMM moved 100%", "torch 111.00x implausible", "%BW 150% implausible", "2t SGEMM ≤ 1t"]


def test_summary_leaves_implausible_ratios_out_and_says_so():
    rows = [dict(row_with([0.1] * 7, {"torch": r}), verdicts={"torch": "faster"}, flags=[])
            for r in (1.2, 1.5, 111.0)]
    text = report.summary(rows)
    assert text.startswith("speedup vs torch: geometric mean of medians 1.34x, lowest 1.20x "
                           "over 2 cases (1 implausible left out); verdicts: faster 3")
    assert "111" not in text


def test_lstmp_cases_run_against_torch_proj_size(tmp_path):
    """The projected LSTM's rows: fastseq.LSTM and torch.nn.LSTM with proj_size, its FLOPs
    and streamed bytes counted with W_hr, and ONNX Runtime refused with the reason."""
    path = tmp_path / "lstmp.json"
    assert main(["--budget", "0", "--sgemm-size", "64", "--cells", "lstmp", "--threads", "1",
                 "--rounds", "2", "--no-reference", "--configs", "4,1,8,16,4",
                 "--json", str(path)]) == 0
    rows = json.loads(path.read_text())["cases"]
    assert [(r["cell"], r["P"], r["mode"]) for r in rows] == [("lstmp", 4, "inference"),
                                                              ("lstmp", 4, "training")]
    case = Case("lstmp", 4, 1, 8, 16, "inference", 1, P=4)
    assert case.flops == 2.0 * 4 * 1 * (4 * 16 * (8 + 4) + 4 * 16)
    assert case.w_hh_bytes == 4 * (4 * 16 * 4 + 4 * 16)  # W_hh (4H, P) and W_hr (P, H)
    assert rows[0]["pct_bw"] is not None
    if timing.torch_version() is not None:
        assert "torch" in rows[0]["ratios"] and "torch" in rows[1]["ratios"]
    if ort.unavailable() is None:
        assert any("no projection" in f for f in rows[0]["flags"])


def test_default_budget_runs_through_to_the_end(tmp_path, capsys):
    """Without --budget (the README's command) every part runs, the per-call overhead and
    the streaming step after the table included: the budget each part takes is the run's
    default (--quick's here, to keep the test short), never the unset option."""
    path = tmp_path / "quick.json"
    assert main(["--quick", "--sgemm-size", "64", "--cells", "rnn", "--threads", "1",
                 "--rounds", "2", "--no-reference", "--no-torch", "--no-ort",
                 "--configs", "3,1,8,8", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "per-call overhead" in out and f"wrote {path}" in out
    data = json.loads(path.read_text())
    assert data["settings"]["budget"] == 0.15
    assert data["streaming"]["fastseq_us"]["n"] >= 2


def test_saved_run_has_the_streaming_step(saved_run):
    """The one-step-at-a-time measure: per-step spreads, and with torch its per-round ratio."""
    data, _ = saved_run
    s = data["streaming"]
    assert s["hidden"] == 512 and s["steps"] >= 1
    f = s["fastseq_us"]
    assert f["n"] >= 7 and 0 < f["min"] <= f["q1"] <= f["median"] <= f["q3"] <= f["max"]
    if s["torch_us"] is not None:
        assert s["vs_torch"]["n"] == f["n"] and s["vs_torch"]["median"] > 0
    else:
        assert s["vs_torch"] is None


def test_streaming_step_without_torch():
    result = streaming_step("cpp" if "cpp" in fastseq.available_backends() else "reference",
                            hidden=8, steps=2, min_rounds=3, budget=0.0, with_torch=False)
    assert result["torch_us"] is None and result["vs_torch"] is None
    assert result["fastseq_us"]["n"] == 3
    assert "torch" not in describe(result)
