#!/usr/bin/env bash
# Set-up + build + the whole test suite (ctest). This is what CI runs (.ci/run).
# Extra arguments go to ctest, e.g. ./tools/test.sh -R Safetensors
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/tools/build.sh"
build="${JANUS_BUILD_DIR:-$root/build}"
cd "$build"
ctest --output-on-failure -j "${JANUS_TEST_JOBS:-$(nproc)}" --timeout 900 "$@"
