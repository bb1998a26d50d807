#!/usr/bin/env bash
# ctest quickstart.smoke: the shipped configs/quickstart/*.yaml run end to end through tools/quickstart.sh with every
# stage capped at 2 steps on a 64/16-image Shapes split: data, stage 1 -> 2 -> 3, janus_eval --task all,
# report.md. A second invocation must resume (skip the three trained stages) and redo only the evaluation.
# Usage: quickstart_smoke.sh BUILD_DIR OUT_DIR
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$1"
out="$2"
fail() { echo "quickstart.smoke: $*" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
export JANUS_BUILD_DIR="$build" QUICKSTART_OUT="$out" QUICKSTART_SKIP_SETUP=1 QUICKSTART_SKIP_BUILD=1
export QUICKSTART_STEPS=2 QUICKSTART_TRAIN=64 QUICKSTART_VAL=16 QUICKSTART_TRAIN3=96
"$root/tools/quickstart.sh" --fresh > "$out.log" 2>&1 || { tail -30 "$out.log"; fail "first run failed (log: $out.log)"; }
[ -f "$out/report.md" ] || fail "no report.md"
grep -q "SMOKE RUN capped at 2 steps" "$out/report.md" || fail "report.md does not say it is a smoke run"
for s in 1 2 3; do
  [ -f "$out/stage$s/final/model.safetensors" ] || fail "stage $s wrote no final/model.safetensors"
done
# Stage 3 trained on its own (larger) Shapes split, with stages 1-2's tokenizer and held-out split.
python3 - "$out/shapes_stage3/shapes_info.json" <<'PY' || fail "no 96-image stage-3 Shapes split"
import json, sys
assert json.load(open(sys.argv[1]))["splits"]["train"] == 96
PY
grep -q "train: \"$out/shapes_stage3\"" "$out/stage3/config.yaml" || fail "stage 3 did not train on shapes_stage3"
grep -q "tokenizer: \"$out/shapes/tokenizer.model\"" "$out/stage3/config.yaml" || fail "stage 3 used another tokenizer"
# Every task was evaluated (janus_eval --task all writes one entry per task).
python3 - "$out/eval.json" <<'PY' || fail "eval.json lacks a task's metrics"
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
missing = [t for t in ("retrieval", "caption", "vqa", "nlvr2", "recon", "generate") if not m.get(t)]
if missing:
    sys.exit(f"eval.json: no metrics for {missing}")
PY
# (A 2-step model misses retrieval queries, so the misses table is there too.)
for m in "R@1" "top 10 re-ranked by caption" "before re-ranking" "R@1 ceiling" "CIDEr" "VQA" "NLVR2" "PSNR" "GenEval" \
  "best of 8 samples by the model's vqa score" "first sample, without best-of-N" \
  'VQA "how many" questions' 'statements (%; always the frequent label' "Retrieval misses at rank 1" "caption position: relation captions with the right axis"; do
  grep -q "$m" "$out/report.md" || fail "report.md has no $m row"
done
# Re-running resumes: the trained stages are skipped, the evaluation and report are redone.
"$root/tools/quickstart.sh" > "$out.resume.log" 2>&1 || { tail -30 "$out.resume.log"; fail "second run failed"; }
n=$(grep -c "already trained" "$out.resume.log" || true)
[ "$n" = "3" ] || fail "second run skipped $n of 3 trained stages (log: $out.resume.log)"
grep -q "stage [0-9]/3: janus_train" "$out.resume.log" && fail "second run trained again"
echo "quickstart.smoke: ok ($out)"
