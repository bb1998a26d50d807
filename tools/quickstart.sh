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
# to skip tools/setup.sh (e.g. when the dependencies are known to be installed), QUICKSTART_SKIP_BUILD=1 to use
# the tools already in $JANUS_BUILD_DIR/bin without running tools/build.sh (the ctest smoke run),
# QUICKSTART_STEPS=N to cap every stage at N steps and QUICKSTART_TRAIN=N / QUICKSTART_VAL=M for the Shapes split
# sizes (a smoke run of the whole chain; the report then says so in its title), QUICKSTART_TRAIN3=N for stage 3's
# own training split (default 20000; 0: stage 3 trains on the stages 1-2 split), QUICKSTART_SEED=N for every stage's
# train.seed (default: the configs' seed 0; the Shapes data keeps seed 0, so runs with different seeds share the
# held-out split).
#
# Ablations (issue 12, docs/claims.md): QUICKSTART_ABLATION=router_shared | fusion_dual_stream | vq_conv | stage3_only runs
# the same chain with one piece changed, into runs/quickstart-<ablation> unless QUICKSTART_OUT is set:
#   router_shared       model.router=shared: one plain Linear for both modalities instead of the gated router
#   fusion_dual_stream  model.fusion=dual_stream: the design's block-sparse + LSH fusion instead of the plain
#                       attention the quickstart configs use (dense since session 8: faster and better here)
#   stage3_only         no stages 1-2: stage 3 from scratch with the three stages' steps added up
#   vq_conv             model.vq_encoder=conv: LlamaGen's conv tokenizer encoder (every code sees the whole image)
#                       instead of the cell encoder the configs use since session 12
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
ablation="${QUICKSTART_ABLATION:-}"
model_set=()
seed_set=()
if [ -n "${QUICKSTART_SEED:-}" ]; then
  case "$QUICKSTART_SEED" in
    ''|*[!0-9]*) echo "[quickstart] QUICKSTART_SEED must be a non-negative integer, got '$QUICKSTART_SEED'" >&2; exit 2 ;;
  esac
  seed_set=(--set "train.seed=$QUICKSTART_SEED")
fi
case "$ablation" in
  "") ;;
  router_shared) model_set=(--set model.router=shared) ;;
  fusion_dual_stream) model_set=(--set model.fusion=dual_stream) ;;
  vq_conv) model_set=(--set model.vq_encoder=conv) ;;
  stage3_only) ;;
  fusion_dense)
    echo "[quickstart] QUICKSTART_ABLATION=fusion_dense: the quickstart configs use model.fusion: dense already;" \
      "QUICKSTART_ABLATION=fusion_dual_stream runs the dual-stream fusion" >&2
    exit 2 ;;
  *) echo "[quickstart] QUICKSTART_ABLATION must be router_shared, fusion_dual_stream, vq_conv or stage3_only, got '$ablation'" >&2
     exit 2 ;;
esac
out="${QUICKSTART_OUT:-$root/runs/quickstart${ablation:+-$ablation}}"
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
if [ "${QUICKSTART_SKIP_BUILD:-0}" != "1" ]; then
  t=$(stamp); "$root/tools/build.sh"; took[build]=$(($(stamp) - t))
fi
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
# Stage 3 trains on its own, larger training split (the same generator and seed, so its first images are the ones
# stages 1-2 saw) with the same tokenizer and held-out split. On session 8's stages 1-2, 20000 images instead of
# 2000 raised NLVR2 77.0 -> 84.5 / 82.0 -> 85.5 % and VQA 91.7 -> 93.0 / 86.0 -> 96.5 % (seeds 0 / 1) at the same
# step time (docs/training.md, session 11). QUICKSTART_TRAIN3=0 trains stage 3 on the stages 1-2 set.
train3="${QUICKSTART_TRAIN3:-20000}"
case "$train3" in
  ''|*[!0-9]*) echo "[quickstart] QUICKSTART_TRAIN3 must be a non-negative integer, got '$train3'" >&2; exit 2 ;;
esac
shapes3="$shapes"
if [ "$train3" -gt 0 ]; then
  shapes3="$out/shapes_stage3"
  if [ ! -f "$shapes3/shapes_info.json" ]; then
    echo "[quickstart] generating stage 3's Shapes training split ($train3 images) in $shapes3"
    t=$(stamp)
    "$bin/janus_data" shapes --out "$shapes3" --train "$train3" --val 0 --size 32 --seed 0 --videos 0 --clouds 0 \
      --tokenizer-vocab 0
    took[data]=$((${took[data]:-0} + $(stamp) - t))
  else
    echo "[quickstart] stage 3's Shapes data present: $shapes3"
  fi
fi

stages=(1 2 3)
[ "$ablation" = "stage3_only" ] && stages=(3)
for s in "${stages[@]}"; do
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
  if [ "$ablation" = "stage3_only" ]; then
    init=(--set "train.init_from=")  # from scratch: clear the config's init_from
  elif [ "$s" -gt 1 ]; then
    init=(--set "train.init_from=$out/stage$((s - 1))")
  fi
  if [ "$ablation" = "stage3_only" ] && [ -z "${QUICKSTART_STEPS:-}" ]; then
    # The same total number of steps as the three stages together, none of them spent on stages 1-2.
    total=0
    for c in 1 2 3; do
      n=$(sed -n 's/^  steps: *\([0-9]*\).*/\1/p' "configs/quickstart/stage$c.yaml")
      total=$((total + n))
    done
    steps=(--set "train.steps=$total")
  elif [ "$ablation" = "stage3_only" ]; then
    steps=(--set "train.steps=$((3 * QUICKSTART_STEPS))" --set "checkpoint.every_steps=0" --set "eval.every_steps=0")
  fi
  echo "[quickstart] stage $s/3: janus_train --config configs/quickstart/stage$s.yaml ${resume[*]}"
  t=$(stamp)
  data=(--set "data.train=$shapes")
  [ "$s" = 3 ] && data=(--set "data.train=$shapes3" --set "data.val=$shapes" --set "data.tokenizer=$shapes/tokenizer.model")
  "$bin/janus_train" --config "configs/quickstart/stage$s.yaml" --set "train.run_dir=$run" \
    "${data[@]}" "${init[@]}" "${steps[@]}" "${model_set[@]}" "${seed_set[@]}" "${resume[@]}"
  took[stage$s]=$(($(stamp) - t))
done

echo "[quickstart] evaluating every task on the held-out split (janus_eval --task all)"
# Text->image with classifier-free guidance at scale 2 and temperature 0.5 (stage 3 trains the unconditional prompt).
# Chosen on 200 *training* prompts over scales 1.5 / 2 / 3 x temperatures 0.3 / 0.5 / 0.7 / 1 with the cell-encoder
# tokenizer (GenEval 0.375 there vs 0.245 at the old scale 3, temperature 1: docs/training.md, session 12).
# Retrieval re-ranks each query's top 10 by the caption decoder's log p(text | image) + 20 x the cosine similarity
# (the weight was chosen on 200 training images, not on val). On the session-8 runs it raised held-out R@1 from
# 81.5 / 75.8 to 87.5 / 88.3 % (seed 0) and from 85.0 / 76.6 to 91.5 / 88.6 % (seed 1). The report lists the
# contrastive-only numbers beside them (docs/eval.md).
# Text->image keeps the best of 8 samples per prompt by the model's own VQA head (TIFA-style, the model as its own
# judge): each decoded sample is asked the questions its prompt implies ("is there a red circle?", "how many blue
# shapes are there?", "is the red circle above the blue star?" ...) and scored by the log-probability of the implied
# answers. The GenEval checker is never consulted. Chosen on 200 *training* prompts (session 21, seeds 0 / 1): first
# sample 0.425 / 0.35; best of 8 by the VQA answers 0.515 / 0.51, by the contrastive cosine (session 20's choice)
# 0.495 / 0.425. The report lists each prompt's first sample's score beside it (what no re-ranking gives).
t=$(stamp)
"$bin/janus_eval" --task all --run "$out/stage3" --data "$shapes" --split val \
  --out "$out/eval.json" --out-dir "$out/eval" --cfg --cfg-scale 2 --temperature 0.5 \
  --gen-candidates 8 --gen-rerank-by vqa \
  --rerank 10 --rerank-by caption --rerank-contrastive-weight 20
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
[ -n "$ablation" ] && title="$title -- ABLATION $ablation"
[ -n "${QUICKSTART_SEED:-}" ] && title="$title -- seed $QUICKSTART_SEED"
[ -n "${QUICKSTART_STEPS:-}" ] && title="$title -- SMOKE RUN capped at $QUICKSTART_STEPS steps per stage"
stage_args=()
[ -d "$out/stage1" ] && stage_args+=(--stage "stage 1 (intra-modal)=$out/stage1")
[ -d "$out/stage2" ] && stage_args+=(--stage "stage 2 (cross-modal)=$out/stage2")
stage_args+=(--stage "stage 3 (generation)=$out/stage3")
"$bin/janus_report" --out "$out/report.md" --title "$title" "${stage_args[@]}" --eval "$out/eval.json" --sheets "$out/eval" --timings "$timings"
echo "[quickstart] done: $out/report.md"
