#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) in build-fuzz/ and runs each for SECONDS (default 30) on a
# copy of its seed corpus (fuzz/corpus/<name>). Exit non-zero on any finding; crash inputs land in build-fuzz/findings.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
secs="${1:-30}"
"$root/tools/setup.sh" >/dev/null
build="${JANUS_FUZZ_BUILD_DIR:-$root/build-fuzz}"
if [ ! -f "$build/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DJANUS_BUILD_FUZZ=ON -DJANUS_BUILD_TESTS=OFF -DJANUS_BUILD_TOOLS=OFF -DJANUS_BUILD_BENCH=OFF \
    -DJANUS_USE_PCH=OFF "-DJANUS_SANITIZE=address,undefined,fuzzer-no-link"
fi
cmake --build "$build" -j "${JANUS_JOBS:-$(nproc)}"
mkdir -p "$build/findings"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
status=0
for f in "$build"/bin/*_fuzz; do
  name="$(basename "$f" _fuzz)"
  work="$build/corpus/$name"
  mkdir -p "$work"
  [ -d "$root/fuzz/corpus/$name" ] && cp -n "$root/fuzz/corpus/$name"/* "$work"/ 2>/dev/null || true
  echo "[fuzz] $name for ${secs}s"
  if ! "$f" -max_total_time="$secs" -artifact_prefix="$build/findings/${name}-" -print_final_stats=1 "$work" \
      > "$build/findings/$name.log" 2>&1; then
    echo "[fuzz] $name: FINDING (see $build/findings/$name.log)"; status=1
  else
    echo "[fuzz] $name: $(grep -E 'stat::number_of_executed_units' "$build/findings/$name.log" | awk '{print $2}') runs, no findings"
  fi
done
exit $status
