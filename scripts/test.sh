#!/usr/bin/env bash
# Installs what the build needs, builds, and runs the whole test suite: the normal
# build, then the sanitizer build (ASan + UBSan), then the libFuzzer targets for a
# bounded time. Environment:
#   AVM_SKIP_SANITIZE=1     skip the sanitizer build
#   AVM_FUZZ_SECONDS=N      seconds per libFuzzer target (default 30; 0 skips)
set -euo pipefail
cd "$(dirname "$0")/.."

./deploy/bootstrap.sh

jobs=$(nproc 2>/dev/null || echo 2)

echo "== build (RelWithDebInfo, warnings as errors)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAVM_WERROR=ON >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

if [ "${AVM_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== sanitizer build (ASan + UBSan)"
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DAVM_SANITIZE=ON \
    -DAVM_WERROR=ON >/dev/null
  cmake --build build-asan -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs"
fi

secs=${AVM_FUZZ_SECONDS:-30}
if [ "$secs" != 0 ]; then
  echo "== libFuzzer targets, ${secs}s each"
  CC=clang cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DAVM_FUZZ=ON -DAVM_WERROR=ON >/dev/null
  cmake --build build-fuzz -j "$jobs" --target fuzz_decode fuzz_compile
  for t in fuzz_decode fuzz_compile; do
    dir=build-fuzz/corpus-$t
    mkdir -p "$dir"
    ./build-fuzz/tests/fuzz/$t -max_total_time="$secs" -max_len=4096 \
      -print_final_stats=1 "$dir" 2>&1 | tail -n 12
  done
fi

# The last line CI reads: the test count of the normal build.
ctest --test-dir build -j "$jobs" 2>&1 | tail -n 3
