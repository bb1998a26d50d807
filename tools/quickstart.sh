#!/usr/bin/env bash
# The main job out of the box: set-up + build, then the pipeline on built-in data. It grows with the project
# (README.md "What works today"). Today: generate the Shapes benchmark, read it back through the real COCO/VQA
# loaders' CLI, and run a short real training run of the trainer (toy task). Re-running resumes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/tools/build.sh"
bin="${JANUS_BUILD_DIR:-$root/build}/bin"
out="$root/runs/quickstart"
mkdir -p "$out"
cd "$root"
if [ ! -f "$out/shapes/shapes_info.json" ]; then
  echo "[quickstart] generating the Shapes benchmark in $out/shapes"
  "$bin/janus_data" shapes --out "$out/shapes" --train 2000 --val 200 --size 64 --seed 0
else
  echo "[quickstart] Shapes data present: $out/shapes"
fi
echo "[quickstart] model: $("$bin/janus_model" describe --flavour tiny --vocab 1000 | grep -E '^ +total' | sed 's/^ *//')"
resume=()
[ -d "$out/toy/checkpoints" ] && resume=(--resume auto)
echo "[quickstart] training (toy task; the three Shapes stages are not available yet)"
"$bin/janus_train" --config configs/quickstart/toy.yaml --task toy "${resume[@]}"
echo "[quickstart] done: metrics in $out/toy/metrics.jsonl, TensorBoard events in $out/toy"
