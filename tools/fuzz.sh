#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/<name>_fuzz.cpp; clang, ASan + UBSan, linked against the instrumented parser
# subset of the library) in build-sanitize/ (the `sanitize` preset, shared with tools/sanitize.sh) and runs each
# for SECONDS (default 30) on a work copy of its seed corpus (fuzz/corpus/<name>). Exit non-zero on any finding;
# crash inputs and logs land in build-sanitize/findings.
# Usage: tools/fuzz.sh [SECONDS] [name ...]      e.g. tools/fuzz.sh 600 point_cloud
# Env: JANUS_FUZZ_BUILD_DIR (default build-sanitize), JANUS_JOBS, JANUS_FUZZ_PARSERS_ONLY (ON; OFF with another
# JANUS_FUZZ_BUILD_DIR builds the whole library instrumented, needed by targets such as serve_request, which the
# parser subset skips).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
secs="${1:-30}"
shift || true
"$root/tools/setup.sh" >/dev/null
build="${JANUS_FUZZ_BUILD_DIR:-$root/build-sanitize}"
if [ ! -f "$build/CMakeCache.txt" ]; then
  if [ "$build" = "$root/build-sanitize" ]; then
    (cd "$root" && cmake --preset sanitize >/dev/null)
  else
    CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" "-DJANUS_PARSERS_ONLY=${JANUS_FUZZ_PARSERS_ONLY:-ON}" -DJANUS_BUILD_FUZZ=ON \
      -DJANUS_BUILD_TESTS=OFF -DJANUS_BUILD_TOOLS=OFF -DJANUS_BUILD_BENCH=OFF \
      "-DJANUS_SANITIZE=address,undefined,fuzzer-no-link" >/dev/null
  fi
fi
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  subset=0
  grep -q '^JANUS_PARSERS_ONLY:BOOL=ON' "$build/CMakeCache.txt" && subset=1
  for f in "$root"/fuzz/*_fuzz.cpp; do
    n="$(basename "$f" _fuzz.cpp)"
    if [ $subset = 1 ] && grep -q "${n}_fuzz" <(sed -n '/^set(JANUS_FUZZ_FULL_LIBRARY_ONLY/p' "$root/fuzz/CMakeLists.txt"); then
      echo "[fuzz] $n: skipped (needs the full library: JANUS_FUZZ_PARSERS_ONLY=OFF JANUS_FUZZ_BUILD_DIR=build-fuzz)"
      continue
    fi
    names+=("$n")
  done
fi
targets=()
for n in "${names[@]}"; do targets+=("${n}_fuzz"); done
cmake --build "$build" -j "${JANUS_JOBS:-$(nproc)}" --target "${targets[@]}"
mkdir -p "$build/findings"
source "$root/tools/sanitize/env.sh"
# detect_leaks=0 while fuzzing: libFuzzer's per-input leak check would report libtorch's one-time allocations on
# the first input; leaks in our parsers are covered by the LeakSanitizer unit-test run (tools/sanitize.sh).
export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"
status=0
for name in "${names[@]}"; do
  f="$build/bin/${name}_fuzz"
  work="$build/corpus/$name"
  mkdir -p "$work"
  [ -d "$root/fuzz/corpus/$name" ] && cp -n "$root/fuzz/corpus/$name"/* "$work"/ 2>/dev/null || true
  echo "[fuzz] $name for ${secs}s"
  if ! "$f" -max_total_time="$secs" -timeout=30 -artifact_prefix="$build/findings/${name}-" -print_final_stats=1 \
      "$work" > "$build/findings/$name.log" 2>&1; then
    echo "[fuzz] $name: FINDING (see $build/findings/$name.log)"; tail -30 "$build/findings/$name.log"; status=1
  else
    echo "[fuzz] $name: $(grep -E 'stat::number_of_executed_units' "$build/findings/$name.log" | awk '{print $2}') runs," \
      "$(ls "$work" | wc -l) corpus inputs, no findings"
  fi
done
exit $status
