#!/usr/bin/env bash
# The main job end to end on the embedded corpus (what `make demo` runs):
#   1. REALM pre-training (corpus → annotations → ICT → REALM with inline index refresh),
#      printing zero-shot retrieval recall@5 before and after;
#   2. a short open-QA fine-tuning on SQuAD-open and its evaluation (EM, recall@k);
#   3. the SavedModel export in TF Serving's layout;
#   4. our TF-Serving-protocol gRPC server on loopback, answering a question through the client.
# Every stage resumes from its outputs in $WORK_DIR when re-run.
set -euo pipefail
PY=${PY:-.venv/bin/python}
W=${WORK_DIR:-runs/default}
PORT=${PORT:-8500}
QUESTION=${QUESTION:-"Which NFL team represented the AFC at Super Bowl 50?"}

"$PY" -m realm_tf.launch.pretrain --work_dir="$W"
"$PY" -m realm_tf.launch.finetune --dataset=squad_open --index_dir="$W/index" \
    --corpus_dir="$W/corpus" --init_checkpoint="$W/realm" --model_dir="$W/finetune" \
    --num_train_steps=${FINETUNE_STEPS:-40} --batch_size=4 --learning_rate=1e-4 \
    --retriever_beam_size=100 --checkpoint_every=20
"$PY" -m realm_tf.launch.evaluate --model_dir="$W/finetune" --dataset=squad_open --split=test \
    --max_examples=${EVAL_EXAMPLES:-64} --output_prefix="$W/finetune/eval_squad_open"
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
