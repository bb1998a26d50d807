#!/usr/bin/env bash
# Fault suite for training (issue 13). Runs each fault test for --trials trials and prints one table
# (test, trials, passed, figure) plus one machine-readable line per test:
#   RESULT <test> trials=<n> passed=<n> figure=<text>
# Tests: kill (kill -9 anywhere, incl. during checkpoint writes, then --resume auto -> bit-identical weights),
#        killstage (the same for janus_train --task stage, stage 2 on a tiny Shapes set),
#        corrupt (damaged newest checkpoint -> detected, reported, previous one used),
#        diskfull (RLIMIT_FSIZE at checkpoint time -> clear error, previous checkpoint intact),
#        fsfault (a real full filesystem (ENOSPC) and a read-only one (EROFS) on a small tmpfs; needs mount
#                 privileges, reported as not run without them),
#        datafault (janus_train stage 2 on a Shapes set with 5% corrupt images + malformed annotations: completes,
#                   reports the skipped counts; 35% corrupt: stops with an error naming data.max_bad_fraction),
#        nonfinite (injected NaN losses: skip, then stop after train.max_nonfinite_steps),
#        ddp (a killed or SIGSTOPped rank -> every other rank exits non-zero within parallel.timeout_s),
#        serve (janus_serve: 10,000 requests from 32 clients, 10% malformed or oversized -> 4xx, valid answers
#               unchanged, RSS start/end, SIGTERM drains in-flight requests; build/bin/janus_bench_serve --stress).
# Usage: tools/reliability.sh [--trials N (default 10 for kill, 4 for killstage)] [--only kill,corrupt,...] [--seed S]
#                             [--build-dir build] [--work DIR]
# Needs build/bin/janus_train and (for ddp) build/tests/janus_tests_reliability. CPU only. Exit 1 if any trial fails.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build"
trials=""
only="kill,killstage,corrupt,diskfull,fsfault,datafault,nonfinite,ddp,serve"
seed=13
work=""
while [ $# -gt 0 ]; do
  case "$1" in
    --trials) trials="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --build-dir) build="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    *) echo "usage: $0 [--trials N] [--only a,b] [--seed S] [--build-dir DIR] [--work DIR]" >&2; exit 2 ;;
  esac
done
# The trials cd into their own directories: make the paths absolute first.
build="$(cd "$build" 2>/dev/null && pwd)" || { echo "reliability: build directory not found" >&2; exit 2; }
train="$build/bin/janus_train"
worker="$build/tests/janus_tests_reliability"
[ -x "$train" ] || { echo "reliability: $train not built (cmake --build build --target janus_train)" >&2; exit 2; }
if [ -z "$work" ]; then work="$(mktemp -d /tmp/janus-reliability.XXXXXX)"; fi
mkdir -p "$work"
RANDOM=$seed
rows=()
status=0

log() { echo "[reliability] $*" >&2; }
# Random integer in [lo, hi].
rnd() { echo $(( $1 + RANDOM % ($2 - $1 + 1) )); }
# A toy run's common settings: 1 thread (exact resume holds for a fixed thread count), dropout on, EMA on, constant
# lr (so a run continued with a larger train.steps follows the same schedule as one started with it).
common=(--task toy --set train.threads=1 --set data.batch_size=8 --set schedule.name=constant --set schedule.warmup_steps=0
        --set train.ema_decay=0.9 --set log.every_steps=10 --set log.level=info)
same_final() { cmp -s "$1/final/model.safetensors" "$2/final/model.safetensors" &&
               cmp -s "$1/final/ema.safetensors" "$2/final/ema.safetensors"; }
newest_step() {  # newest complete checkpoint step in run dir $1 (-1 if none)
  local n
  n=$(ls "$1/checkpoints" 2>/dev/null | grep -E '^step_[0-9]+$' | sort | tail -1)
  if [ -z "$n" ]; then echo -1; else echo $((10#${n#step_})); fi
}
record() {  # test trials passed figure
  rows+=("$1|$2|$3|$4")
  echo "RESULT $1 trials=$2 passed=$3 figure=$4"
  [ "$2" = "$3" ] || status=1
}

# ---------------------------------------------------------------- (a) kill -9 anywhere
# SIGKILL trials shared by kill (toy task) and killstage (StageTask). The caller sets the arrays ka_args (janus_train
# arguments without train.run_dir), ka_first (extra arguments of the reference run and of the run that is killed)
# and ka_resume (extra arguments of the --resume auto run). Arguments: test name, trials, train.steps, lowest and
# highest checkpoint step to kill after, figure prefix. Pass = the resumed run's final model + EMA are byte-identical
# to the uninterrupted reference run's.
kill_trials() {
  local name=$1 n=$2 steps=$3 lo=$4 hi=$5 what=$6 passed=0 midwrite=0 kills=0
  local ref="$work/${name}_ref"
  rm -rf "$ref"
  "$train" "${ka_args[@]}" "${ka_first[@]}" --set train.run_dir="$ref" > "$ref.log" 2>&1 ||
    { log "$name: reference run failed"; tail -5 "$ref.log" >&2; record "$name" "$n" 0 "reference run failed"; return; }
  for ((t = 0; t < n; t++)); do
    local rd="$work/${name}_$t" target delay mode attempt landed=0 killed_at torn
    # Even trials: kill right when a checkpoint temp directory appears (mid-write); odd: after a random delay.
    if ((t % 2 == 0)); then mode=write; else mode=delay; fi
    # A kill that arrives after the run already finished is not a trial: draw a new target (at most 3 times).
    for ((attempt = 0; attempt < 3 && !landed; attempt++)); do
      rm -rf "$rd"
      target=$(rnd "$lo" "$hi")
      delay=$(rnd 0 400)
      "$train" "${ka_args[@]}" "${ka_first[@]}" --set train.run_dir="$rd" > "$rd.log1" 2>&1 &
      local pid=$!
      local waited=0
      while kill -0 $pid 2>/dev/null && (( $(newest_step "$rd") < target )) && ((waited < 6000)); do
        sleep 0.01; ((waited++))
      done
      if [ $mode = write ]; then
        waited=0
        while kill -0 $pid 2>/dev/null && ! compgen -G "$rd/checkpoints/*.tmp.*" > /dev/null && ((waited < 20000)); do
          ((waited++))
        done
      else
        sleep "$(printf '0.%03d' "$delay")"
      fi
      killed_at=$(newest_step "$rd")
      kill -9 $pid 2>/dev/null
      wait $pid 2>/dev/null
      if [ -f "$rd/final/model.safetensors" ]; then
        log "$name trial $t: the run finished before the kill (target step $target); new target"
      else
        landed=1; ((kills++))
      fi
    done
    ((landed)) || { log "$name trial $t: no kill landed in 3 attempts; counted as failed"; continue; }
    torn=no
    if compgen -G "$rd/checkpoints/*.tmp.*" > /dev/null; then torn=yes; ((midwrite++)); fi
    if "$train" "${ka_args[@]}" "${ka_resume[@]}" --set train.run_dir="$rd" --resume auto > "$rd.log2" 2>&1 &&
       same_final "$ref" "$rd"; then
      ((passed++))
      log "$name trial $t: mode=$mode killed after checkpoint $killed_at (torn temp dir: $torn): identical"
    else
      log "$name trial $t: mode=$mode killed after checkpoint $killed_at: FAILED"; tail -5 "$rd.log2" >&2
    fi
  done
  record "$name" "$n" "$passed" "${what}$kills SIGKILLs, $midwrite during a checkpoint write; final model+EMA byte-identical in $passed"
}

test_kill() {
  local steps=50
  ka_args=("${common[@]}" --set train.steps=$steps --set checkpoint.every_steps=1 --set checkpoint.keep_last=2)
  ka_first=(--toy-step-sleep-ms 10)
  ka_resume=(--toy-step-sleep-ms 0)
  kill_trials kill "${trials:-10}" $steps 2 $((steps - 10)) ""
}

# ---------------------------------------------------------------- (a2) kill -9 during a stage-2 StageTask run
# janus_train --task stage, stage 2 (contrastive + ITM + captioning) on a tiny Shapes set (32 train images, 32 px),
# a checkpoint every step, EMA on, 2 loader workers: SIGKILL after a random checkpoint (or during its write), then
# --resume auto must end with the uninterrupted run's bytes. Covers what the toy task does not: the stage task's
# data cursors, loader workers, masking RNG and the stage's extra state in the checkpoint.
test_killstage() {
  local gen="$build/bin/janus_data" steps=8 d="$work/killstage_data"
  [ -x "$gen" ] || { record killstage 0 0 "janus_data not built"; return; }
  if [ ! -f "$d/shapes/captions_train.json" ]; then
    rm -rf "$d"; mkdir -p "$d"
    "$gen" shapes --out "$d/shapes" --train 32 --val 8 --size 32 --seed 3 --videos 0 --clouds 0 \
      --tokenizer-vocab 128 > "$d/gen.log" 2>&1 || { tail -5 "$d/gen.log" >&2; record killstage 0 0 "janus_data shapes failed"; return; }
  fi
  ka_args=(--task stage --set model.flavour=tiny --set model.image_size=32 --set model.max_text_len=24
           --set data.format=shapes --set data.train="$d/shapes" --set data.batch_size=4 --set data.num_workers=2
           --set train.stage=2 --set train.steps=$steps --set train.threads=1 --set train.device=cpu
           --set train.ema_decay=0.9 --set schedule.warmup_steps=2 --set checkpoint.every_steps=1
           --set checkpoint.keep_last=2 --set log.every_steps=1 --set log.tensorboard=false --set eval.every_steps=0)
  ka_first=()
  ka_resume=()
  kill_trials killstage "${trials:-4}" $steps 1 $((steps - 3)) "stage 2, $steps steps of 4: "
}

# ---------------------------------------------------------------- shared base for corrupt/diskfull
# A 20-step run with checkpoints at 10 and 20, and the uninterrupted 40-step reference.
make_base() {
  [ -d "$work/base20" ] && return 0
  local args=("${common[@]}" --set checkpoint.every_steps=10 --set checkpoint.keep_last=3)
  "$train" "${args[@]}" --set train.steps=20 --set train.run_dir="$work/base20" > "$work/base20.log" 2>&1 &&
    "$train" "${args[@]}" --set train.steps=40 --set train.run_dir="$work/ref40" > "$work/ref40.log" 2>&1
}
resume40() {  # run dir, log, extra args...
  local rd="$1" lg="$2"; shift 2
  "$train" "${common[@]}" --set checkpoint.every_steps=10 --set checkpoint.keep_last=3 --set train.steps=40 \
    --set train.run_dir="$rd" --resume auto "$@" > "$lg" 2>&1
}
flip_byte() {  # file offset
  local b; b=$(od -An -tu1 -j"$2" -N1 "$1" | tr -d ' ')
  printf "$(printf '\\%03o' $((b ^ 16)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# ---------------------------------------------------------------- (b) corrupt checkpoints
test_corrupt() {
  make_base || { record corrupt 0 0 "base run failed"; return; }
  local kinds=(truncated bitflip header missing manifest manifest_type all) passed=0 n=0
  for k in "${kinds[@]}"; do
    ((n++))
    local rd="$work/corrupt_$k" c
    rm -rf "$rd"; cp -a "$work/base20" "$rd"
    c="$rd/checkpoints/step_000000020"
    case $k in
      truncated) truncate -s $(( $(stat -c %s "$c/model.safetensors") / 2 )) "$c/model.safetensors" ;;
      bitflip) flip_byte "$c/state.safetensors" $(( $(stat -c %s "$c/state.safetensors") - 7 )) ;;
      header) printf '\xff\xff\xff\xff\xff\xff\xff\x7f' | dd of="$c/model.safetensors" bs=1 seek=0 conv=notrunc status=none ;;
      missing) rm "$c/state.json" ;;
      manifest) truncate -s 40 "$c/manifest.json" ;;
      manifest_type) printf '{"format":"janus-checkpoint-1","step":20,"files":{"config.yaml":7,"model.safetensors":7,"state.json":7,"state.safetensors":7}}' > "$c/manifest.json" ;;
      all) truncate -s 10 "$c/model.safetensors"; rm "$rd/checkpoints/step_000000010/state.safetensors" ;;
    esac
    local ok=1
    # An explicit --resume of the damaged checkpoint must be refused (exit 2) naming it. (Quick mode, --trials 1,
    # checks this for two kinds only, to stay under a minute.)
    if [ "${trials:-10}" -gt 1 ] || [ $k = header ] || [ $k = manifest_type ]; then
      "$train" "${common[@]}" --set train.steps=40 --set train.run_dir="$rd.explicit" --resume "$c" > "$rd.explicit.log" 2>&1
      local rc=$?
      [ $rc -eq 2 ] && grep -q "corrupt" "$rd.explicit.log" || { ok=0; log "corrupt $k: explicit --resume gave exit $rc"; }
    fi
    if resume40 "$rd" "$rd.log"; then :; else ok=0; log "corrupt $k: --resume auto failed"; tail -3 "$rd.log" >&2; fi
    grep -q "step_000000020 is corrupt" "$rd.log" || { ok=0; log "corrupt $k: no corruption warning"; }
    if [ $k = all ]; then
      grep -q "no valid checkpoint" "$rd.log" || { ok=0; log "corrupt all: did not start fresh"; }
    else
      grep -q "resumed from .*step_000000010" "$rd.log" || { ok=0; log "corrupt $k: did not fall back to step 10"; }
    fi
    same_final "$work/ref40" "$rd" || { ok=0; log "corrupt $k: final weights differ from the uninterrupted run"; }
    ((ok)) && ((passed++))
    log "corrupt $k: $([ $ok = 1 ] && echo ok || echo FAILED): $(grep -o 'is corrupt (.*)' "$rd.log" | head -1)"
  done
  record corrupt "$n" "$passed" "kinds: ${kinds[*]}; all detected, fell back, identical final weights"
}

# ---------------------------------------------------------------- (c) disk full at checkpoint time
# Simulated with RLIMIT_FSIZE (prlimit --fsize): a write past the limit fails with EFBIG ("File too large") because
# SIGXFSZ is ignored (trap '' XFSZ; ignored signals stay ignored across exec). This works as root, where chmod does
# not stop writes. The limit is below the size of state.safetensors, so the first checkpoint after resuming fails.
test_diskfull() {
  make_base || { record diskfull 0 0 "base run failed"; return; }
  local n=${trials:-3} passed=0
  local limit=$(( $(stat -c %s "$work/base20/checkpoints/step_000000020/state.safetensors") - 100 ))
  for ((t = 0; t < n; t++)); do
    local rd="$work/diskfull_$t" ok=1 before after
    rm -rf "$rd"; cp -a "$work/base20" "$rd"
    before=$(cd "$rd/checkpoints" && sha256sum step_?????????/* | sha256sum)
    (trap '' XFSZ; exec prlimit --fsize=$((limit - t * 50)) "$train" "${common[@]}" --set checkpoint.every_steps=10 \
       --set checkpoint.keep_last=3 --set train.steps=40 --set train.run_dir="$rd" --resume auto) > "$rd.log1" 2>&1
    local rc=$?
    after=$(cd "$rd/checkpoints" && sha256sum step_?????????/* | sha256sum)
    [ $rc -eq 1 ] || { ok=0; log "diskfull $t: exit $rc, expected 1"; }
    grep -q "File too large" "$rd.log1" || { ok=0; log "diskfull $t: no clear error"; tail -3 "$rd.log1" >&2; }
    [ "$before" = "$after" ] || { ok=0; log "diskfull $t: existing checkpoints changed"; }
    [ "$(newest_step "$rd")" = 20 ] || { ok=0; log "diskfull $t: newest complete checkpoint is not step 20"; }
    resume40 "$rd" "$rd.log2" && same_final "$work/ref40" "$rd" || { ok=0; log "diskfull $t: resume after freeing space failed"; }
    ((ok)) && ((passed++))
    log "diskfull $t: $([ $ok = 1 ] && echo ok || echo FAILED): $(grep -o 'cannot write.*' "$rd.log1" | head -1)"
  done
  record diskfull "$n" "$passed" "RLIMIT_FSIZE ~${limit} B: exit 1 'File too large', previous checkpoints byte-identical, resume identical"
}

# ---------------------------------------------------------------- (c2) real ENOSPC / EROFS on a tmpfs
# The run directory lives on a 16 MiB tmpfs. enospc: a filler file leaves less free space than one checkpoint
# needs, so the checkpoint write at step 30 fails with ENOSPC ("No space left on device"). erofs: the filesystem
# is remounted read-only before resuming (EROFS even for root). Pass = exit 1 with that error named, the existing
# checkpoints byte-identical, and after freeing space / remounting rw, --resume auto finishes identical to the
# uninterrupted run. Needs mount privileges (root in a container with CAP_SYS_ADMIN); without them the test is
# reported as not run (0 trials).
test_fsfault() {
  make_base || { record fsfault 0 0 "base run failed"; return; }
  local mnt="$work/fsfault_mnt"
  mkdir -p "$mnt"
  if ! mount -t tmpfs -o size=16m tmpfs "$mnt" 2>/dev/null; then
    rmdir "$mnt"; record fsfault 0 0 "not run: mounting a tmpfs is not permitted here"; return
  fi
  local passed=0 n=0 kinds=(enospc erofs) errs=()
  for k in "${kinds[@]}"; do
    ((n++))
    local rd="$mnt/run_$k" ok=1 before after rc want
    cp -a "$work/base20" "$rd"
    before=$(cd "$rd/checkpoints" && sha256sum step_?????????/* | sha256sum)
    if [ $k = enospc ]; then
      want="No space left on device"
      # Leave room for model.safetensors (and the step's metrics line) but not for state.safetensors as well.
      local avail model fill
      avail=$(df --output=avail -B1 "$mnt" | tail -1)
      model=$(stat -c %s "$rd/checkpoints/step_000000020/model.safetensors")
      fill=$(( avail - model - 12288 ))
      fallocate -l "$fill" "$mnt/filler" 2>/dev/null || dd if=/dev/zero of="$mnt/filler" bs=4096 count=$((fill / 4096)) status=none
    else
      want="Read-only file system"
      mount -o remount,ro "$mnt"
    fi
    resume40 "$rd" "$work/fsfault_$k.log1"; rc=$?
    after=$(cd "$rd/checkpoints" && sha256sum step_?????????/* | sha256sum)
    [ $rc -eq 1 ] || { ok=0; log "fsfault $k: exit $rc, expected 1"; tail -3 "$work/fsfault_$k.log1" >&2; }
    grep -q "$want" "$work/fsfault_$k.log1" || { ok=0; log "fsfault $k: no '$want' error"; tail -3 "$work/fsfault_$k.log1" >&2; }
    [ "$before" = "$after" ] || { ok=0; log "fsfault $k: existing checkpoints changed"; }
    [ "$(newest_step "$rd")" = 20 ] || { ok=0; log "fsfault $k: newest complete checkpoint is not step 20"; }
    if [ $k = enospc ]; then rm -f "$mnt/filler"; else mount -o remount,rw "$mnt"; fi
    resume40 "$rd" "$work/fsfault_$k.log2" && same_final "$work/ref40" "$rd" ||
      { ok=0; log "fsfault $k: resume after the fault was cleared failed"; tail -3 "$work/fsfault_$k.log2" >&2; }
    errs+=("$k: $(grep -o -m1 "[^ ]*$want" "$work/fsfault_$k.log1" | head -1)")
    ((ok)) && ((passed++))
    log "fsfault $k: $([ $ok = 1 ] && echo ok || echo FAILED): $(grep -m1 "$want" "$work/fsfault_$k.log1")"
    rm -rf "$rd"
  done
  umount "$mnt" && rmdir "$mnt"
  record fsfault "$n" "$passed" "16 MiB tmpfs: ENOSPC in the step-30 checkpoint write, EROFS at resume start-up: exit 1 naming file + error, previous checkpoints byte-identical, resume identical"
}

# ---------------------------------------------------------------- (c3) data faults through janus_train
# A Shapes set (100 train images x 4 captions, 32 px) whose images are damaged in five ways (truncated, random
# bytes, empty, deleted, text) and whose captions_train.json has malformed entries; janus_train stage 2
# (contrastive, tiny flavour) for 30 steps of 8 with data.max_bad_fraction 0.15. ok: 5 images (5 %) + 8 of 400
# captions malformed -> exit 0, final weights, the skipped counts in the log. over: 35 images (35 %) -> exit 2 with
# "more than data.max_bad_fraction", no final weights.
damage_shapes() {  # dir n_bad_images n_bad_captions
  local d="$1" nb="$2" nc="$3" i f
  for ((i = 0; i < nb; i++)); do
    f="$d/train/$(printf '%012d' $((1 + i * 100 / nb))).png"
    case $((i % 5)) in
      0) truncate -s $(( $(stat -c %s "$f") * 2 / 5 )) "$f" ;;
      1) head -c "$(stat -c %s "$f")" /dev/urandom > "$f.x" && mv "$f.x" "$f" ;;
      2) : > "$f" ;;
      3) rm -f "$f" ;;
      4) echo "not an image" > "$f" ;;
    esac
  done
  python3 - "$d/captions_train.json" "$nc" <<'PY'
import json, sys
p, n = sys.argv[1], int(sys.argv[2])
doc = json.load(open(p))
bad = [{"image_id": 1, "caption": 7}, {"image_id": 987654321, "caption": "orphan"}, {"image_id": "one", "caption": "x"}, None]
for k in range(n):
    doc["annotations"][7 + 40 * k] = bad[k % len(bad)]
json.dump(doc, open(p, "w"))
PY
}
test_datafault() {
  local gen="$build/bin/janus_data" passed=0 n=2
  [ -x "$gen" ] || { record datafault 0 0 "janus_data not built"; return; }
  local args=(--set model.flavour=tiny --set model.image_size=32 --set model.max_text_len=24 --set data.format=shapes
              --set data.batch_size=8 --set data.num_workers=1 --set data.max_bad_fraction=0.15 --set train.stage=2
              --set "train.tasks=[contrastive]" --set train.steps=30 --set train.threads=1 --set train.device=cpu
              --set checkpoint.every_steps=0 --set log.every_steps=10 --set log.tensorboard=false
              --set eval.every_steps=0)
  local k figure=""
  for k in ok over; do
    local d="$work/datafault_$k" ok=1 rc
    rm -rf "$d"; mkdir -p "$d"
    "$gen" shapes --out "$d/shapes" --train 100 --val 8 --size 32 --seed 3 --videos 0 --clouds 0 \
      --tokenizer-vocab 128 > "$d/gen.log" 2>&1 || { record datafault 0 0 "janus_data shapes failed"; return; }
    if [ $k = ok ]; then damage_shapes "$d/shapes" 5 8; else damage_shapes "$d/shapes" 35 0; fi
    "$train" "${args[@]}" --set data.train="$d/shapes" --set train.run_dir="$d/run" > "$d/train.log" 2>&1
    rc=$?
    if [ $k = ok ]; then
      [ $rc -eq 0 ] || { ok=0; log "datafault ok: exit $rc"; tail -5 "$d/train.log" >&2; }
      [ -f "$d/run/final/model.safetensors" ] || { ok=0; log "datafault ok: no final weights"; }
      grep -q "skipped 8 of 500 malformed annotation entries" "$d/train.log" ||
        { ok=0; log "datafault ok: no annotation skip count"; }
      local last; last=$(grep -o "[0-9]* of [0-9]* skipped so far" "$d/train.log" | tail -1)
      [ -n "$last" ] || { ok=0; log "datafault ok: no skipped-sample count"; }
      figure="5% corrupt images + 8 malformed captions: completed; skipped 8 of 500 annotation entries, ${last% so far} samples"
    else
      [ $rc -eq 2 ] || { ok=0; log "datafault over: exit $rc, expected 2"; tail -5 "$d/train.log" >&2; }
      grep -q "more than data.max_bad_fraction" "$d/train.log" || { ok=0; log "datafault over: no clear error"; }
      [ ! -f "$d/run/final/model.safetensors" ] || { ok=0; log "datafault over: final weights written"; }
      figure="$figure; 35% corrupt: exit $rc '$(grep -o 'data: [0-9]* of [0-9]* samples' "$d/train.log" | head -1)... more than data.max_bad_fraction'"
    fi
    ((ok)) && ((passed++))
    log "datafault $k: $([ $ok = 1 ] && echo ok || echo FAILED)"
  done
  record datafault "$n" "$passed" "$figure"
}

# ---------------------------------------------------------------- (d) non-finite losses
test_nonfinite() {
  local passed=0 n=2 a="$work/nf5" b="$work/nf6" c="$work/nfstop"
  rm -rf "$a" "$b" "$c"
  # 1. One NaN loss at step 5 of 6: the step is skipped, so the weights equal a clean 5-step run's; counted.
  local ok=1
  "$train" "${common[@]}" --set train.steps=5 --set train.run_dir="$a" > "$a.log" 2>&1 || ok=0
  "$train" "${common[@]}" --set train.steps=6 --set 'train.debug_nonfinite_steps=[5]' --set train.run_dir="$b" \
    > "$b.log" 2>&1 || ok=0
  cmp -s "$a/final/model.safetensors" "$b/final/model.safetensors" || { ok=0; log "nonfinite: skipped step changed weights"; }
  tail -1 "$b/metrics.jsonl" | grep -Eq '"nonfinite_steps":1(\.0)?[,}]' || { ok=0; log "nonfinite: not counted in metrics.jsonl"; }
  ((ok)) && ((passed++))
  # 2. Three consecutive NaN steps with max_nonfinite_steps 3: exit 1 naming the module, no checkpoint after it.
  ok=1
  "$train" "${common[@]}" --set train.steps=20 --set checkpoint.every_steps=2 --set train.max_nonfinite_steps=3 \
    --set 'train.debug_nonfinite_steps=[6,7,8]' --set train.run_dir="$c" > "$c.log" 2>&1
  local rc=$?
  [ $rc -eq 1 ] || { ok=0; log "nonfinite stop: exit $rc, expected 1"; }
  grep -q "training stopped: gradients of module '.*' .* non-finite for 3 consecutive steps" "$c.log" ||
    { ok=0; log "nonfinite stop: message"; tail -3 "$c.log" >&2; }
  # steps 6, 7 (checkpoint at 8 holds the step-5 weights), 8 -> stop at step 9: no checkpoint after 8.
  [ "$(newest_step "$c")" = 8 ] || { ok=0; log "nonfinite stop: newest checkpoint $(newest_step "$c"), expected 8"; }
  grep -q "last good checkpoint: .*step_000000008" "$c.log" || { ok=0; log "nonfinite stop: last good checkpoint not named"; }
  [ -f "$c/final/model.safetensors" ] && { ok=0; log "nonfinite stop: final weights written after failure"; }
  ((ok)) && ((passed++))
  record nonfinite "$n" "$passed" "1 NaN step skipped (weights = clean 5-step run); 3 consecutive -> exit 1, newest ckpt = last good"
}

# ---------------------------------------------------------------- (e) DDP: killed or hung rank
test_ddp() {
  [ -x "$worker" ] || { record ddp 0 0 "$worker not built"; return; }
  local timeout_s=5 world=3 passed=0 n=0 worst=0 worst_hang=0
  local cases=("kill 1" "kill 0" "hang 1")
  local reps=${trials:-2}; ((reps > 3)) && reps=3
  for ((rep = 0; rep < reps; rep++)); do
    for cs in "${cases[@]}"; do
      set -- $cs
      local fault=$1 victim=$2
      local d="$work/ddp_${fault}${victim}_$rep" ok=1 port
      ((n++)); rm -rf "$d"; mkdir -p "$d"
      port=$(rnd 20000 60000)
      local pids=()
      for ((r = 0; r < world; r++)); do
        (cd "$d" && RANK=$r WORLD_SIZE=$world MASTER_ADDR=127.0.0.1 MASTER_PORT=$port JANUS_REL_WORKER=ddp \
           JANUS_REL_FAULT=$fault JANUS_REL_VICTIM=$victim JANUS_REL_TIMEOUT_S=$timeout_s \
           timeout -s KILL 120 "$worker" > "log$r" 2>&1; echo $? > "rc$r"; date +%s.%N > "end$r") 2>/dev/null &
        pids+=($!)
      done
      for ((r = 0; r < world; r++)); do
        ((r == victim)) && continue
        wait "${pids[$r]}"
      done
      # The hung rank is stopped, not dead: end it (by the pid it wrote before stopping itself).
      [ -f "$d/victim_pid" ] && kill -KILL "$(cat "$d/victim_pid")" 2>/dev/null
      wait "${pids[$victim]}" 2>/dev/null
      local t0 secs
      t0=$(cat "$d/fault_time" 2>/dev/null || echo 0)
      for ((r = 0; r < world; r++)); do
        ((r == victim)) && continue
        local rc; rc=$(cat "$d/rc$r")
        secs=$(awk -v a="$t0" -v b="$(cat "$d/end$r")" 'BEGIN { printf "%.1f", b - a }')
        if [ $fault = hang ]; then
          awk -v s="$secs" -v w="$worst_hang" 'BEGIN { exit !(s > w) }' && worst_hang=$secs
        else
          awk -v s="$secs" -v w="$worst" 'BEGIN { exit !(s > w) }' && worst=$secs
        fi
        [ "$rc" != 0 ] && [ "$rc" != 137 ] || { ok=0; log "ddp $fault rank $victim: rank $r exit $rc"; tail -3 "$d/log$r" >&2; }
        # within timeout_s + the 3 s heartbeat diagnosis + 5 s slack for a loaded machine
        awk -v s="$secs" -v l=$((timeout_s + 8)) 'BEGIN { exit !(s <= l) }' ||
          { ok=0; log "ddp $fault rank $victim: rank $r took ${secs}s"; }
        grep -q "lost rank $victim" "$d/log$r" || { ok=0; log "ddp $fault rank $victim: rank $r did not name the lost rank"; }
      done
      ((ok)) && ((passed++))
      log "ddp $fault rank $victim: $([ $ok = 1 ] && echo ok || echo FAILED)"
    done
  done
  record ddp "$n" "$passed" "world 3, timeout_s $timeout_s: kill rank 1, kill rank 0 (store host), SIGSTOP rank 1; slowest survivor exit ${worst}s after a kill, ${worst_hang}s after a hang"
}

# ---------------------------------------------------------------- (f) the inference server under hostile load
test_serve() {
  local bench="$build/bin/janus_bench_serve" n=${trials:-1} passed=0 figure="" t
  [ -x "$bench" ] && [ -x "$build/bin/janus_serve" ] || { record serve 0 0 "$bench or janus_serve not built"; return; }
  ((n > 3)) && n=3
  for ((t = 0; t < n; t++)); do
    "$bench" --stress --requests 10000 --clients 32 --bad-fraction 0.1 > "$work/serve_$t.log" 2>&1
    local line; line=$(grep '^RESULT serve' "$work/serve_$t.log")
    sed -n '/^stress:/,/^RESULT/p' "$work/serve_$t.log" | grep -v '^RESULT' >&2
    if [ -n "$line" ] && echo "$line" | grep -q 'passed=1'; then ((passed++)); fi
    figure=$(echo "$line" | sed 's/.*figure=//')
  done
  record serve "$n" "$passed" "${figure:-no result (see $work/serve_0.log)}"
}

IFS=, read -ra selected <<< "$only"
for t in "${selected[@]}"; do
  case $t in
    kill|killstage|corrupt|diskfull|fsfault|datafault|nonfinite|ddp|serve) log "running $t"; "test_$t" ;;
    *) echo "unknown test $t" >&2; exit 2 ;;
  esac
done

echo
printf '| %-9s | %6s | %6s | %s\n' test trials passed figure
printf '|%s|%s|%s|%s\n' ----------- -------- -------- ------------------------------------------------
for r in "${rows[@]}"; do
  IFS='|' read -r a b c d <<< "$r"
  printf '| %-9s | %6s | %6s | %s\n' "$a" "$b" "$c" "$d"
done
exit $status
