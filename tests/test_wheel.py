"""Packaging. Two kinds of test:

- The type stub fastseq/_core.pyi against the compiled module: every public name in both,
  each function with the same parameters and defaults. Fast; in the default run.
- The release wheel (marked ``wheel``; the default run deselects it, ``pytest -m wheel``
  runs it, as .ci/run does): tools/build-wheel.sh builds the sdist, a wheel from the sdist
  and the auditwheel-repaired wheel once; the wheel is installed into a fresh virtualenv
  with no C/C++ compiler on PATH (CC/CXX are /bin/false), and a smoke subset of the kernel
  suite runs there against the installed package, from a directory outside the source tree.
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STUB = ROOT / "fastseq" / "_core.pyi"


# ---- the stub ------------------------------------------------------------------------------

def _stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text(), filename=str(STUB))


def _params(fn: ast.FunctionDef) -> list[tuple[str, object]]:
    """(name, default or the string 'REQUIRED') for each parameter of a def."""
    args = [a.arg for a in fn.args.args]
    defaults = [ast.literal_eval(d) for d in fn.args.defaults]
    return [(a, defaults[i - (len(args) - len(defaults))] if i >= len(args) - len(defaults)
             else "REQUIRED") for i, a in enumerate(args)]


def _runtime_params(fn) -> list[tuple[str, object]] | None:
    """The parameters pybind11 writes on the first line of a function's docstring, or None
    when that line is not a single signature (overloads)."""
    first = (fn.__doc__ or "").lstrip().splitlines()[0] if fn.__doc__ else ""
    try:
        tree = ast.parse(f"def {first.split(' -> ')[0]}: pass")
    except SyntaxError:
        return None
    return _params(tree.body[0])


@pytest.fixture(scope="module")
def core():
    return pytest.importorskip("fastseq._core", reason="the extension is not built")


def test_stub_names_match_the_module(core):
    tree = _stub_tree()
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    defined |= {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)}
    public = {n for n in dir(core) if not n.startswith("_")}
    assert not public - defined, f"in fastseq._core but not in {STUB.name}: {sorted(public - defined)}"
    stale = {n for n in defined if not n.startswith("_")} - public
    assert not stale, f"in {STUB.name} but not in fastseq._core: {sorted(stale)}"
    assert "__version__" in defined
    all_ = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                and any(getattr(t, "id", None) == "__all__" for t in n.targets))
    assert sorted(all_) == sorted(public), "__all__ in the stub lists the module's public names"


def test_stub_signatures_match_the_module(core):
    tree = _stub_tree()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            runtime = _runtime_params(getattr(core, node.name))
            if runtime is not None:
                assert _params(node) == runtime, f"{node.name}: stub vs pybind11 signature"
        elif isinstance(node, ast.ClassDef):
            cls = getattr(core, node.name)
            members = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
            public = {n for n in dir(cls) if not n.startswith("_")}
            assert members >= public, f"{node.name}: not in the stub: {sorted(public - members)}"
            assert not {m for m in members if not m.startswith("_")} - public, \
                f"{node.name}: in the stub only: {sorted(members - public)}"


# ---- the wheel -----------------------------------------------------------------------------

# Everything that compiles or links C/C++ (and the build tools around them), by file name.
COMPILER = re.compile(r"(.+-)?(cc|c\+\+|c89|c99|cpp|gcc|g\+\+|clang|clang\+\+|clang-cl|tcc|icc|"
                      r"icx|icpx|nvcc|ld|ld\..+|lld|as|cmake|ninja|make|gmake)(-[0-9.]+)?")
#: The smoke subset: the whole kernel suite on cpp (every option of every cell, both dtypes,
#: against the reference; shapes, gradcheck, saturation, threads), the binding tests, the C ABI
#: through cffi (the installed header and library; its C-program tests need a compiler), and
#: one numba problem (its cold JIT costs ~10 s) to show the fallback works installed too.
SMOKE_FILES = ["conftest.py", "problems.py", "test_backends.py", "test_cpp_bindings.py",
               "test_capi.py"]
SMOKE_SELECT = ("cpp or bindings or installed or (capi and (cffi or header_declares or paths_point)) "
                "or (numba and every_option and True-True-vary-False-lstm-float32)")

INSTALLED_CHECK = '''
"""Written by tests/test_wheel.py: proves what the smoke run runs against."""
import importlib.util
import os
import shutil
import sys

import fastseq
from fastseq import _core


def test_installed_without_a_compiler():
    for tool in ("gcc", "g++", "cc", "c++", "clang", "cmake"):
        assert shutil.which(tool) is None, tool
    assert os.environ["CC"] == os.environ["CXX"] == "/bin/false"
    venv = os.path.realpath(sys.prefix)
    assert sys.prefix != sys.base_prefix
    for f in (fastseq.__file__, _core.__file__):
        assert os.path.realpath(f).startswith(venv + os.sep), (f, venv)
    assert importlib.util.find_spec("torch") is None, "torch must not be in the wheel venv"
    assert fastseq.available_backends() == ["cpp", "numba", "reference"]
    assert fastseq.get_backend() == "cpp"
    assert _core.smoke(2, 3) == 5 and _core.blas_num_threads() >= 1
    # The libraries really loaded: libfastseq.so beside _core, OpenBLAS from scipy-openblas32.
    with open("/proc/self/maps") as f:
        maps = {line.split()[-1] for line in f if ".so" in line}
    site = os.path.dirname(os.path.dirname(os.path.realpath(fastseq.__file__)))
    want = {os.path.join(site, "fastseq", "libfastseq.so"),
            os.path.join(site, "scipy_openblas32", "lib", "libscipy_openblas.so")}
    assert want <= {os.path.realpath(m) for m in maps}, sorted(maps)
'''

PYTEST_INI = """\
[pytest]
addopts = -ra --strict-markers --strict-config -p no:cacheprovider
xfail_strict = true
filterwarnings = error
markers =
    slow: heavier checks
    wheel: builds and installs the wheel
"""


def _run(cmd, *, timeout, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, **kw)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
                    f"--- stdout (end)\n{proc.stdout[-6000:]}\n--- stderr (end)\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def workdir():
    """A directory of this module's own, not pytest's tmp_path: pytest keeps only its last
    three base directories, so a concurrent pytest run could delete one under a 5-minute test."""
    with tempfile.TemporaryDirectory(prefix="fastseq-wheel-test-") as d:
        yield Path(d)


@pytest.fixture(scope="module")
def dist(workdir) -> dict[str, Path]:
    """The sdist and the repaired wheel, built once by tools/build-wheel.sh."""
    out = workdir / "dist"
    env = dict(os.environ, PYTHON=sys.executable)
    proc = _run(["bash", ROOT / "tools" / "build-wheel.sh", out], timeout=1200, env=env)
    print(proc.stdout)
    wheels, sdists = sorted(out.glob("fastseq-*.whl")), sorted(out.glob("fastseq-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, (wheels, sdists)
    return {"wheel": wheels[0], "sdist": sdists[0], "log": out / "build.log"}


def _no_compiler_bin(where: Path) -> Path:
    """A directory of links to every program on PATH except compilers and build tools."""
    shim = where / "bin"
    shim.mkdir()
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(d):
            continue
        for entry in os.scandir(d):
            if COMPILER.fullmatch(entry.name) or (shim / entry.name).exists():
                continue
            if entry.is_file() and os.access(entry.path, os.X_OK):
                (shim / entry.name).symlink_to(entry.path)
    return shim


@pytest.fixture(scope="module")
def wheel_venv(dist, workdir) -> tuple[Path, dict[str, str]]:
    """A fresh virtualenv with the wheel (and pytest, hypothesis) installed from binaries
    only, and the environment to run it in: no compiler reachable."""
    where = workdir / "env"
    where.mkdir()
    venv = where / "venv"
    _run([sys.executable, "-m", "venv", venv], timeout=300)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "FASTSEQ_BACKEND", "NUMBA_CACHE_DIR")}
    env.update(PATH=os.pathsep.join([str(venv / "bin"), str(_no_compiler_bin(where))]),
               VIRTUAL_ENV=str(venv), CC="/bin/false", CXX="/bin/false",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    py = venv / "bin" / "python"
    probe = _run([py, "-c", "import shutil; print([shutil.which(t) for t in ('gcc', 'cc', 'c++')])"],
                 timeout=60, env=env)
    assert probe.stdout.strip() == "[None, None, None]", probe.stdout
    # --only-binary: nothing may be built from source, the wheel's dependencies included.
    # hypothesis: tests/conftest.py registers the property tests' profiles.
    _run([py, "-m", "pip", "install", "--only-binary=:all:", dist["wheel"], "pytest", "hypothesis"],
         timeout=900, env=env)
    return venv, env


@pytest.mark.wheel
def test_sdist_builds_the_wheel(dist):
    log = dist["log"].read_text()
    assert "Building wheel from sdist" in log, "tools/build-wheel.sh must build the wheel from the sdist"
    name = dist["wheel"].name
    assert re.fullmatch(r"fastseq-[^-]+-cp\d+-cp\d+-manylinux_\d+_\d+_x86_64\.whl", name), name


@pytest.mark.wheel
def test_wheel_installs_without_a_compiler_and_passes_the_smoke_suite(wheel_venv, dist, workdir):
    venv, env = wheel_venv
    print(f"wheel: {dist['wheel'].name}, {dist['wheel'].stat().st_size} bytes")
    # A copy of the needed test files, outside the source tree: nothing from it is importable.
    suite = workdir / "smoke"
    (suite / "tests").mkdir(parents=True)
    for name in SMOKE_FILES:
        shutil.copy(ROOT / "tests" / name, suite / "tests" / name)
    (suite / "tests" / "test_installed.py").write_text(textwrap.dedent(INSTALLED_CHECK))
    (suite / "pytest.ini").write_text(PYTEST_INI)
    proc = _run([venv / "bin" / "python", "-m", "pytest", "-q", "tests", "-k", SMOKE_SELECT],
                timeout=900, env=env, cwd=suite)
    print(proc.stdout[-3000:])
    summary = proc.stdout.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    assert passed >= 200 and "failed" not in summary and "error" not in summary, summary
