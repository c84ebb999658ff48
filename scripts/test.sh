#!/usr/bin/env bash
# Builds and runs every test: a Release build (warnings are errors) and an AddressSanitizer +
# UndefinedBehaviorSanitizer build. Installs its own dependencies first.
#
#   bash scripts/test.sh            # everything
#   OPENNSA_SKIP_SANITIZE=1 bash scripts/test.sh   # Release only (quick local loop)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

jobs=$(nproc)
status=0

run_suite() {  # name, build dir, extra cmake args...
  local name=$1 dir=$2
  shift 2
  echo "=== ${name}: configure and build (${dir})"
  cmake -S . -B "$dir" -G Ninja -DOPENNSA_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  echo "=== ${name}: tests"
  if ! (cd "$dir" && ctest --output-on-failure -j "$jobs" --timeout 1200); then
    status=1
  fi
}

run_suite "Release" build -DCMAKE_BUILD_TYPE=Release

if [ "${OPENNSA_SKIP_PYTHON:-0}" != "1" ]; then
  echo "=== Python (PyTorch extension, pytest)"
  bash scripts/test-python.sh || status=1
fi

if [ "${OPENNSA_SKIP_SANITIZE:-0}" != "1" ]; then
  # halt_on_error keeps a sanitizer report from scrolling past as a mere warning.
  export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_suite "ASan+UBSan" build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOPENNSA_SANITIZE=ON \
    -DOPENNSA_BUILD_BENCHMARKS=OFF
fi

if [ "$status" -ne 0 ]; then
  echo "=== some tests FAILED"
  exit 1
fi
echo "=== all test suites passed"
