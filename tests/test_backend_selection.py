"""Choosing a backend: available_backends / set_backend / get_backend / use_backend, the
FASTSEQ_BACKEND variable, the error for unknown names, the fallback when the compiled
extension cannot be imported (simulated in a subprocess), and `import fastseq` staying free
of numba."""
import os
import textwrap
import threading

import pytest

import fastseq
from fastseq import backends
from subprocesses import run_python

AVAILABLE = fastseq.available_backends()

# Prepended to subprocess code: makes the listed modules fail to import, as a missing or
# broken build would. The finder claims the name, so importlib.util.find_spec still "sees"
# it (as it would a broken install) and only the import itself fails.
BLOCK = textwrap.dedent("""
    import importlib.abc, importlib.machinery, sys

    class _Block(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def __init__(self, names):
            self.names = set(names)
        def find_spec(self, name, path=None, target=None):
            if name in self.names:
                return importlib.machinery.ModuleSpec(name, self)
            return None
        def create_module(self, spec):
            raise ImportError(f"{spec.name} blocked by the test")
        def exec_module(self, module):
            pass

    sys.meta_path.insert(0, _Block(BLOCKED))
""")

# Runs one float64 problem per cell forward and backward on a backend (None: the default)
# and on the reference; max_err gives the largest error over every output and gradient.
COMPARE = textwrap.dedent("""
    import contextlib
    import numpy as np
    import fastseq
    from fastseq import functional as F

    def run_all(backend):
        rng = np.random.default_rng(0)
        T, B, I, H = 5, 3, 4, 6
        x = rng.standard_normal((T, B, I))
        lengths = np.array([3, 5, 2])
        dy = rng.standard_normal((T, B, H))
        out = {}
        with fastseq.use_backend(backend) if backend else contextlib.nullcontext():
            for cell, G in (("rnn", 1), ("lstm", 4), ("gru", 3)):
                w_ih = rng.uniform(-0.4, 0.4, (G * H, I))
                w_hh = rng.uniform(-0.4, 0.4, (G * H, H))
                b = rng.uniform(-0.4, 0.4, (G * H,))
                h0 = rng.standard_normal((B, H))
                if cell == "lstm":
                    y, h, c, ctx = F.lstm_forward(x, w_ih, w_hh, b, b, h0, h0, lengths=lengths,
                                                  training=True)
                    g = F.lstm_backward(ctx, dy, h, c)
                elif cell == "gru":
                    y, h, ctx = F.gru_forward(x, w_ih, w_hh, b, b, h0, lengths=lengths,
                                              reverse=True, training=True)
                    g = F.gru_backward(ctx, dy, h)
                else:
                    y, h, ctx = F.rnn_forward(x, w_ih, w_hh, b, b, h0, lengths=lengths,
                                              training=True)
                    g = F.rnn_backward(ctx, dy, h)
                out.update({f"{cell}.y": y, f"{cell}.h_n": h})
                out.update({f"{cell}.{k}": v for k, v in g.items() if v is not None})
        return out

    def max_err(backend):
        got, ref = run_all(backend), run_all("reference")
        return max(fastseq.max_error(got[k], ref[k]) for k in ref)
""")


@pytest.fixture
def restore_backend():
    """Put the process-wide choice back after a test that calls set_backend."""
    saved = backends._active
    yield
    backends._active = saved


# ---- the API ----------------------------------------------------------------------------


def test_available_backends_in_preference_order():
    assert AVAILABLE == [b for b in ("cpp", "numba", "reference") if b in AVAILABLE]
    assert "reference" in AVAILABLE
    assert fastseq.available_backends() == AVAILABLE  # stable on repeated calls


def test_default_is_the_best_available():
    # conftest imports fastseq without FASTSEQ_BACKEND being special in CI
    if os.environ.get("FASTSEQ_BACKEND"):
        pytest.skip("FASTSEQ_BACKEND is set")
    assert run_python("import json, fastseq; print(json.dumps(fastseq.get_backend()))") \
        == AVAILABLE[0]


@pytest.mark.parametrize("name", AVAILABLE)
def test_set_backend_and_get_backend(restore_backend, name):
    fastseq.set_backend(name)
    assert fastseq.get_backend() == name


@pytest.mark.parametrize("name", AVAILABLE)
def test_use_backend_restores_even_on_error(name):
    before = fastseq.get_backend()
    with fastseq.use_backend(name) as chosen:
        assert chosen == name and fastseq.get_backend() == name
    assert fastseq.get_backend() == before
    with pytest.raises(KeyError):
        with fastseq.use_backend(name):
            raise KeyError("inside")
    assert fastseq.get_backend() == before


def test_use_backend_nests():
    outer, inner = AVAILABLE[-1], AVAILABLE[0]
    with fastseq.use_backend(outer):
        with fastseq.use_backend(inner):
            assert fastseq.get_backend() == inner
        assert fastseq.get_backend() == outer


def test_use_backend_is_per_thread():
    """Two threads each in their own block never see (or restore) each other's choice."""
    if len(AVAILABLE) < 2:
        pytest.skip("needs two backends")
    seen = {0: [], 1: []}
    barrier = threading.Barrier(2)

    def work(k):
        name = AVAILABLE[k]
        for _ in range(50):
            with fastseq.use_backend(name):
                barrier.wait()
                seen[k].append(fastseq.get_backend())
                barrier.wait()

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen[0] == [AVAILABLE[0]] * 50 and seen[1] == [AVAILABLE[1]] * 50


def test_set_backend_reaches_other_threads(restore_backend):
    fastseq.set_backend("reference")
    seen = []
    t = threading.Thread(target=lambda: seen.append(fastseq.get_backend()))
    t.start()
    t.join()
    assert seen == ["reference"]


@pytest.mark.parametrize("bad", ["torch", "CPP", "", "numba ", None, 3])
def test_unknown_name_raises_listing_available(restore_backend, bad):
    before = fastseq.get_backend()
    for call in (fastseq.set_backend, lambda n: fastseq.use_backend(n).__enter__()):
        with pytest.raises(ValueError) as info:
            call(bad)
        message = str(info.value)
        assert repr(bad) in message
        for name in AVAILABLE:
            assert repr(name) in message
    assert fastseq.get_backend() == before


def test_backend_module_has_the_contract():
    for name in AVAILABLE:
        module = backends.backend_module(name)
        for fn in ("rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward",
                   "gru_forward", "gru_backward"):
            assert callable(getattr(module, fn)), f"{name}.{fn}"


# ---- FASTSEQ_BACKEND --------------------------------------------------------------------

PROBE = textwrap.dedent("""
    import json, warnings
    warnings.simplefilter("error")
    import fastseq
    try:
        result = fastseq.get_backend()
    except ValueError as exc:
        result = "ValueError: " + str(exc)
    print(json.dumps(result))
""")


@pytest.mark.parametrize("name", AVAILABLE)
def test_environment_variable_chooses(name):
    assert run_python(PROBE, {"FASTSEQ_BACKEND": name}) == name


def test_environment_variable_unknown_name_raises_listing_available():
    result = run_python(PROBE, {"FASTSEQ_BACKEND": "fortran"})
    assert result.startswith("ValueError: ") and "'fortran'" in result
    for name in AVAILABLE:
        assert repr(name) in result


def test_set_backend_overrides_environment_variable():
    code = PROBE.replace("result = fastseq.get_backend()",
                         "fastseq.set_backend('reference'); result = fastseq.get_backend()")
    assert run_python(code, {"FASTSEQ_BACKEND": AVAILABLE[0]}) == "reference"


# ---- import cost, and the fallback when _core is missing --------------------------------


def test_import_fastseq_does_not_import_numba():
    code = textwrap.dedent("""
        import json, sys
        import fastseq
        after_import = "numba" in sys.modules
        fastseq.available_backends()
        after_listing = "numba" in sys.modules
        print(json.dumps([after_import, after_listing]))
    """)
    assert run_python(code) == [False, False]


@pytest.mark.skipif("cpp" not in AVAILABLE, reason="cpp backend not built")
def test_running_on_cpp_does_not_import_numba():
    code = COMPARE + textwrap.dedent("""
        import json, sys
        err = max_err("cpp")
        print(json.dumps([fastseq.get_backend(), "numba" in sys.modules, err]))
    """)
    name, numba_imported, err = run_python(code)
    assert name == "cpp" and not numba_imported and err <= 1e-10


@pytest.mark.skipif("numba" not in AVAILABLE, reason="numba not installed")
def test_missing_extension_falls_back_to_numba_and_warns_once():
    code = "BLOCKED = ['fastseq._core']\n" + BLOCK + textwrap.dedent("""
        import json, warnings
        recording = warnings.catch_warnings(record=True)
        caught = recording.__enter__()
        warnings.simplefilter("always")
        import fastseq
    """) + COMPARE + textwrap.dedent("""
        available = fastseq.available_backends()
        active = fastseq.get_backend()
        err = max_err(None)
        again = fastseq.get_backend()
        recording.__exit__(None, None, None)
        messages = [f"{w.category.__name__}: {w.message}" for w in caught]
        print(json.dumps(dict(available=available, active=active, again=again, err=err,
                              messages=messages)))
    """)
    result = run_python(code)
    assert result["available"] == ["numba", "reference"]
    assert result["active"] == result["again"] == "numba"
    assert result["err"] <= 1e-10
    assert len(result["messages"]) == 1, result["messages"]
    message = result["messages"][0]
    assert message.startswith("RuntimeWarning") and "fastseq._core" in message
    assert "'numba'" in message


def test_missing_extension_and_numba_fall_back_to_reference():
    code = "BLOCKED = ['fastseq._core', 'numba']\n" + BLOCK + textwrap.dedent("""
        import json, warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import fastseq
            active = fastseq.get_backend()
            available = fastseq.available_backends()
            try:
                fastseq.set_backend("numba")
                numba_error = None
            except ValueError as exc:
                numba_error = str(exc)
        messages = [str(w.message) for w in caught]
        print(json.dumps(dict(active=active, available=available, numba_error=numba_error,
                              messages=messages)))
    """)
    result = run_python(code)
    assert result["active"] == "reference"
    assert result["available"] == ["reference"]
    assert result["numba_error"] and "numba" in result["numba_error"]
    assert len(result["messages"]) == 1, result["messages"]
    assert "fastseq._core" in result["messages"][0] and "'reference'" in result["messages"][0]


def test_isa_functions_without_the_extension():
    """available_isas() is empty and get_isa() None without fastseq._core; set_isa raises a
    RuntimeError naming the extension; show_config still works. No raw ImportError."""
    code = "BLOCKED = ['fastseq._core']\n" + BLOCK + textwrap.dedent("""
        import json, warnings
        warnings.simplefilter("ignore")
        import fastseq
        out = dict(available=fastseq.available_isas(), isa=fastseq.get_isa())
        try:
            fastseq.set_isa("portable")
        except Exception as exc:
            out["set_isa"] = f"{type(exc).__name__}: {exc}"
        out["config"] = fastseq.show_config("dicts")["extension"]["loaded"]
        print(json.dumps(out))
    """)
    result = run_python(code)
    assert result["available"] == [] and result["isa"] is None
    assert result["set_isa"].startswith("RuntimeError: ")
    assert "fastseq._core" in result["set_isa"] and "'portable'" in result["set_isa"]
    assert result["config"] is False
