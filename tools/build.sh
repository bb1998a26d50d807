#!/usr/bin/env bash
# Configure + build libjanus, its tools, tests and benchmarks into $JANUS_BUILD_DIR (default build/).
# Runs tools/setup.sh first (seconds when everything is cached).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/tools/setup.sh"
build="${JANUS_BUILD_DIR:-$root/build}"
jobs="${JANUS_JOBS:-$(nproc)}"
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE="${JANUS_BUILD_TYPE:-Release}" ${JANUS_CMAKE_ARGS:-}
fi
t0=$(date +%s)
cmake --build "$build" -j "$jobs"
echo "[build] done in $(( $(date +%s) - t0 )) s: $build"
