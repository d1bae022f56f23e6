"""Checks a built sdist and a repaired wheel: what each must hold and must not, the ELF
dependencies and run paths of the wheel's two libraries, and the wheel's size.

    python tools/check_dist.py SDIST WHEEL

Needs pyelftools (tools/wheel-requirements.txt). Prints what it checked; exits 1 on the
first list of problems. tools/build-wheel.sh runs it; tests/test_wheel.py reuses it.
"""
from __future__ import annotations

import fnmatch
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent

#: The size goal for the wheel (the issue's 2 MB; nothing is bundled, so it is the whole file).
MAX_WHEEL_BYTES = 2_000_000
#: Where libscipy_openblas.so is, seen from the fastseq package directory.
OPENBLAS_RPATH = "$ORIGIN/../scipy_openblas32/lib"

WHEEL_REQUIRED = ["fastseq/__init__.py", "fastseq/_version.py", "fastseq/py.typed",
                  "fastseq/_core.pyi", "fastseq/libfastseq.so"]
SDIST_REQUIRED = ["pyproject.toml", "CMakeLists.txt", "README.md", "LICENSE", "PKG-INFO",
                  "fastseq/_version.py", "fastseq/py.typed", "fastseq/_core.pyi"]
# Nothing built, cached or CI-only in either archive.
FORBIDDEN = ["*/__pycache__/*", "*.pyc", "*.nbi", "*.nbc", "*.o", "build/*", "dist/*",
             "wheelhouse/*", ".ci/*", "*.whl"]


def wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        return z.namelist()


def sdist_names(sdist: Path) -> list[str]:
    """Paths inside the sdist, without its top directory ``fastseq-V/``."""
    with tarfile.open(sdist) as t:
        return [m.name.split("/", 1)[1] for m in t.getmembers() if m.isfile() and "/" in m.name]


def tracked_sources() -> list[str]:
    """The git-tracked files a wheel is built from (empty outside a git checkout)."""
    try:
        out = subprocess.run(["git", "ls-files", "--", "csrc", "fastseq", "CMakeLists.txt",
                              "pyproject.toml", "README.md", "LICENSE"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return out.split()


def forbidden(names: list[str]) -> list[str]:
    return [n for n in names if any(fnmatch.fnmatch(n, p) or fnmatch.fnmatch("/" + n, p)
                                    for p in FORBIDDEN)]


def elf_dynamic(data: bytes) -> tuple[list[str], list[str]]:
    """(DT_NEEDED entries, run path entries: DT_RUNPATH, else DT_RPATH) of an ELF image."""
    from elftools.elf.elffile import ELFFile

    dyn = ELFFile(io.BytesIO(data)).get_section_by_name(".dynamic")
    needed = [t.needed for t in dyn.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
    runpath = [t.runpath for t in dyn.iter_tags() if t.entry.d_tag == "DT_RUNPATH"]
    rpath = [t.rpath for t in dyn.iter_tags() if t.entry.d_tag == "DT_RPATH"]
    entries = ":".join(runpath or rpath).split(":")
    return needed, [e for e in entries if e]


def check_wheel(wheel: Path) -> list[str]:
    problems = []
    names = wheel_names(wheel)
    problems += [f"wheel lacks {n}" for n in WHEEL_REQUIRED if n not in names]
    if not any(fnmatch.fnmatch(n, "fastseq-*.dist-info/licenses/LICENSE") for n in names):
        problems.append("wheel lacks the licence (*.dist-info/licenses/LICENSE)")
    problems += [f"wheel holds {n}" for n in forbidden(names)]
    cores = [n for n in names if fnmatch.fnmatch(n, "fastseq/_core.*.so")]
    if len(cores) != 1:
        problems.append(f"wheel holds {len(cores)} fastseq/_core.*.so files, expected 1: {cores}")
    # auditwheel grafts what it bundles into fastseq.libs/ under a hashed name: nothing may be
    # there (not OpenBLAS, which comes from scipy-openblas32; not libfastseq.so, already in).
    libs = [n for n in names if n.endswith(".so") or ".so." in n]
    extra = sorted(set(libs) - set(cores) - {"fastseq/libfastseq.so"})
    if extra:
        problems.append(f"wheel bundles libraries it should not: {extra}")
    if problems:
        return problems

    with zipfile.ZipFile(wheel) as z:
        core_needed, core_rpath = elf_dynamic(z.read(cores[0]))
        lib_needed, lib_rpath = elf_dynamic(z.read("fastseq/libfastseq.so"))
    print(f"  {cores[0]}: NEEDED {core_needed}, run path {core_rpath}")
    print(f"  fastseq/libfastseq.so: NEEDED {lib_needed}, run path {lib_rpath}")
    for name, needed, rpath, want_needed, want_rpath in [
        (cores[0], core_needed, core_rpath, ["libfastseq.so", "libscipy_openblas.so"],
         ["$ORIGIN", OPENBLAS_RPATH]),
        ("libfastseq.so", lib_needed, lib_rpath, ["libscipy_openblas.so"], [OPENBLAS_RPATH]),
    ]:
        problems += [f"{name} does not need {w} (a renamed or missing dependency)"
                     for w in want_needed if w not in needed]
        problems += [f"{name}: run path lacks {w}" for w in want_rpath if w not in rpath]
        # An absolute entry is the build machine's directory: useless, and a leak.
        problems += [f"{name}: run path entry {e!r} is not relative to $ORIGIN"
                     for e in rpath if not e.startswith("$ORIGIN")]
    size = wheel.stat().st_size
    print(f"  size: {size / 1e6:.2f} MB ({size} bytes; goal <= {MAX_WHEEL_BYTES / 1e6:.0f} MB)")
    if size > MAX_WHEEL_BYTES:
        problems.append(f"wheel is {size} bytes, over the {MAX_WHEEL_BYTES}-byte goal")
    return problems


def check_sdist(sdist: Path) -> list[str]:
    names = sdist_names(sdist)
    problems = [f"sdist lacks {n}" for n in SDIST_REQUIRED if n not in names]
    # Everything the build reads: every tracked file under csrc/ and fastseq/, and more.
    problems += [f"sdist lacks tracked file {n}" for n in tracked_sources()
                 if n not in names and os.path.exists(ROOT / n)]
    problems += [f"sdist holds {n}" for n in forbidden(names)]
    problems += [f"sdist holds a binary {n}" for n in names
                 if PurePosixPath(n).suffix in (".so", ".a", ".o")]
    print(f"  sdist: {len(names)} files, {sdist.stat().st_size / 1e3:.0f} kB")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    sdist, wheel = Path(argv[0]), Path(argv[1])
    problems = check_sdist(sdist) + check_wheel(wheel)
    for p in problems:
        print(f"  PROBLEM: {p}", file=sys.stderr)
    if not problems:
        print(f"  {sdist.name} and {wheel.name}: OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
