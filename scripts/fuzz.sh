#!/usr/bin/env bash
# Builds OpenNSA's libFuzzer targets (clang; the library and the targets with ASan + UBSan +
# coverage) in build-fuzz/, replays the committed seed corpora and defect reproducers
# (fuzz/corpus, fuzz/regressions: every file once), then fuzzes each target for FUZZ_SECONDS
# seconds, one target after the other, one process each. Exits non-zero when anything fails.
# docs/FUZZING.md explains the targets and what they check.
#
#   bash scripts/fuzz.sh                        # CI: replay, then 60 s per target
#   FUZZ_SECONDS=300 bash scripts/fuzz.sh       # longer per target
#   bash scripts/fuzz.sh --long 3600            # an hour per target (same as FUZZ_SECONDS=3600)
#   bash scripts/fuzz.sh --replay               # replay only, no fuzzing
#   bash scripts/fuzz.sh --target executor_misuse --long 600
#
# New inputs go to build-fuzz/fuzz-runs/<target>/corpus (the committed corpus is only read);
# a finding is written to build-fuzz/fuzz-runs/<target>/crash-* (or timeout-*, oom-*) and
# replays with  build-fuzz/fuzz/fuzz_<target> <file>  (OPENNSA_FUZZ_VERBOSE=1 prints the call).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
replay_only=0
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --long) seconds=${2:?--long needs a number of seconds}; shift 2 ;;
    --replay) replay_only=1; shift ;;
    --target) targets+=("${2:?--target needs a name}"); shift 2 ;;
    *) echo "usage: $0 [--long SECONDS] [--replay] [--target NAME]..." >&2; exit 2 ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  targets=(capi_selected_attention native_selected_attention executor_misuse capi_family)
fi

bash scripts/install-deps.sh
cxx=${FUZZ_CXX:-clang++}
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' > "$probe/p.cpp"
if ! "$cxx" -fsanitize=fuzzer,address,undefined "$probe/p.cpp" -o "$probe/p" >/dev/null 2>&1; then
  echo "fuzz: installing clang and its libFuzzer runtime"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang libclang-rt-dev
fi

echo "=== fuzz: configure and build (build-fuzz, $cxx)"
cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DOPENNSA_BUILD_FUZZERS=ON -DOPENNSA_BUILD_TESTS=OFF -DOPENNSA_BUILD_TOOLS=OFF -DOPENNSA_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build build-fuzz -j "$(nproc)"

# allocator_may_return_null: a huge malloc fails (and the library must report it) rather than
# abort inside ASan; libFuzzer's -malloc_limit_mb still reports any single allocation past it.
export ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0

echo "=== fuzz: replay of fuzz/corpus and fuzz/regressions"
filter=$(IFS='|'; echo "${targets[*]}")
if ! (cd build-fuzz && ctest -L fuzz -R "fuzz_(${filter})_" --output-on-failure); then
  status=1
fi

if [ "$replay_only" = "1" ]; then
  [ "$status" -eq 0 ] && echo "=== fuzz: replay passed" || echo "=== fuzz: replay FAILED"
  exit "$status"
fi

failed=()
for t in "${targets[@]}"; do
  dir=build-fuzz/fuzz-runs/$t
  mkdir -p "$dir/corpus"
  echo "=== fuzz: $t for ${seconds} s"
  if ! build-fuzz/fuzz/fuzz_"$t" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2560 -malloc_limit_mb=2560 \
      -print_final_stats=1 -artifact_prefix="$dir/" "$dir/corpus" fuzz/corpus/"$t" 2>&1 | tail -n 120; then
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "=== fuzz: FAILED: ${failed[*]} (findings in build-fuzz/fuzz-runs/<target>/)"
  status=1
fi
[ "$status" -eq 0 ] && echo "=== fuzz: all passed"
exit "$status"
