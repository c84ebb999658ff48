#!/usr/bin/env bash
# Builds and runs every test: a Release build (warnings are errors), the Python suite, an
# AddressSanitizer + UndefinedBehaviorSanitizer build, the multithreaded tests under
# ThreadSanitizer, a clang Release build, and an aarch64 cross build whose tests run under
# qemu-user twice (a NEON-only Cortex-A53, and QEMU's `max` CPU with 512-bit SVE), and the
# libFuzzer targets (corpus and reproducers replayed, then a minute of fuzzing each). Installs its
# own dependencies first. Any failing stage makes it exit non-zero (after the other stages ran).
#
#   bash scripts/test.sh            # everything
#   OPENNSA_SKIP_SANITIZE=1 OPENNSA_SKIP_PYTHON=1 OPENNSA_SKIP_CLANG=1 OPENNSA_SKIP_AARCH64=1 OPENNSA_SKIP_FUZZ=1 \
#     bash scripts/test.sh          # gcc Release only (quick local loop)
set -euo pipefail
cd "$(dirname "$0")/.."

skip_clang=${OPENNSA_SKIP_CLANG:-0}
skip_aarch64=${OPENNSA_SKIP_AARCH64:-0}
# The cross stage needs an x86-64 host (Debian's x86-64 cross toolchain and qemu-user).
if [ "$skip_aarch64" != "1" ] && [ "$(uname -m)" != "x86_64" ]; then
  echo "=== aarch64 cross stage skipped: host is $(uname -m), not x86_64"
  skip_aarch64=1
fi
extra_deps=()
[ "$skip_clang" = "1" ] || extra_deps+=(--clang)
[ "$skip_aarch64" = "1" ] || extra_deps+=(--aarch64)
bash scripts/install-deps.sh "${extra_deps[@]}"

jobs=${OPENNSA_JOBS:-$(nproc)}
status=0
failed=()

fail() {  # stage name: remembers a failure, the remaining stages still run
  status=1
  failed+=("$1")
}

build_suite() {  # name, build dir, extra cmake args... (returns 1 when configure or build fails)
  local name=$1 dir=$2
  shift 2
  echo "=== ${name}: configure and build (${dir})"
  if ! cmake -S . -B "$dir" -G Ninja -DOPENNSA_WERROR=ON "$@" >/dev/null || ! cmake --build "$dir" -j "$jobs"; then
    fail "${name} (build)"
    return 1
  fi
}

test_suite() {  # name, build dir, ctest -R filter ("" for all)
  local name=$1 dir=$2 filter=$3
  echo "=== ${name}: tests"
  if ! (cd "$dir" && ctest --output-on-failure -j "$jobs" --timeout 1200 ${filter:+-R "$filter"}); then
    fail "${name}"
  fi
}

run_suite() {  # name, build dir, ctest -R filter ("" for all), extra cmake args...
  local name=$1 dir=$2 filter=$3 start=$SECONDS
  shift 3
  if build_suite "$name" "$dir" "$@"; then
    test_suite "$name" "$dir" "$filter"
  fi
  echo "=== ${name}: $((SECONDS - start)) s"
}

run_suite "Release" build "" -DCMAKE_BUILD_TYPE=Release

if [ "${OPENNSA_SKIP_PYTHON:-0}" != "1" ]; then
  echo "=== Python (PyTorch extension, pytest)"
  bash scripts/test-python.sh || fail "Python"
fi

if [ "${OPENNSA_SKIP_SANITIZE:-0}" != "1" ]; then
  # halt_on_error keeps a sanitizer report from scrolling past as a mere warning.
  export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_suite "ASan+UBSan" build-asan "" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOPENNSA_SANITIZE=ON \
    -DOPENNSA_BUILD_BENCHMARKS=OFF
  # The thread pool and the passes that share buffers between jobs, under ThreadSanitizer: the
  # determinism tests (1-8 threads), the per-path kernel tests (2 and 3 threads) and the runtime
  # contexts (per-thread current context, concurrent create / destroy).
  export TSAN_OPTIONS=halt_on_error=1
  run_suite "TSan" build-tsan "Determinism|Kernels|Paths|Workspace|CapiContext" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS=-fsanitize=thread -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread \
    -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread -DOPENNSA_BUILD_BENCHMARKS=OFF -DOPENNSA_BUILD_TOOLS=OFF
fi

if [ "$skip_clang" != "1" ]; then
  # clang warns where gcc does not (and the other way round): the same -Werror build with clang.
  run_suite "clang" build-clang "" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_C_COMPILER=clang
fi

if [ "$skip_aarch64" != "1" ]; then
  # Cross-compiled with Debian's aarch64 toolchain, the tests run under qemu-user (see
  # cmake/toolchains/aarch64-linux-gnu.cmake); one build, run on two CPU models. (The Python
  # stage is x86-64 only.)
  start=$SECONDS
  if build_suite "aarch64" build-aarch64 -DCMAKE_BUILD_TYPE=Release \
       -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/toolchains/aarch64-linux-gnu.cmake"; then
    for cpu in cortex-a53 max,sve512=on,sve-default-vector-length=64; do
      OPENNSA_QEMU_CPU=$cpu test_suite "aarch64 (qemu -cpu $cpu)" build-aarch64 ""
    done
  fi
  echo "=== aarch64: $((SECONDS - start)) s"
fi

# Fuzzing: clang + libFuzzer + ASan/UBSan in build-fuzz/ (scripts/fuzz.sh, docs/FUZZING.md):
# replays fuzz/corpus and fuzz/regressions, then fuzzes each target for FUZZ_SECONDS (default
# 60). OPENNSA_SKIP_FUZZ=1 skips it.
if [ "${OPENNSA_SKIP_FUZZ:-0}" != "1" ]; then
  start=$SECONDS
  echo "=== Fuzzing (scripts/fuzz.sh)"
  bash scripts/fuzz.sh || fail "fuzzing"
  echo "=== Fuzzing: $((SECONDS - start)) s"
fi

if [ "$status" -ne 0 ]; then
  echo "=== some tests FAILED: ${failed[*]}"
  exit 1
fi
echo "=== all test suites passed"
