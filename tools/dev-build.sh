#!/usr/bin/env bash
# Developer loop: incremental in-place build of fastseq/_core (and its libraries) into the
# source tree, so `python -m pytest` from the repo root runs the fresh build.
# Needs the build requirements in the active environment:
#   pip install scikit-build-core pybind11 scipy-openblas32 cmake ninja
set -euo pipefail
cd "$(dirname "$0")/.."
build=build/dev
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DPython_EXECUTABLE="$(command -v python)" \
  -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" >/dev/null
cmake --build "$build"
# Copy then rename, so a test run that imports the module meanwhile never sees half a file.
for lib in "$build"/_core*.so "$build"/libfastseq*.so; do
  [ -e "$lib" ] || continue
  cp "$lib" "fastseq/.$(basename "$lib").tmp"
  mv "fastseq/.$(basename "$lib").tmp" "fastseq/$(basename "$lib")"
done
echo "built $(ls fastseq/*.so | tr '\n' ' ')"
