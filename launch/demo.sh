#!/usr/bin/env bash
# The main job end to end on the embedded corpus (what `make demo` runs):
#   1. REALM pre-training (corpus → annotations → retriever start → reader warm-up → REALM with
#      inline index refresh), printing the held-out figures before and after;
#   2. open-QA fine-tuning on SQuAD-open train from REALM's retriever: its query tower and its
#      last index (frozen while fine-tuning, as ORQA/REALM do), with a MiniLM reader trained on
#      the gold block when retrieval misses it (the REALM run's knowledge-augmented encoder as
#      the reader's start measured worse: EM 21 vs 40 at 300 steps); the reader learns at 3e-4,
#      the query tower at a third of it (1e-4), and reads one block per training question for
#      400 steps (docs/LEARNING.md, "Open-QA fine-tuning: the demo's recipe");
#   3. EM on the first SQuAD-open dev questions (articles fine-tuning never saw), dense retrieval,
#      then BM25's blocks read by the same reader with its own retrieval logit for them (so only
#      the blocks differ; docs/LEARNING.md, "BM25 behind the same reader");
#   4. the SavedModel export in TF Serving's layout, served by our TF-Serving-protocol gRPC server
#      on loopback: a dev question through the client (answer and evidence), then one batched
#      request with the first question of each SQuAD-open dev article (a fixed rule, not picked
#      by outcome), each marked right or wrong against SQuAD's answers, with the rank of its gold
#      paragraph among the evidence.
# Every stage resumes from its outputs in $WORK_DIR when re-run. A new export version is written
# whenever fine-tuning has written checkpoints since the newest export (or there is none), and the
# server serves the newest version. A stage that fails stops the demo with its exit status and a
# line naming the stage.
set -euo pipefail
PY=${PY:-.venv/bin/python}
W=${WORK_DIR:-runs/default}
PORT=${PORT:-8500}
QUESTION=${QUESTION:-"In what year was Nikola Tesla born?"}
EVAL_EXAMPLES=${EVAL_EXAMPLES:-100}
# The inline Python below is not a realm_tf CLI (which quiets TensorFlow's C++ notices itself).
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}
STAGE="set-up"
trap 'rc=$?; echo "demo.sh: FAILED in stage \"$STAGE\" (exit status $rc); see the lines above." >&2' ERR
stage() {  # stage TITLE: prints the stage's header and names it for the failure line
  STAGE=$1
  echo "== $1"
}
newest_export() {  # prints the newest exported version directory of realm_openqa, if any
  local dir version best=-1
  for dir in "$W"/serving/realm_openqa/*; do
    version=${dir##*/}
    if [[ $version =~ ^[0-9]+$ && -f $dir/saved_model.pb ]] && ((10#$version > best)); then
      best=$((10#$version))
    fi
  done
  if ((best >= 0)); then echo "$W/serving/realm_openqa/$best"; fi
  return 0
}

stage "1/4 REALM pre-training (python -m realm_tf.launch.pretrain)"
"$PY" -m realm_tf.launch.pretrain --work_dir="$W"

# Fine-tuning's defaults are the recipe measured on 2 CPU cores (a MiniLM reader, 400 steps of 16
# questions, one block read per question); the retrieval score scale is the index bundle's own.
stage "2/4 Open-QA fine-tuning on SQuAD-open train, from REALM's retriever and index"
"$PY" -m realm_tf.launch.finetune --work_dir="$W" --dataset=squad_open \
    --num_train_steps="${FINETUNE_STEPS:-400}"

stage "3/4 EM on the first $EVAL_EXAMPLES SQuAD-open dev questions: dense, then BM25's blocks (same reader)"
for retriever in dense bm25; do
  "$PY" -m realm_tf.launch.evaluate --work_dir="$W" --dataset=squad_open --split=dev \
      --max_examples="$EVAL_EXAMPLES" --retriever=$retriever \
      --output_prefix="$W/finetune/eval_dev_$retriever" > "$W/finetune/eval_dev_$retriever.out"
done
"$PY" - "$W/finetune" <<'PYEOF'
import json, sys
# The BM25 line says which retrieval logit the reader was given for BM25's blocks (a result
# without `bm25_logits` is from code that gave it none).
for r in ("dense", "bm25"):
  m = json.load(open(f"{sys.argv[1]}/eval_dev_{r}.json"))
  label = r if r == "dense" else "BM25 blocks, " + (
      "zero retriever logit" if m.get("bm25_logits", "zero") == "zero"
      else "the reader's own retrieval logit")
  print(f"{label}: EM {100 * m['exact_match']:.1f} on {m['num_examples']} dev questions, "
        f"recall@5 {m['recall@5']:.3f}, recall@20 {m['recall@20']:.3f}")
PYEOF

stage "4/4 Export and serve over gRPC"
latest=$(newest_export)
if [[ -z $latest || -n $(find "$W/finetune/checkpoints" -newer "$latest/saved_model.pb" -print -quit) ]]
then  # the next free version; the server below serves the newest
  "$PY" -m realm_tf.launch.export --work_dir="$W"  # into $W/serving, both MIPS variants
else
  echo "Export version ${latest##*/} is up to date (no fine-tuning checkpoint since); serving it."
fi
"$PY" - "$W" "$PORT" "$QUESTION" <<'PYEOF'
import subprocess, sys
from serving.subprocess_server import ServerProcess
work, port, question = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def ask_dev_articles(server):
  """The first question of every SQuAD-open dev article, in one gRPC request, judged by EM."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from realm_tf.data.documents import Document, default_corpus_path, read_documents
  from realm_tf.data.squad_open import first_question_per_article
  from realm_tf.openqa.metrics import exact_match
  from serving.client import PredictClient
  qs = first_question_per_article("dev")
  contexts = {d.doc_id: " ".join(d.text.split()) for d in read_documents(default_corpus_path())
              if isinstance(d, Document)}
  with PredictClient(server, "realm_openqa") as client:
    out = client.predict({"questions": np.array([q.question.encode() for q in qs], object)})
  right = 0
  print(f"The first question of each of the {len(qs)} dev articles, one batched request:")
  for i, q in enumerate(qs):
    answer = out["answers"][i][0].decode()
    texts = [" ".join(t.decode().split()) for t in out["evidence_texts"][i]]
    rank = next((r + 1 for r, t in enumerate(texts) if t and t in contexts[q.doc_id]), None)
    matched = [a for a in q.answers if exact_match(answer, [a])]
    ok, gold = bool(matched), (matched or q.answers)[0]
    right += ok
    print(f"  {'right' if ok else 'WRONG'}  {q.question.strip()} -> {answer!r} "
          f"(p={out['probabilities'][i][0]:.2f}; gold {gold[:60]!r}; gold paragraph "
          + (f"evidence [{rank}])" if rank else "not in the evidence)"))
  print(f"{right} of {len(qs)} right (exact match).")

server = ServerProcess([sys.executable, "-m", "serving.server", f"--port={port}",
                        "--model_name=realm_openqa",
                        f"--model_base_path={work}/serving/realm_openqa"],
                       port, f"{work}/server.log")
try:
  server.wait_ready(["realm_openqa"], timeout=300)
  subprocess.run([sys.executable, "-m", "serving.client", f"--server=localhost:{port}",
                  "--model_name=realm_openqa", question], check=True)
  ask_dev_articles(f"localhost:{port}")
finally:
  server.stop()
PYEOF
