#!/usr/bin/env bash
# The sanitizer run (CI runs it after the main test suite): builds the parser subset of the library (src/core,
# src/io, src/data, src/train/checkpoint.cpp: everything that reads untrusted files) with clang ASan + UBSan
# (+ LeakSanitizer, part of ASan on x86_64) and libFuzzer coverage in build-sanitize/ (the `sanitize` preset of
# CMakePresets.json, JANUS_PARSERS_ONLY=ON), then runs the unit tests that exercise it (2 binaries at a time):
#   janus_tests_core (config, config mutation, registry), janus_tests_io (safetensors, module_io),
#   janus_tests_data_pipeline (annotation readers, loader, Shapes, tokenizer), janus_tests_reliability built from
#   checkpoint_manifest_test.cpp + data_faults_test.cpp only.
# Any sanitizer report fails the test that triggered it. The same build holds the fuzz targets (tools/fuzz.sh).
# Suppressions for third-party reports: tools/sanitize/lsan.supp, tools/sanitize/ubsan.supp (each entry is
# commented there; docs/reliability.md lists them).
# Usage: tools/sanitize.sh [gtest filter, default: all but ConfigMutation.ToolExitsTwoOnMutants]
# Env: JANUS_JOBS (build jobs, default nproc), JANUS_TEST_JOBS (test binaries at once, default nproc).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/tools/setup.sh" >/dev/null
t0=$(date +%s)
if [ ! -f build-sanitize/CMakeCache.txt ]; then
  cmake --preset sanitize >/dev/null
fi
cmake --build build-sanitize -j "${JANUS_JOBS:-$(nproc)}"
t1=$(date +%s)
source "$root/tools/sanitize/env.sh"
# One process per test binary (not ctest's one per test): every process start loads libtorch under ASan and every
# exit runs LeakSanitizer over its heap, which would dominate the run. Left out: ConfigMutation.ToolExitsTwoOnMutants
# (200 janus_config processes; the same 200 mutants run in-process in ConfigMutation.TwoHundredMutants...).
filter="${1:--ConfigMutation.ToolExitsTwoOnMutants}"
cd build-sanitize
mkdir -p sanitize-logs
run_one() {
  local t0 rc
  t0=$(date +%s)
  "tests/$1" --gtest_filter="$2" > "sanitize-logs/$1.log" 2>&1
  rc=$?
  echo "[sanitize] $1: $(grep -aE '^\[  PASSED  \]|^\[  FAILED  \]' "sanitize-logs/$1.log" | head -1) exit $rc, $(( $(date +%s) - t0 )) s"
  if [ $rc -ne 0 ]; then
    grep -aE 'ERROR: (Address|Leak)Sanitizer|runtime error|FAILED|SUMMARY' "sanitize-logs/$1.log" | head -20
    return 1
  fi
}
export -f run_one
set +e
printf '%s\n' janus_tests_core janus_tests_io janus_tests_data_pipeline janus_tests_reliability |
  xargs -P "${JANUS_TEST_JOBS:-$(nproc)}" -I{} bash -c 'run_one {} "$0"' "$filter"
rc=$?
set -e
t2=$(date +%s)
echo "[sanitize] build $((t1 - t0)) s, tests $((t2 - t1)) s (logs: build-sanitize/sanitize-logs/)"
exit $rc
