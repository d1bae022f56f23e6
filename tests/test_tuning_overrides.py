"""The cache sizes the kernels tune for (fastseq.caches; csrc/runtime/caches.cpp) and the
choices that follow from them (csrc/loops/tuning.hpp, choose): parsing and errors of the
override, the environment variables (in fresh interpreters, as they are read at first use),
and every cell forward and backward on every kernel variant under the sizes of other
machines — against the reference, and with the same bits on 1, 2 and 3 threads."""
from __future__ import annotations

import functools
import json
import os
import threading

import numpy as np
import pytest

import fastseq
from problems import CELLS, assert_matches, make_problem, reference_of, run, tolerance
from subprocesses import run_python

core = pytest.importorskip("fastseq._core")
ISAS = fastseq.available_isas()
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

#: Cache sizes of other machines, as set_cache_sizes takes them.
MACHINES = {
    "zen3": dict(l1d="32K", l2="512K", l3="32M"),      # AMD EPYC Zen 3 (AVX2)
    "tiny": dict(l1d="16K", l2="256K", l3="4M"),       # smaller than any current x86-64
    "spr": dict(l1d="48K", l2="2M", l3="105M"),        # Sapphire Rapids, the tuning machine
    "huge": dict(l1d="512K", l2="64M", l3="1G"),       # everything fits everywhere
}
#: Every cell the compiled kernels run, the projected LSTM among them.
ALL_CELLS = CELLS + ("lstmp",)
#: B >= 32 and H > 128 take the k-blocked product (every slice depth these sizes give is
#: below 160) and, for the LSTMs, the fused projection where the panel fits the rule: the
#: fused panel is 0.9 / 1.8 MiB (float32 / float64) at H = 160 and 2.3 / 4.7 MiB at H = 300,
#: so the machines above take both paths (test_the_shapes_take_both_paths checks it).
SHAPES = [(3, 64, 200, 160), (2, 70, 200, 300)]


@pytest.fixture
def restore_sizes():
    yield
    fastseq.reset_cache_sizes()


@pytest.fixture
def restore_isa_and_threads():
    isa, threads = fastseq.get_isa(), fastseq.get_num_threads()
    yield
    fastseq.set_isa(isa)
    fastseq.set_num_threads(threads)
    fastseq.reset_cache_sizes()


def problem(cell, dtype, T, B, I, H, lengths=None):
    return make_problem(cell, T=T, B=B, I=I, H=H, dtype=dtype, seed=B + H, lengths=lengths,
                        **({"P": H // 2} if cell == "lstmp" else {}))


@functools.lru_cache(maxsize=None)
def reference(cell, dtype, shape, lengths=None):
    return reference_of(problem(cell, np.dtype(dtype).type, *shape, lengths=lengths))


# ---- parsing and errors ---------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("49152", 49152), ("48K", 48 * KiB), ("48k", 48 * KiB), ("48KiB", 48 * KiB),
    ("48kb", 48 * KiB), (" 48K\n", 48 * KiB), ("2M", 2 * MiB), ("2MiB", 2 * MiB),
    ("1G", GiB),
])
def test_parse_cache_size(text, expected):
    assert core.parse_cache_size(text) == expected


@pytest.mark.parametrize("text", ["", "K", "abc", "12X", "1.5M", "-5", "+5", "0x10", "2Ki",
                                  "2 M", "4KK", "99999999999999999999", "9999999999999G"])
def test_parse_cache_size_refuses(text):
    assert core.parse_cache_size(text) is None


def test_set_and_get_cache_sizes(restore_sizes):
    before = fastseq.get_cache_sizes()
    fastseq.set_cache_sizes(l2="512K")
    now = fastseq.get_cache_sizes()
    assert now["l2"] == 512 * KiB and now["source"]["l2"] == "override"
    for level in ("l1d", "l3"):  # None leaves a level as it is
        assert now[level] == before[level] and now["source"][level] == before["source"][level]
    assert now["detected"] == before["detected"]
    fastseq.set_cache_sizes(l1d=32 * KiB, l3="32M")
    now = fastseq.get_cache_sizes()
    assert (now["l1d"], now["l2"], now["l3"]) == (32 * KiB, 512 * KiB, 32 * MiB)
    fastseq.reset_cache_sizes()
    assert fastseq.get_cache_sizes() == before


def test_detected_sizes_are_sane():
    sizes = fastseq.get_cache_sizes()
    for level in ("l1d", "l2", "l3"):
        lo, hi = core.cache_size_range(level)
        assert lo <= sizes["detected"][level] <= hi
        assert sizes["detected_source"][level] in ("cpuid", "sysfs", "default")
    assert sizes["detected"]["l1d"] < sizes["detected"]["l2"]


@pytest.mark.parametrize("kwargs,name", [
    (dict(l1d="lots"), "l1d"), (dict(l2="1.5M"), "l2"), (dict(l3=""), "l3"),
    (dict(l1d=1024), "l1d"), (dict(l2="1G"), "l2"), (dict(l3=0), "l3"), (dict(l2=-1), "l2"),
    (dict(l1d=True), "l1d"), (dict(l2=2.0 * MiB), "l2"), (dict(l3=[1]), "l3"),
])
def test_set_cache_sizes_refuses(restore_sizes, kwargs, name):
    before = fastseq.get_cache_sizes()
    with pytest.raises(ValueError, match=rf"^{name} "):
        fastseq.set_cache_sizes(**kwargs)
    assert fastseq.get_cache_sizes() == before


def test_set_cache_sizes_applies_all_or_nothing(restore_sizes):
    before = fastseq.get_cache_sizes()
    with pytest.raises(ValueError, match="^l2 "):
        fastseq.set_cache_sizes(l1d="32K", l2="nope", l3="8M")
    assert fastseq.get_cache_sizes() == before


# ---- the environment, read at first use -----------------------------------------------------

_CHILD = r"""
import json, warnings
import numpy as np
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import fastseq
    sizes = fastseq.get_cache_sizes()
    choices = fastseq.caches.tuning_choices("lstm", "float32", 3, 64, 200, 300)
    text = fastseq.config.config_text()
print(json.dumps({"sizes": sizes, "choices": choices, "text": text,
                  "warnings": [str(w.message) for w in caught
                               if issubclass(w.category, RuntimeWarning)]}))
"""


def test_environment_overrides_the_detected_sizes(restore_sizes):
    out = run_python(_CHILD, env={"FASTSEQ_L1D_SIZE": "32K", "FASTSEQ_L2_SIZE": "524288",
                                  "FASTSEQ_L3_SIZE": "32MiB"}, timeout=120)
    sizes = out["sizes"]
    assert (sizes["l1d"], sizes["l2"], sizes["l3"]) == (32 * KiB, 512 * KiB, 32 * MiB)
    assert set(sizes["source"].values()) == {"override"}
    assert sizes["detected"] == fastseq.get_cache_sizes()["detected"]
    assert out["warnings"] == []
    # The environment and set_cache_sizes are one override: the same choices.
    fastseq.set_cache_sizes(**MACHINES["zen3"])
    assert out["choices"] == fastseq.caches.tuning_choices("lstm", "float32", 3, 64, 200, 300)
    assert "caches:    L1d 32 KiB (override), L2 512 KiB (override), L3 32 MiB (override)" \
        in out["text"]
    assert "FASTSEQ_L2_SIZE=524288" in out["text"]


def test_environment_ignores_bad_values_with_a_warning():
    out = run_python(_CHILD, env={"FASTSEQ_L1D_SIZE": "1K", "FASTSEQ_L2_SIZE": "lots",
                                  "FASTSEQ_L3_SIZE": "8M"}, timeout=120)
    sizes = out["sizes"]
    assert sizes["source"]["l1d"] != "override" and sizes["l1d"] == sizes["detected"]["l1d"]
    assert sizes["source"]["l2"] != "override" and sizes["l2"] == sizes["detected"]["l2"]
    assert sizes["source"]["l3"] == "override" and sizes["l3"] == 8 * MiB
    assert len(out["warnings"]) == 2
    assert any("FASTSEQ_L1D_SIZE=1K is outside" in w for w in out["warnings"])
    assert any("FASTSEQ_L2_SIZE='lots' is not a size" in w for w in out["warnings"])


# ---- the choices ----------------------------------------------------------------------------

def choices(cell="lstm", dtype="float32", T=50, B=64, I=512, H=512, P=0):
    return fastseq.caches.tuning_choices(cell, dtype, T, B, I, H, P)


@pytest.mark.skipif("avx512" not in ISAS, reason="the tuning machine's case is AVX-512")
def test_tuning_machine_keeps_its_measured_choices(restore_isa_and_threads):
    """On the tuning machine's sizes the LSTM float32 AVX-512 forward keeps the constants
    measured there: a 128-row k-slice, 64-row chunks, the projection folded in at B = 64."""
    fastseq.set_isa("avx512")
    fastseq.set_cache_sizes(**MACHINES["spr"])
    c = choices()
    assert (c["k_slice"], c["k_block_rows"], c["fuse_projection"]) == (128, 64, True)
    # A 32 KiB L1d: the slice (4 vectors of 64 B a row) and the partial sums still fit.
    fastseq.set_cache_sizes(l1d="32K")
    c = choices()
    assert c["k_slice"] * 4 * 64 <= 32 * KiB * 2 // 3 and c["k_slice"] % 16 == 0
    assert c["k_block_rows"] * 4 * 64 <= 32 * KiB // 3
    assert c["k_slice"] < 128


@pytest.mark.parametrize("isa", ISAS)
def test_choices_grow_with_the_caches(restore_isa_and_threads, isa):
    fastseq.set_isa(isa)
    fastseq.set_cache_sizes(**MACHINES["huge"])
    for l1d in ("4K", "16K", "32K", "48K", "64K", "1M"):
        fastseq.set_cache_sizes(l1d=l1d)
        for cell in ALL_CELLS:
            c = choices(cell, P=256 if cell == "lstmp" else 0)
            assert 16 <= c["k_slice"] <= 128 and c["k_slice"] % 16 == 0
            assert 8 <= c["k_block_rows"] <= 64 and c["k_block_rows"] % 8 == 0
    slices = []
    for l1d in ("4K", "16K", "32K", "48K", "64K", "1M"):
        fastseq.set_cache_sizes(l1d=l1d)
        slices.append(choices()["k_slice"])
    assert slices == sorted(slices)
    # More L2, or more rows, never unfuses; fewer than 32 rows never fuse; only the LSTMs.
    for B in (16, 31, 32, 48, 64, 128):
        fused = []
        for l2 in ("256K", "512K", "1M", "2M", "4M", "64M"):
            fastseq.set_cache_sizes(l2=l2)
            fused.append(choices(B=B)["fuse_projection"])
            assert not any(choices(cell, B=B)["fuse_projection"]
                           for cell in ALL_CELLS if not cell.startswith("lstm"))
        assert fused == sorted(fused)
        assert not any(fused) if B < 32 else fused[-1]


def test_choices_do_not_depend_on_the_thread_count(restore_isa_and_threads):
    for machine in MACHINES.values():
        fastseq.set_cache_sizes(**machine)
        seen = []
        for n in (1, 2, 3):
            fastseq.set_num_threads(n)
            seen.append([choices(cell, dtype, 3, B, I, H, H // 2 if cell == "lstmp" else 0)
                         for cell in ALL_CELLS for dtype in ("float32", "float64")
                         for T, B, I, H in SHAPES])
        assert seen[0] == seen[1] == seen[2]


def test_the_shapes_take_both_paths(restore_isa_and_threads):
    """The matrix below runs the fused and the unfused LSTM, and more than one slice depth."""
    fused, slices = set(), set()
    for isa in ISAS:
        fastseq.set_isa(isa)
        for machine in MACHINES.values():
            fastseq.set_cache_sizes(**machine)
            for dtype in ("float32", "float64"):
                for T, B, I, H in SHAPES:
                    c = choices("lstm", dtype, T, B, I, H)
                    fused.add(c["fuse_projection"])
                    slices.add(c["k_slice"])
                    assert H > c["k_slice"]  # k-blocked
    assert fused == {True, False}
    # The portable variant's narrow vectors fit 128 panel rows in every L1d of the matrix:
    # only a vector variant (the sanitizer build has none) reaches a shallower slice.
    if set(ISAS) - {"portable"}:
        assert len(slices) > 1


# ---- every cell under other machines' sizes -------------------------------------------------

@pytest.mark.parametrize("machine", list(MACHINES))
@pytest.mark.parametrize("isa", ISAS)
def test_cells_match_the_reference(restore_isa_and_threads, machine, isa):
    fastseq.set_isa(isa)
    fastseq.set_cache_sizes(**MACHINES[machine])
    for cell in ALL_CELLS:
        for dtype in (np.float64, np.float32):
            for shape in SHAPES:
                p = problem(cell, dtype, *shape)
                assert_matches(run(p, "cpp"), reference(cell, np.dtype(dtype).name, shape),
                               tolerance(dtype), where=f"{machine}/{isa} {cell} {shape}")
        # With lengths the LSTM never fuses, whatever the sizes choose for its shape.
        p = problem(cell, np.float32, *SHAPES[0], lengths="vary")
        assert_matches(run(p, "cpp"), reference(cell, "float32", SHAPES[0], "vary"),
                       tolerance(np.float32), where=f"{machine}/{isa} {cell} lengths")


@pytest.mark.parametrize("machine", list(MACHINES))
def test_same_bits_for_any_thread_count(restore_isa_and_threads, machine):
    fastseq.set_cache_sizes(**MACHINES[machine])
    for isa in ISAS:
        fastseq.set_isa(isa)
        for cell in ALL_CELLS:
            p = problem(cell, np.float32, *SHAPES[0])
            fastseq.set_num_threads(1)
            first = run(p, "cpp")
            for n in (2, 3):
                fastseq.set_num_threads(n)
                got = run(p, "cpp")
                for name, value in first.items():
                    if value is not None:
                        np.testing.assert_array_equal(
                            got[name], value, err_msg=f"{machine}/{isa} {cell} {name}, {n} threads")


def test_setting_sizes_while_kernels_run(restore_isa_and_threads):
    """Another thread switching between two machines' sizes: every call runs with one whole
    set of them (its result has the bits of one of the two), never a mixture."""
    cell, shape = "lstm", SHAPES[1]  # tiny: unfused, huge: fused
    p = problem(cell, np.float32, *shape)
    expected = []
    for machine in ("tiny", "huge"):
        fastseq.set_cache_sizes(**MACHINES[machine])
        expected.append(run(p, "cpp"))
    assert not np.array_equal(expected[0]["y"], expected[1]["y"]), \
        "the two machines' choices must give different bits for this test to see a mixture"
    stop = threading.Event()

    def switch():
        while not stop.is_set():
            for machine in ("tiny", "huge"):
                fastseq.set_cache_sizes(**MACHINES[machine])

    switcher = threading.Thread(target=switch)
    switcher.start()
    try:
        for _ in range(30):
            got = run(p, "cpp")
            assert any(all(np.array_equal(got[k], e[k]) for k in e if e[k] is not None)
                       for e in expected)
    finally:
        stop.set()
        switcher.join()


def test_show_config_shows_the_caches_and_choices(restore_sizes):
    fastseq.set_cache_sizes(**MACHINES["zen3"])
    info = fastseq.show_config("dicts")["extension"]
    assert info["caches"] == fastseq.get_cache_sizes()
    assert {k: info["tuning"][k] for k in ("k_slice", "k_block_rows", "fuse_projection",
                                           "few_rows_projection", "projection_parts")} == \
        {k: v for k, v in choices().items() if k != "isa"}
    text = fastseq.config.config_text()
    assert "caches:    L1d 32 KiB (override), L2 512 KiB (override), L3 32 MiB (override)" in text
    assert f"k-slice {info['tuning']['k_slice']} rows" in text
    json.dumps(info)  # the benchmark records it


def test_few_rows_projection_follows_l2(restore_sizes):
    """At most 32 rows of input projection go to the micro-kernel only where W_ih does not
    fit in L2 (tuning.hpp, kFewRowsMax): a 4 MiB W_ih under 2 MiB of L2 does, under 8 MiB
    it does not; 33 rows never do. 16 rows and 2·8 take the path on every kernel variant
    (it needs half a vector and at most 4 vectors: 8..16 rows fit 4, 8 and 16 lanes)."""
    def few(T, B, I, H):
        return fastseq.caches.tuning_choices("lstm", T=T, B=B, I=I, H=H)["few_rows_projection"]

    fastseq.set_cache_sizes(l2="2M")
    assert few(16, 1, 512, 512) and few(2, 8, 512, 512)
    assert not few(33, 1, 512, 512) and not few(4, 8, 128, 128)
    assert not few(1, 1, 512, 512)  # one row: a GEMV (tuning.hpp, kFewRowsMin)
    fastseq.set_cache_sizes(l2="8M")
    assert not few(16, 1, 512, 512)


# ---- the machine's CPU count: how large products are cut ------------------------------------

# Run with TESTS_DIR and WHAT ("report" or "run") set in a first line (cpus_child).
_CPUS_CHILD = r"""
import json, sys, warnings
sys.path.insert(0, TESTS_DIR)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import fastseq
    from fastseq import _core
    cpus = _core.machine_cpus()
    parts = {cell: fastseq.caches.tuning_choices(cell, "float32", 25, 16, 512, 512, P)
             ["projection_parts"] for cell, P in (("lstm", 0), ("gru", 0), ("rnn_tanh", 0),
                                                  ("lstmp", 128))}
    text = fastseq.config.config_text()
failures, checked = [], 0
if WHAT == "run":
    import numpy as np
    from problems import assert_matches, assert_same_bits_for_any_thread_count, make_problem
    from problems import reference_of, run, tolerance
    # H = 300: W_ih's 4·300 rows make 4 parts of the LSTM's products (2 of the GRU's) when
    # the CPUs allow them; B = 16 keeps the input projection on OpenBLAS, B = 70 may fuse it.
    for isa in fastseq.available_isas():
        fastseq.set_isa(isa)
        for cell in ("rnn_tanh", "lstm", "gru", "gru_reset_before", "lstmp"):
            for T, B in ((4, 16), (2, 70)):
                for dtype in (np.float64, np.float32):
                    p = make_problem(cell, T=T, B=B, I=200, H=300, dtype=dtype, seed=B,
                                     **({"P": 150} if cell == "lstmp" else {}))
                    where = f"{isa} {cell} ({T},{B}) {np.dtype(dtype).name}"
                    checked += 1
                    try:
                        assert_matches(run(p, "cpp"), reference_of(p), tolerance(dtype), where)
                        if dtype is np.float32:
                            assert_same_bits_for_any_thread_count(p)
                    except AssertionError as e:
                        failures.append(f"{where}: {e}")
print(json.dumps({"cpus": cpus, "parts": parts, "text": text, "failures": failures,
                  "checked": checked, "isas": fastseq.available_isas(),
                  "warnings": [str(w.message) for w in caught
                               if issubclass(w.category, RuntimeWarning)]}))
"""
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def cpus_child(value, what="report"):
    """_CPUS_CHILD in a fresh interpreter with FASTSEQ_MACHINE_CPUS=value."""
    code = f"TESTS_DIR, WHAT = {TESTS_DIR!r}, {what!r}\n" + _CPUS_CHILD
    return run_python(code, env={"FASTSEQ_MACHINE_CPUS": value}, timeout=600)


def test_machine_cpus_are_detected_and_shown():
    cpus = core.machine_cpus()
    assert cpus["source"] == "sysconf" or "FASTSEQ_MACHINE_CPUS" in os.environ
    assert 1 <= cpus["detected"] <= 4096 and cpus["rejected"] == ""
    # The most parts: the CPUs rounded up to a power of two, at most 64 (tuning.hpp).
    most = 1
    while most < min(cpus["count"], 64):
        most *= 2
    assert cpus["most_parts"] == most
    text = fastseq.config.config_text()
    assert f"large ones cut into at most {most} parts, from {cpus['count']} CPUs online" in text


@pytest.mark.parametrize("value,most", [("1", 1), ("3", 4), ("64", 64), ("4096", 64)])
def test_machine_cpus_environment_sets_the_parts(value, most):
    """At (25, 16, 512, 512) the input projection X·W_ihᵀ has 4·512 = 2048 columns for the
    LSTMs (8 parts of at least 256 at most), 1536 for the GRU (4), 512 for the RNN (2)."""
    out = cpus_child(value)
    assert out["cpus"]["count"] == int(value) and out["cpus"]["source"] == "override"
    assert out["cpus"]["most_parts"] == most and out["warnings"] == []
    assert out["parts"] == {"lstm": min(8, most), "gru": min(4, most),
                            "rnn_tanh": min(2, most), "lstmp": min(8, most)}
    assert f"from {value} CPUs online (override; FASTSEQ_MACHINE_CPUS to change)" in out["text"]
    assert f"FASTSEQ_MACHINE_CPUS={value}" in out["text"]


@pytest.mark.parametrize("value", ["0", "-2", "lots", "4097", "2.5", ""])
def test_machine_cpus_environment_ignores_bad_values_with_a_warning(value):
    out = cpus_child(value)
    assert out["cpus"]["source"] == "sysconf"
    assert out["cpus"]["count"] == core.machine_cpus()["detected"]
    assert len(out["warnings"]) == 1
    assert f"FASTSEQ_MACHINE_CPUS='{value}' is not an integer in 1..4096" in out["warnings"][0]


@pytest.mark.parametrize("value", ["1", "64"])
def test_cells_cut_for_other_machines(value):
    """Products cut as a 1-CPU and a 64-CPU machine cut them: every cell, forward and
    backward, on every kernel variant, matches the reference and has the same bits on 1, 2
    and 3 threads."""
    out = cpus_child(value, "run")
    assert out["cpus"]["count"] == int(value)
    assert out["checked"] == len(out["isas"]) * 5 * 2 * 2 and out["failures"] == []


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")
def test_machine_cpus_do_not_follow_the_affinity():
    """A process pinned to one CPU before fastseq loads (taskset, a cgroup's cpuset) cuts
    products as its unpinned parent does, so the two give the same bits."""
    out = run_python("""
import json, os
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
from fastseq import _core
print(json.dumps(_core.machine_cpus()))
""", timeout=120)
    assert out == core.machine_cpus()
