#!/usr/bin/env bash
# Idempotent set-up: Debian -dev packages + a cached Python venv holding the pinned torch (LibTorch) and
# the Python oracles used by parity tests. The venv lives outside the clone in $JANUS_DEPS
# (default $HOME/.cache/janus). A second run only checks stamps and returns in seconds.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
deps="${JANUS_DEPS:-$HOME/.cache/janus}"
venv="$deps/venv"
mkdir -p "$deps"

log() { printf '[setup] %s\n' "$*"; }
t0=$(date +%s)

# ---- Debian packages ---------------------------------------------------------------------------------
apt_pkgs=(
  build-essential cmake ninja-build ccache pkg-config git
  libopencv-dev libfmt-dev libspdlog-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libsentencepiece-dev sentencepiece libprotobuf-dev protobuf-compiler
  libcpp-httplib-dev libssl-dev zlib1g-dev libgloo-dev
  clang libclang-rt-14-dev
  python3-venv
  dataset-fashion-mnist opencv-doc
)
missing=()
for p in "${apt_pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then missing+=("$p"); fi
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "Debian packages present"
fi

# ---- Python venv with pinned torch + oracles -------------------------------------------------------------
py="${JANUS_PYTHON:-}"
if [ -z "$py" ]; then
  for c in python3.11 python3; do if command -v "$c" >/dev/null; then py="$(command -v "$c")"; break; fi; done
fi
req="$here/requirements.txt"
stamp="$venv/.janus-requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  log "venv up to date: $venv"
else
  log "creating venv in $venv with $py (first time: several minutes, torch 2.11.0 + CUDA runtime wheels)"
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -r "$req"
  echo "$want" > "$stamp"
fi
"$venv/bin/python" - <<'PY'
import torch, sys
assert torch.__version__.startswith("2.11.0"), torch.__version__
print(f"[setup] torch {torch.__version__} at {torch.utils.cmake_prefix_path}")
PY
log "done in $(( $(date +%s) - t0 )) s"
