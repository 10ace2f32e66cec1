#!/usr/bin/env bash
# The main job end to end on the embedded corpus (what `make demo` runs):
#   1. REALM pre-training (corpus → annotations → retriever start → reader warm-up → REALM with
#      inline index refresh), printing the held-out figures before and after;
#   2. open-QA fine-tuning on SQuAD-open train from REALM's retriever: its query tower and its
#      last index (frozen while fine-tuning, as ORQA/REALM do), with a MiniLM reader trained on
#      the gold block when retrieval misses it (the REALM run's knowledge-augmented encoder as
#      the reader's start measured worse: EM 21 vs 40 at 300 steps; see README);
#   3. EM on the first SQuAD-open dev questions (articles fine-tuning never saw), dense retrieval
#      and BM25 with the same reader;
#   4. the SavedModel export in TF Serving's layout, served by our TF-Serving-protocol gRPC server
#      on loopback, answering a dev question through the client.
# Every stage resumes from its outputs in $WORK_DIR when re-run.
set -euo pipefail
PY=${PY:-.venv/bin/python}
W=${WORK_DIR:-runs/default}
PORT=${PORT:-8500}
QUESTION=${QUESTION:-"In what year was Nikola Tesla born?"}
EVAL_EXAMPLES=${EVAL_EXAMPLES:-100}
# The inline Python below is not a realm_tf CLI (which quiets TensorFlow's C++ notices itself).
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}

echo "== 1/4 REALM pre-training (python -m realm_tf.launch.pretrain)"
"$PY" -m realm_tf.launch.pretrain --work_dir="$W"

# REALM's index already carries the main job's score scale (--retrieval_score_scale=0.05), so
# fine-tuning keeps its scores as they are.
echo "== 2/4 Open-QA fine-tuning on SQuAD-open train, from REALM's retriever and index"
"$PY" -m realm_tf.launch.finetune --dataset=squad_open --index_dir="$W/index" \
    --corpus_dir="$W/corpus" --reader_init_checkpoint=minilm --model_dir="$W/finetune" \
    --reader_positives=gold --reader_seq_length=160 --reader_query_length=32 \
    --train_reader_beam_size=2 --retrieval_score_scale=1.0 --retriever_beam_size=256 \
    --batch_size=16 --learning_rate=1e-4 --num_train_steps=${FINETUNE_STEPS:-300} \
    --checkpoint_every=100 --log_every=25

echo "== 3/4 EM on the first $EVAL_EXAMPLES SQuAD-open dev questions: dense, then BM25"
for retriever in dense bm25; do
  "$PY" -m realm_tf.launch.evaluate --model_dir="$W/finetune" --dataset=squad_open --split=dev \
      --max_examples="$EVAL_EXAMPLES" --retriever=$retriever \
      --output_prefix="$W/finetune/eval_dev_$retriever" > "$W/finetune/eval_dev_$retriever.out"
done
"$PY" - "$W/finetune" <<'PYEOF'
import json, sys
for r in ("dense", "bm25"):
  m = json.load(open(f"{sys.argv[1]}/eval_dev_{r}.json"))
  print(f"{r:>5}: EM {100 * m['exact_match']:.1f} on {m['num_examples']} dev questions, "
        f"recall@5 {m['recall@5']:.3f}, recall@20 {m['recall@20']:.3f}")
PYEOF

echo "== 4/4 Export and serve over gRPC"
"$PY" -m realm_tf.launch.export --model_dir="$W/finetune" --export_base="$W/serving" \
    --variant=both --version=1 || true  # an existing version 1 is kept
"$PY" - "$W" "$PORT" "$QUESTION" <<'PYEOF'
import subprocess, sys
from serving.subprocess_server import ServerProcess
work, port, question = sys.argv[1], int(sys.argv[2]), sys.argv[3]
server = ServerProcess([sys.executable, "-m", "serving.server", f"--port={port}",
                        "--model_name=realm_openqa",
                        f"--model_base_path={work}/serving/realm_openqa"],
                       port, f"{work}/server.log")
try:
  server.wait_ready(["realm_openqa"], timeout=300)
  subprocess.run([sys.executable, "-m", "serving.client", f"--server=localhost:{port}",
                  "--model_name=realm_openqa", question], check=True)
finally:
  server.stop()
PYEOF
