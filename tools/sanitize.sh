#!/usr/bin/env bash
# The sanitizer run (CI runs it after the main test suite): builds the parser subset of the library (src/core,
# src/io, src/data, src/train/checkpoint.cpp: everything that reads untrusted files) with clang ASan + UBSan
# (+ LeakSanitizer, part of ASan on x86_64) and libFuzzer coverage in build-sanitize/ (the `sanitize` preset of
# CMakePresets.json, JANUS_PARSERS_ONLY=ON), then runs the unit tests that exercise it through ctest:
#   janus_tests_core (config, config mutation, registry), janus_tests_io (safetensors, module_io),
#   janus_tests_data_pipeline (annotation readers, loader, Shapes, tokenizer), janus_tests_reliability built from
#   checkpoint_manifest_test.cpp + data_faults_test.cpp only.
# Any sanitizer report fails the test that triggered it. The same build holds the fuzz targets (tools/fuzz.sh).
# Suppressions for third-party reports: tools/sanitize/lsan.supp, tools/sanitize/ubsan.supp (each entry is
# commented there; docs/reliability.md lists them).
# Usage: tools/sanitize.sh [extra ctest args, e.g. -R Safetensors]
# Env: JANUS_JOBS (build jobs, default nproc), JANUS_TEST_JOBS (ctest jobs, default nproc).
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
cd build-sanitize
ctest --output-on-failure -j "${JANUS_TEST_JOBS:-$(nproc)}" --timeout 900 -L '^(core|io|data_pipeline|reliability)$' "$@"
t2=$(date +%s)
echo "[sanitize] build $((t1 - t0)) s, tests $((t2 - t1)) s"
