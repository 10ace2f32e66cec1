#!/usr/bin/env bash
# Local all-in-one launcher: the REALM trainer (async refresh), the index-refresh job watching its
# embedder exports, and a retrieval evaluator, as three processes sharing one work directory —
# the same topology as the original TPU set-up (trainer / index builder / evaluator), on one host.
#
#   launch/local_all_in_one.sh [WORK_DIR] [extra pretrain flags...]
#   PYTHON=.venv/bin/python launch/local_all_in_one.sh /tmp/aio --ict_steps=10 \
#       --num_train_steps=30 --refresh_every_steps=10 --eval_queries=50 --batch_size=2
#
# 1. `pretrain --num_train_steps=0` prepares the corpus, annotations, ICT warm start and the first
#    index bundle (each step skipped when its output exists; the call is skipped when the index
#    directory already holds a bundle);
# 2. `refresh_index` (log: WORK_DIR/refresh_index.log) publishes a bundle for each new embedder
#    export of the trainer and stops by itself once the trainer writes TRAINING_DONE;
# 3. `watch_recall` (log: WORK_DIR/evaluator.log, results: WORK_DIR/recall.jsonl) measures
#    recall@5 of each new bundle and stops after the final one (or once the refresher has gone);
# 4. `pretrain --refresh=async` trains, switching to the newest bundle at each refresh point.
#
# The extra flags go to both pretrain calls; --corpus_dir, --annotations_dir, --index_dir,
# --model_dir, --min_recall, --eval_queries (the evaluator's alone) and --input are also applied to the refresher and the
# evaluator (also when given in a --flagfile). More flags for them: REFRESH_FLAGS="..." and
# EVAL_FLAGS="..." (word-split).
#
# Exit status: the trainer's status when it fails (the refresher and evaluator are then stopped);
# 3 when the refresher failed, 4 when the evaluator failed (training itself finished: a refresher
# that dies mid-run leaves the trainer training on the last published index, which it reports as
# a growing index_staleness); 0 otherwise. Re-running the same command resumes: finished stages,
# indexed exports and evaluated bundles are not redone. Ctrl-C / SIGTERM stop all three processes.
set -euo pipefail
WORK=runs/local
if [[ $# -gt 0 && $1 != --* ]]; then WORK=$1; shift; fi
if [[ $WORK == *://* ]]; then  # logs and the preparation check need a local directory
  echo "local_all_in_one.sh: WORK_DIR must be a local directory, got $WORK." >&2
  exit 2
fi
PY=${PYTHON:-.venv/bin/python}

# The work-directory layout (CORPUS, ANNOTATIONS, INDEX, ICT, READER, MODEL) from realm_tf.io.work_dir.
eval "$("$PY" -m realm_tf.io.work_dir "$WORK")"
MIN_RECALL=0.9 EVAL_QUERIES=300 SQUAD=true
args=()
PRETRAIN_ARGS=()  # the extra flags minus the evaluator's own (--eval_queries)
for a in "$@"; do
  [[ $a == --eval_queries=* ]] || PRETRAIN_ARGS+=("$a")
done
for a in "$@"; do  # expand --flagfile=F (one flag a line, # comments) in place, as absl does
  if [[ $a == --flagfile=* && -f ${a#*=} ]]; then
    while read -r line || [[ -n $line ]]; do
      [[ $line == --* ]] && args+=("$line")
    done < "${a#*=}"
  else
    args+=("$a")
  fi
done
for ((i = 0; i < ${#args[@]}; i++)); do
  a=${args[i]}
  case $a in
    --*=*) name=${a%%=*} value=${a#*=} ;;
    *) name=$a value=${args[i + 1]:-} ;;  # "--flag value" form (only value flags matter here)
  esac
  case $name in
    --work_dir) echo "local_all_in_one.sh: give the work dir as the first argument, not --work_dir." >&2
                exit 2 ;;
    --corpus_dir) CORPUS=$value ;;
    --annotations_dir) ANNOTATIONS=$value ;;
    --index_dir) INDEX=$value ;;
    --model_dir) MODEL=$value ;;
    --min_recall) MIN_RECALL=$value ;;
    --eval_queries) EVAL_QUERIES=$value ;;
    --input|--inputs) SQUAD=false ;;  # SQuAD-question recall only makes sense on the default corpus
  esac
done
mkdir -p "$WORK"

PIDS=()  # children not yet reaped (a reaped pid may be reused by another process: never signal it)
reap() {  # reap() PID: waits for the child, forgets it, returns its status
  local rc=0 pid keep=()
  wait "$1" || rc=$?
  for pid in "${PIDS[@]}"; do [[ $pid == "$1" ]] || keep+=("$pid"); done
  PIDS=(${keep[@]+"${keep[@]}"})
  return "$rc"
}
stop_all() {  # TERM the children still running, KILL what is left after 20 s, reap them all
  local pid alive t
  ((${#PIDS[@]})) || return 0
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for ((t = 0; t < 40; t++)); do
    alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.5
  done
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_all EXIT
trap 'echo "local_all_in_one.sh: interrupted; stopping." >&2; exit 130' INT
trap 'echo "local_all_in_one.sh: terminated; stopping." >&2; exit 143' TERM
log() { echo "[local_all_in_one $(date +%H:%M:%S)] $*" >&2; }

# Every child runs in the background and the shell waits for it, so a signal to this script is
# handled at once (a foreground child would delay the trap until it finished).
# Once a bundle is published the preparation is done (the trainer re-checks every stage anyway).
if compgen -G "$INDEX/[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]" > /dev/null; then
  log "$INDEX already holds an index bundle; skipping the preparation step."
else
  log "Preparing corpus, annotations, ICT warm start and the first index in $WORK."
  "$PY" -m realm_tf.launch.pretrain --work_dir="$WORK" ${PRETRAIN_ARGS[@]+"${PRETRAIN_ARGS[@]}"} \
      --num_train_steps=0 --refresh=none &
  PIDS+=($!)
  rc=0; reap $! || rc=$?
  if ((rc)); then log "Preparation failed (status $rc)."; exit "$rc"; fi
fi

echo "=== $(date -Iseconds) local_all_in_one.sh" >> "$WORK/refresh_index.log"
# shellcheck disable=SC2086  # REFRESH_FLAGS / EVAL_FLAGS are word-split on purpose
"$PY" -m realm_tf.launch.refresh_index --model_dir="$MODEL" --corpus_dir="$CORPUS" \
    --index_dir="$INDEX" --min_recall="$MIN_RECALL" --poll_min_seconds=2 \
    --poll_max_seconds=10 ${REFRESH_FLAGS:-} >> "$WORK/refresh_index.log" 2>&1 &
REFRESH_PID=$!
PIDS+=($REFRESH_PID)
echo "=== $(date -Iseconds) local_all_in_one.sh" >> "$WORK/evaluator.log"
# shellcheck disable=SC2086
"$PY" -m realm_tf.launch.watch_recall --work_dir="$WORK" --model_dir="$MODEL" \
    --index_dir="$INDEX" --corpus_dir="$CORPUS" --annotations_dir="$ANNOTATIONS" \
    --eval_queries="$EVAL_QUERIES" --squad="$SQUAD" --max_poll_seconds=10 \
    --wait_pid="$REFRESH_PID" ${EVAL_FLAGS:-} >> "$WORK/evaluator.log" 2>&1 &
EVAL_PID=$!
PIDS+=($EVAL_PID)
log "Refresher pid $REFRESH_PID ($WORK/refresh_index.log), evaluator pid $EVAL_PID" \
    "($WORK/evaluator.log); starting the trainer."

"$PY" -m realm_tf.launch.pretrain --work_dir="$WORK" ${PRETRAIN_ARGS[@]+"${PRETRAIN_ARGS[@]}"} \
    --refresh=async &
TRAIN_PID=$!
PIDS+=($TRAIN_PID)
log "Trainer pid $TRAIN_PID."
refresh_rc= eval_rc=
while kill -0 "$TRAIN_PID" 2>/dev/null; do
  if [[ -z $refresh_rc ]] && ! kill -0 "$REFRESH_PID" 2>/dev/null; then
    refresh_rc=0; reap "$REFRESH_PID" || refresh_rc=$?
    if ((refresh_rc)); then
      log "WARNING: the index-refresh job failed (status $refresh_rc) while training runs; the" \
          "trainer goes on with the last published index (stale). See $WORK/refresh_index.log."
    else  # it stops by itself only once TRAINING_DONE exists
      log "The index-refresh job stopped by itself (TRAINING_DONE)."
    fi
  fi
  if [[ -z $eval_rc ]] && ! kill -0 "$EVAL_PID" 2>/dev/null; then
    eval_rc=0; reap "$EVAL_PID" || eval_rc=$?
    ((eval_rc == 0)) || log "WARNING: the evaluator failed (status $eval_rc); see $WORK/evaluator.log."
  fi
  sleep 1
done
rc=0; reap "$TRAIN_PID" || rc=$?
if ((rc)); then
  log "Trainer failed (status $rc); stopping the refresher and the evaluator."
  exit "$rc"
fi

log "Training done; waiting for the refresher to index the final export."
[[ -n $refresh_rc ]] || { refresh_rc=0; reap "$REFRESH_PID" || refresh_rc=$?; }
[[ -n $eval_rc ]] || { eval_rc=0; reap "$EVAL_PID" || eval_rc=$?; }
log "Index versions in $INDEX: $(cd "$INDEX" && ls -d [0-9]* | tr '\n' ' ')"
[[ -f "$WORK/recall.jsonl" ]] && log "Recall log $WORK/recall.jsonl:" && cat "$WORK/recall.jsonl" >&2
if ((refresh_rc)); then
  log "The index-refresh job failed (status $refresh_rc); see $WORK/refresh_index.log."
  exit 3
fi
if ((eval_rc)); then
  log "The evaluator failed (status $eval_rc); see $WORK/evaluator.log."
  exit 4
fi
log "All done."
