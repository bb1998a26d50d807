#!/usr/bin/env bash
# The main job out of the box (issue 12): set-up (cached after the first time) + build, generate the built-in
# Shapes benchmark, train stage 1 -> stage 2 -> stage 3 with configs/quickstart/*.yaml (tiny flavour), evaluate
# every task with janus_eval on the held-out split, and write runs/quickstart/report.md (metrics vs targets, loss
# curves as PNG, generated images beside their prompts, reconstructions beside originals).
#
# Re-running resumes: finished stages are skipped, an interrupted stage continues from its newest valid
# checkpoint (--resume auto), and the evaluation is redone. `--fresh` deletes runs/quickstart first.
#
# Environment: JANUS_BUILD_DIR (default build/), QUICKSTART_OUT (default runs/quickstart), QUICKSTART_SKIP_SETUP=1
# to skip tools/setup.sh (e.g. when the dependencies are known to be installed), QUICKSTART_STEPS=N to cap every
# stage at N steps and QUICKSTART_TRAIN=N / QUICKSTART_VAL=M for the Shapes split sizes (a smoke run of the whole
# chain; the report then says so in its title).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${QUICKSTART_OUT:-$root/runs/quickstart}"
if [ "${1:-}" = "--fresh" ]; then
  echo "[quickstart] --fresh: removing $out"
  rm -rf "$out"
fi
mkdir -p "$out"
timings="$out/timings.json"
t_start=$(date +%s)
declare -A took
stamp() { date +%s; }

if [ "${QUICKSTART_SKIP_SETUP:-0}" != "1" ]; then
  t=$(stamp); "$root/tools/setup.sh"; took[setup]=$(($(stamp) - t))
fi
t=$(stamp); "$root/tools/build.sh"; took[build]=$(($(stamp) - t))
bin="${JANUS_BUILD_DIR:-$root/build}/bin"

shapes="$out/shapes"
if [ ! -f "$shapes/shapes_info.json" ] || [ ! -f "$shapes/tokenizer.model" ]; then
  echo "[quickstart] generating the Shapes benchmark in $shapes"
  t=$(stamp)
  "$bin/janus_data" shapes --out "$shapes" --train "${QUICKSTART_TRAIN:-2000}" --val "${QUICKSTART_VAL:-200}" \
    --size 32 --seed 0
  took[data]=$(($(stamp) - t))
else
  echo "[quickstart] Shapes data present: $shapes"
fi

for s in 1 2 3; do
  run="$out/stage$s"
  if [ -f "$run/final/model.safetensors" ]; then
    echo "[quickstart] stage $s already trained: $run/final/model.safetensors"
    continue
  fi
  resume=()
  [ -d "$run/checkpoints" ] && resume=(--resume auto)
  steps=()
  [ -n "${QUICKSTART_STEPS:-}" ] && steps=(--set "train.steps=$QUICKSTART_STEPS" --set "checkpoint.every_steps=0" \
    --set "eval.every_steps=0")
  init=()
  [ "$s" -gt 1 ] && init=(--set "train.init_from=$out/stage$((s - 1))")
  echo "[quickstart] stage $s/3: janus_train --config configs/quickstart/stage$s.yaml ${resume[*]}"
  t=$(stamp)
  "$bin/janus_train" --config "configs/quickstart/stage$s.yaml" --set "train.run_dir=$run" \
    --set "data.train=$shapes" "${init[@]}" "${steps[@]}" "${resume[@]}"
  took[stage$s]=$(($(stamp) - t))
done

echo "[quickstart] evaluating every task on the held-out split (janus_eval --task all)"
t=$(stamp)
"$bin/janus_eval" --task all --run "$out/stage3" --data "$shapes" --split val \
  --out "$out/eval.json" --out-dir "$out/eval"
took[eval]=$(($(stamp) - t))

# Wall times of this invocation (steps skipped because they were already done are not listed).
{
  echo "{"
  first=1
  for k in setup build data stage1 stage2 stage3 eval; do
    [ -n "${took[$k]:-}" ] || continue
    [ $first -eq 1 ] || echo ","
    printf '  "%s": %s' "$k" "${took[$k]}"
    first=0
  done
  printf ',\n  "total": %s\n}\n' "$(($(stamp) - t_start))"
} > "$timings"

title="libjanus quickstart: three stages on Shapes (tiny flavour)"
[ -n "${QUICKSTART_STEPS:-}" ] && title="$title -- SMOKE RUN capped at $QUICKSTART_STEPS steps per stage"
"$bin/janus_report" --out "$out/report.md" --title "$title" \
  --stage "stage 1 (intra-modal)=$out/stage1" --stage "stage 2 (cross-modal)=$out/stage2" \
  --stage "stage 3 (generation)=$out/stage3" --eval "$out/eval.json" --sheets "$out/eval" --timings "$timings"
echo "[quickstart] done: $out/report.md"
