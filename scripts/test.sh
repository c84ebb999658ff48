#!/usr/bin/env bash
# Builds and runs every test: a Release build (warnings are errors), the Python suite, an
# AddressSanitizer + UndefinedBehaviorSanitizer build, and the multithreaded tests under
# ThreadSanitizer. Installs its own dependencies first.
#
#   bash scripts/test.sh            # everything
#   OPENNSA_SKIP_SANITIZE=1 OPENNSA_SKIP_PYTHON=1 bash scripts/test.sh   # Release only (quick local loop)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

jobs=$(nproc)
status=0

run_suite() {  # name, build dir, ctest -R filter ("" for all), extra cmake args...
  local name=$1 dir=$2 filter=$3
  shift 3
  echo "=== ${name}: configure and build (${dir})"
  cmake -S . -B "$dir" -G Ninja -DOPENNSA_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  echo "=== ${name}: tests"
  if ! (cd "$dir" && ctest --output-on-failure -j "$jobs" --timeout 1200 ${filter:+-R "$filter"}); then
    status=1
  fi
}

run_suite "Release" build "" -DCMAKE_BUILD_TYPE=Release

if [ "${OPENNSA_SKIP_PYTHON:-0}" != "1" ]; then
  echo "=== Python (PyTorch extension, pytest)"
  bash scripts/test-python.sh || status=1
fi

if [ "${OPENNSA_SKIP_SANITIZE:-0}" != "1" ]; then
  # halt_on_error keeps a sanitizer report from scrolling past as a mere warning.
  export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_suite "ASan+UBSan" build-asan "" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOPENNSA_SANITIZE=ON \
    -DOPENNSA_BUILD_BENCHMARKS=OFF
  # The thread pool and the passes that share buffers between jobs, under ThreadSanitizer: the
  # determinism tests (1-8 threads) and the per-path kernel tests (2 and 3 threads).
  export TSAN_OPTIONS=halt_on_error=1
  run_suite "TSan" build-tsan "Determinism|Kernels|Paths|Workspace" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS=-fsanitize=thread -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread \
    -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread -DOPENNSA_BUILD_BENCHMARKS=OFF -DOPENNSA_BUILD_TOOLS=OFF
fi

# Fuzzing: clang + libFuzzer + ASan/UBSan in build-fuzz/ (scripts/fuzz.sh, docs/FUZZING.md):
# replays fuzz/corpus and fuzz/regressions, then fuzzes each target for FUZZ_SECONDS (default
# 60). OPENNSA_SKIP_FUZZ=1 skips it.
if [ "${OPENNSA_SKIP_FUZZ:-0}" != "1" ]; then
  echo "=== Fuzzing (scripts/fuzz.sh)"
  bash scripts/fuzz.sh || status=1
fi

if [ "$status" -ne 0 ]; then
  echo "=== some tests FAILED"
  exit 1
fi
echo "=== all test suites passed"
