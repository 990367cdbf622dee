#!/usr/bin/env bash
# Installs what the build needs, builds, and runs the whole test suite:
#   1. the sanitizer build (ASan + UBSan, leak detection) and its tests,
#   2. the libFuzzer targets for a bounded time,
#   3. the normal build (warnings as errors) and its tests, last, so that the run
#      ends with ctest's pass/fail count.
# Environment:
#   AVM_SKIP_SANITIZE=1     skip step 1
#   AVM_FUZZ_SECONDS=N      seconds per libFuzzer target (default 25; 0 skips step 2)
#   AVM_NEMESIS_SECONDS=N   after the tests, a long fault-injection run of N seconds
#                           (tests/nemesis, profile long; off by default)
set -euo pipefail
cd "$(dirname "$0")/.."

./deploy/bootstrap.sh

jobs=$(nproc 2>/dev/null || echo 2)

if [ "${AVM_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== sanitizer build (ASan + UBSan)"
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DAVM_SANITIZE=ON \
    -DAVM_WERROR=ON >/dev/null
  cmake --build build-asan -j "$jobs"
    # scripts/lsan.supp: a leak inside nng 1.5.2 itself (see there).
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    LSAN_OPTIONS=suppressions=$PWD/scripts/lsan.supp \
    ctest --test-dir build-asan --output-on-failure -j "$jobs"
fi

secs=${AVM_FUZZ_SECONDS:-25}
if [ "$secs" != 0 ]; then
  echo "== libFuzzer targets, ${secs}s each"
  fuzz_start=$(date +%s)
  cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAVM_FUZZ=ON -DAVM_WERROR=ON >/dev/null
  targets=$(cd tests/fuzz && ls fuzz_*.c | grep -v fuzz_driver | sed 's/\.c$//')
  # shellcheck disable=SC2086
  cmake --build build-fuzz -j "$jobs" --target $targets
  for t in $targets; do
    dir=build-fuzz/corpus-$t
    mkdir -p "$dir"
    # The corpus kept in the repository (tests/fuzz/README.md), its regression
    # inputs, and the target's own seeds (valid programs, values, states, frames,
    # records) when the sanitizer build made its smoke binary.
    for d in tests/fuzz/corpus/$t tests/fuzz/regress/$t; do
      [ -d "$d" ] && cp "$d"/* "$dir"/ 2>/dev/null || true
    done
    if [ -x "build-asan/tests/fuzz/${t}_smoke" ]; then
      "build-asan/tests/fuzz/${t}_smoke" --write-seeds "$dir" >/dev/null
    fi
    # UBSan findings stop the run like crashes do.
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      ./build-fuzz/tests/fuzz/"$t" -max_total_time="$secs" -max_len=4096 \
      -print_final_stats=1 -artifact_prefix="build-fuzz/$t-" "$dir" \
      > "build-fuzz/$t.log" 2>&1 || {
        echo "fuzz target $t found a failure (input in build-fuzz/$t-*; add it to"
        echo "tests/fuzz/regress/$t once fixed, see tests/fuzz/README.md):"
        tail -n 60 "build-fuzz/$t.log"; exit 1; }
    grep -E "stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb" \
      "build-fuzz/$t.log" | sed "s/^/  $t: /"
  done
  echo "  fuzz stage: $(( $(date +%s) - fuzz_start )) s"
fi

echo "== build (RelWithDebInfo, warnings as errors)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAVM_WERROR=ON >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

if [ "${AVM_NEMESIS_SECONDS:-0}" != 0 ]; then
  echo "== nemesis, long profile, ${AVM_NEMESIS_SECONDS}s of faults"
  NEMESIS_PROFILE=long NEMESIS_SECONDS=$AVM_NEMESIS_SECONDS \
    bash tests/nemesis/nemesis.sh build/node/avmd build/cli/avmctl . \
    build/tests/nemesis/failsync.so
fi
