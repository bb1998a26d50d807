#!/usr/bin/env bash
# Builds the unit tests of core, io and train with ASan + UBSan (+ LeakSanitizer) in build-asan/ (the `sanitize`
# preset of CMakePresets.json, gcc) and runs them through ctest. Any sanitizer report fails the run.
# Suppressions for known third-party reports: tools/sanitize/lsan.supp, tools/sanitize/ubsan.supp (each entry is
# documented there and in docs/reliability.md).
# Usage: tools/sanitize.sh [extra ctest args, e.g. -R Safetensors]     Env: JANUS_JOBS (build jobs, default nproc)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/tools/setup.sh" >/dev/null
t0=$(date +%s)
if [ ! -f build-asan/CMakeCache.txt ]; then
  cmake --preset sanitize
fi
cmake --build build-asan -j "${JANUS_JOBS:-$(nproc)}" --target janus_tests_core janus_tests_io janus_tests_train \
  janus_train janus_config janus_module
t1=$(date +%s)
supp="$root/tools/sanitize"
# protect_shadow_gap=0: libtorch_cuda's CUDA runtime maps memory in ASan's shadow gap at load time.
# detect_leaks=1: LeakSanitizer on (gcc/x86_64 supports it); known third-party leaks are suppressed in lsan.supp.
export ASAN_OPTIONS="detect_leaks=1:protect_shadow_gap=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=0:${ASAN_OPTIONS:-}"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0:${LSAN_OPTIONS:-}"
export UBSAN_OPTIONS="suppressions=$supp/ubsan.supp:print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
cd build-asan
ctest --output-on-failure -j "${JANUS_TEST_JOBS:-$(nproc)}" --timeout 900 -L '^(core|io|train)$' "$@"
t2=$(date +%s)
echo "[sanitize] build $((t1 - t0)) s, tests $((t2 - t1)) s"
