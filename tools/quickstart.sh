#!/usr/bin/env bash
# The main job out of the box: set-up + build, then the built-in pipeline on generated data.
# It grows with the project (see README.md "What works today"); today it builds and checks the shipped configs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/tools/build.sh"
bin="${JANUS_BUILD_DIR:-$root/build}/bin"
for c in "$root"/configs/stage*.yaml; do
  "$bin/janus_config" check --config "$c" > /dev/null
  echo "[quickstart] config ok: ${c#$root/}"
done
"$bin/janus_module" list | grep -E '^[a-z]' | sed 's/^/[quickstart] module: /'
echo "[quickstart] training on the built-in Shapes data is not available yet (see README.md)."
