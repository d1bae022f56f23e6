#!/usr/bin/env bash
# The kernels under sanitizers (CI runs this from .ci/run; the README's test section).
#
#   tools/sanitize.sh [asan|tsan|all]      default: all
#   SANITIZE_CLEAN=1 (rebuild from scratch), SANITIZE_ISA, SANITIZE_JOBS (default 2), CC
#
# asan  ASan + UBSan: libfastseq.so and _core built at -O1 with
#       -fsanitize=address,undefined -fno-sanitize-recover=all into build/asan, copied with
#       the package's Python files into a throwaway package (a temp dir; the source tree's
#       fastseq/ is never touched), and the kernel tests run against it under
#       LD_PRELOAD=libasan: every cell (the projected LSTM through the generic entry points:
#       its torch tests cannot run here), dtype, lengths, reverse, 1 and 2 threads,
#       accumulate, the bindings and the C ABI (cffi and the tests/c programs), and every
#       cell under other machines' cache sizes (the scratch must hold every choice). The numba
#       backend is deselected (its JIT code is not instrumented, and it only slows the run);
#       torch is kept out (see the stub below).
# tsan  ThreadSanitizer, no Python: libfastseq.so built with -fsanitize=thread into
#       build/tsan, the C programs of tests/c built with it too, run with fastseq's pool at 2
#       threads and OpenBLAS at 1; tests/c/threads_stress.c calls every kernel from several
#       threads at once.
#
# One ISA variant is built: portable (SANITIZE_ISA=avx2 or avx512 adds that one; portable
# is always built, dispatch falls back to it). Why portable: it is the one variant every
# build has and every CPU runs, so the result does not depend on the CI host; it is one
# compile of loops/sequence_isa.cpp (the build's only heavy file: every variant costs
# minutes under ASan); and the kernels are one template source for every ISA, whose
# vector loads and stores (GCC vector extensions through memcpy) ASan instruments in every
# variant alike. What the portable run cannot see: tile and padding edges that exist only at
# the 32- and 64-byte vector widths.
#
# Needs a C/C++ compiler with the sanitizer runtimes (GCC: libasan, libubsan, libtsan) and,
# in the active Python environment, cmake, pybind11, scipy-openblas32, numpy, cffi, pytest
# (ninja if present). Any report fails the run: the sanitizers abort at the first finding.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
what=${1:-all}
case $what in asan | tsan | all) ;; *) echo "usage: $0 [asan|tsan|all]" >&2; exit 2 ;; esac
isa=${SANITIZE_ISA:-portable}
python=$(command -v python || command -v python3)
cc=${CC:-gcc}
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
jobs=${SANITIZE_JOBS:-2}
# SANITIZE_CLEAN=1 (CI) starts from empty build dirs; otherwise the builds are incremental.
clean=${SANITIZE_CLEAN:-0}

step_start=0
step() { step_start=$(date +%s); echo "== sanitize: $*"; }
step_done() { echo "== sanitize: $1 took $(( $(date +%s) - step_start )) s"; }

# Debug: -g for file:line in the reports, and assertions on; FASTSEQ_SANITIZE sets -O1.
configure() {  # configure BUILD_DIR SANITIZERS
  if [ "$clean" = 1 ]; then rm -rf "$1"; fi
  cmake -S . -B "$1" "${generator[@]}" -DCMAKE_BUILD_TYPE=Debug -DFASTSEQ_ISAS="$isa" \
    -DFASTSEQ_SANITIZE="$2" -DPython_EXECUTABLE="$python" \
    -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" >/dev/null
}

openblas_dir=$("$python" -c "import scipy_openblas32; print(scipy_openblas32.get_lib_dir())")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fastseq-sanitize.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

run_asan() {
  step "ASan+UBSan build (build/asan, $isa)"
  configure build/asan address,undefined
  cmake --build build/asan -j "$jobs"
  step_done "ASan+UBSan build"

  step "ASan+UBSan kernel tests"
  # The throwaway package: the Python sources, the sanitized libraries, the C header where an
  # installed wheel keeps it (fastseq.get_include()).
  local pkg=$tmp/asan
  mkdir -p "$pkg"
  cp -R fastseq "$pkg/"
  find "$pkg/fastseq" \( -name '*.so' -o -name __pycache__ \) -prune -exec rm -rf {} +
  cp build/asan/_core*.so build/asan/libfastseq.so "$pkg/fastseq/"
  mkdir -p "$pkg/fastseq/include/fastseq"
  cp csrc/include/fastseq/fastseq.h "$pkg/fastseq/include/fastseq/"
  # torch stays out: it is a large uninstrumented library with its own allocators and
  # threads, and none of the tests below needs it. The stub makes an accidental import fail
  # loudly (or skip, under pytest.importorskip) instead of loading it under ASan.
  mkdir -p "$tmp/no-torch/torch"
  echo 'raise ImportError("torch is kept out of the ASan run (tools/sanitize.sh)")' \
    >"$tmp/no-torch/torch/__init__.py"

  # LD_PRELOAD: the ASan runtime must come first in the process (python is not built with
  # it). libstdc++ right after it: python does not link libstdc++, and an ASan runtime that
  # starts before libstdc++ is loaded finds no real __cxa_throw to intercept, so the first
  # C++ exception (the bindings throw on bad arguments) dies in "CHECK failed ...
  # real___cxa_throw". libubsan is a plain dependency of the libraries and needs no preload.
  # ASAN_OPTIONS:
  #   detect_leaks=0               CPython keeps much of its memory until exit on purpose;
  #                                LeakSanitizer would report all of it. Leaks are not checked.
  #   abort_on_error=1             SIGABRT on a report: pytest's faulthandler then prints the
  #                                Python stack of the test that hit it.
  #   allocator_may_return_null=1  the out-of-memory tests ask for ~2^49 bytes on purpose and
  #                                must get NULL (FASTSEQ_ERR_OUT_OF_MEMORY / MemoryError), as
  #                                without ASan; ASan prints a one-line WARNING for each.
  #   check_initialization_order=1, strict_init_order=1  static initialisers of libfastseq
  #                                that read another file's globals are reported.
  # UBSAN_OPTIONS: a stack trace for every report; halt_on_error=1 (the build's
  # -fno-sanitize-recover=all already makes every check fatal).
  # --capture=sys: a report is written to file descriptor 2 just before the abort; pytest's
  # default fd capture would swallow it.
  local log=$tmp/asan-pytest.log status=0
  env PYTHONPATH="$pkg:$tmp/no-torch" \
    LD_PRELOAD="$("$cc" -print-file-name=libasan.so) $("$cc" -print-file-name=libstdc++.so)" \
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:check_initialization_order=1:strict_init_order=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    FASTSEQ_BACKEND=cpp \
    pytest -p no:cacheprovider --capture=sys -k "not numba" \
      tests/test_backends.py tests/test_isa.py tests/test_accumulate.py tests/test_capi.py \
      tests/test_cpp_bindings.py tests/test_threads.py tests/test_buffer_pool.py \
      tests/test_zero_lengths.py tests/test_capi_generic.py tests/test_generic_entry.py \
      tests/test_tuning_overrides.py 2>&1 | tee "$log" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "sanitize: the ASan+UBSan run failed (exit $status)" >&2
    return "$status"
  fi
  # The run must have tested the throwaway package (conftest's report header names it).
  if ! grep -qF "from $pkg/fastseq/__init__.py" "$log"; then
    echo "sanitize: pytest did not test the sanitized package in $pkg" >&2
    return 1
  fi
  step_done "ASan+UBSan kernel tests"
}

run_tsan() {
  step "TSan build (build/tsan, $isa: libfastseq only)"
  configure build/tsan thread
  cmake --build build/tsan -j "$jobs" --target fastseq
  local bin=$tmp/tsan prog
  mkdir -p "$bin"
  for prog in error_codes lstm_roundtrip threads_stress; do
    "$cc" -std=c99 -Wall -Wextra -pedantic -Werror -O1 -g -fsanitize=thread \
      -fno-omit-frame-pointer -pthread -Icsrc/include "tests/c/$prog.c" \
      -Lbuild/tsan -lfastseq -Wl,-rpath,"$root/build/tsan" -Wl,-rpath-link,"$openblas_dir" -lm \
      -o "$bin/$prog"
  done
  step_done "TSan build"

  step "TSan runs"
  # halt_on_error=1: the first report ends the program (exit 66). allocator_may_return_null=1:
  # error_codes' out-of-memory case must get NULL, as under ASan. tools/tsan.supp holds the
  # suppressions, each explained there.
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:allocator_may_return_null=1:suppressions=$root/tools/tsan.supp"
  export OPENBLAS_NUM_THREADS=1 FASTSEQ_NUM_THREADS=2
  export LD_LIBRARY_PATH="$openblas_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  "$bin/error_codes" >/dev/null
  # lstm_roundtrip reads its inputs from DIR/in.bin: zeros are valid inputs (no lengths).
  # T=6 B=6 I=11 H=70: a team of 2 in the step loops.
  local T=6 B=6 I=11 H=70
  head -c $(( 8 * (T*B*I + 4*H*I + 4*H*H + 8*H + 2*B*H + T*B*H + 2*B*H) )) /dev/zero \
    >"$bin/in.bin"
  "$bin/lstm_roundtrip" "$bin" $T $B $I $H 1 0 >/dev/null
  "$bin/threads_stress" 4 4
  step_done "TSan runs"
}

total_start=$(date +%s)
if [ "$what" = asan ] || [ "$what" = all ]; then run_asan; fi
if [ "$what" = tsan ] || [ "$what" = all ]; then run_tsan; fi
echo "== sanitize: $what took $(( $(date +%s) - total_start )) s in all"
