#!/usr/bin/env bash
# Local all-in-one launcher: the REALM trainer (async refresh), the index-refresh job watching its
# embedder exports, and a retrieval evaluator, as three processes sharing one work directory —
# the same topology as the original TPU set-up (trainer / index builder / evaluator), on one host.
#
#   launch/local_all_in_one.sh [WORK_DIR] [extra pretrain flags...]
#
# The corpus, annotations, ICT warm start and first index are prepared by a first pretrain call
# with --num_train_steps=0; the refresher stops by itself when the trainer writes TRAINING_DONE.
set -euo pipefail
WORK=${1:-runs/local}
shift || true
PY=${PYTHON:-.venv/bin/python}

"$PY" -m realm_tf.launch.pretrain --work_dir="$WORK" --num_train_steps=0 --refresh=none "$@"
"$PY" -m realm_tf.launch.refresh_index --model_dir="$WORK/realm" --corpus_dir="$WORK/corpus" \
    --index_dir="$WORK/index" > "$WORK/refresh_index.log" 2>&1 &
REFRESH_PID=$!
"$PY" -m realm_tf.launch.watch_recall --work_dir="$WORK" > "$WORK/evaluator.log" 2>&1 &
EVAL_PID=$!
trap 'kill $REFRESH_PID $EVAL_PID 2>/dev/null || true' EXIT
"$PY" -m realm_tf.launch.pretrain --work_dir="$WORK" --refresh=async "$@"
wait $REFRESH_PID || true
kill $EVAL_PID 2>/dev/null || true
