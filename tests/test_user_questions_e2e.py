"""Fine-tuning and evaluating on your own questions, exporting and serving, end to end at toy size,
the way the README says:

    python -m realm_tf.launch.finetune --work_dir=runs/mine --dataset=jsonl:my_qa.jsonl
    python -m realm_tf.launch.evaluate --work_dir=runs/mine --dataset=jsonl:my_qa.jsonl
    python -m realm_tf.launch.export --work_dir=runs/mine
    python -m serving.server --work_dir=runs/mine

A pre-training work dir (the open-QA fixtures' corpus and a micro index bundle in its layout) and
a JSONL question file; each program's command line is parsed into its config (every path from
--work_dir) and run; the server is a real `python -m serving.server` process answering over gRPC.
"""
import json
import os

import pytest

from realm_tf.launch import evaluate as evaluate_cli
from realm_tf.launch import export as export_cli
from realm_tf.launch import finetune as finetune_cli
from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.retrieval import embedder_export
from realm_tf.stages import evaluate as evaluate_stage
from realm_tf.stages import export_job
from realm_tf.stages import finetune as finetune_stage
from realm_tf.testing import export_models as ex_testing
from realm_tf.testing import openqa_models as T
from realm_tf.testing.cli import parsed_flags
from realm_tf.testing import toy_jobs

# Kept out of the default run for its time (`make test-slow` runs it). Each of its steps has its own
# default-run check: fine-tuning and evaluation on a question file with every path from the work
# dir (tests/test_field_formats_e2e.py), JSON-lines questions (realm_tf/stages/finetune_test.py),
# an index's score scale at warm start (the same file), and the exported model answering over
# gRPC as it does in process (tests/test_serving_e2e.py).
pytestmark = pytest.mark.slow

# The scale REALM pre-training put on the index's scores (the main job's), as its export records.
REALM_SCALE = 0.05


@pytest.fixture(scope="module")
def mine(tmp_path_factory):
  """runs/mine after pre-training: corpus/ and index/ (whose query embedder records REALM's score
  scale), and my_qa.jsonl with gold documents for some questions and answers alone for others."""
  root = tmp_path_factory.mktemp("user_questions")
  work = root / "mine"
  T.make_text_corpus(str(work / "corpus"))
  index_dir, _ = T.make_bundle(str(work), str(work / "corpus"))
  assert index_dir == str(work / "index")
  meta_path = os.path.join(bundle_lib.latest(index_dir).path, bundle_lib.QUERY_EMBEDDER,
                           embedder_export.METADATA)
  with open(meta_path, encoding="utf-8") as f:
    meta = json.load(f)
  with open(meta_path, "w", encoding="utf-8") as f:
    json.dump(dict(meta, retrieval_score_scale=REALM_SCALE), f)
  questions = root / "my_qa.jsonl"
  questions.write_text("\n".join(
      json.dumps({"question": e.question, "answers": list(e.answers),
                  **({"doc_id": e.doc_id} if i % 2 else {})})
      for i, e in enumerate(T.examples(8))) + "\n", encoding="utf-8")
  return {"work": work, "questions": questions}


def test_finetune_evaluate_export_and_serve_your_questions(mine):
  work, dataset = mine["work"], f"--dataset=jsonl:{mine['questions']}"
  # Fine-tuning: every path from the work dir; the score scale as the old help said to give it
  # on a MiniLM index (0.05), which the index already carries: not applied a second time.
  job = finetune_cli.job_from_flags(parsed_flags(finetune_cli, f"--work_dir={work}", dataset, *toy_jobs.FINETUNE_TOY,
                                            f"--retrieval_score_scale={REALM_SCALE}"))
  assert (job.index_dir, job.corpus_dir, job.model_dir) == (
      str(work / "index"), str(work / "corpus"), str(work / "finetune"))
  result = finetune_stage.run(job)
  assert result["num_examples"] == 8 and result["warm_start"]["query_tower"]
  assert "retrieval_score_scale" not in result["warm_start"]  # 0.05 / 0.05: nothing to apply
  assert os.path.exists(work / "finetune" / "TRAINING_DONE")

  # Evaluation of the run in the work dir, on the same file.
  metrics = evaluate_stage.run(evaluate_cli.config_from_flags(
      parsed_flags(evaluate_cli, f"--work_dir={work}", dataset, "--recall_ks=1,5")))
  assert metrics["num_examples"] == 8 and 0.0 <= metrics["exact_match"] <= 1.0
  assert metrics["recall@5"] >= metrics["recall@1"]
  with open(work / "finetune" / "eval" / "jsonl_my_qa-test.jsonl", encoding="utf-8") as f:
    predictions = [json.loads(line) for line in f]

  # Export into the work dir's serving/, then `python -m serving.server --work_dir=...`.
  exported = export_job.run(export_cli.config_from_flags(
      parsed_flags(export_cli, f"--work_dir={work}", "--variant=stock", "--components=openqa")))
  assert exported["models"] == {"realm_openqa": str(work / "serving" / "realm_openqa" / "1")}
  from serving import client  # pylint: disable=g-import-not-at-top
  from serving import subprocess_server  # pylint: disable=g-import-not-at-top
  server = subprocess_server.start_python_server(
      [f"--work_dir={work}", "--file_system_poll_wait_seconds=0", "--max_num_load_retries=0"],
      str(work / "server.log"))
  try:
    server.wait_ready(["realm_openqa"], timeout=240)
    with client.PredictClient(server.address, "realm_openqa", timeout=60) as c:
      out = c.predict({"questions": ex_testing.strings([predictions[0]["question"]])})
  finally:
    server.stop()
  answer = out["answers"][0][0].decode()
  assert out["status"].tolist() == [b"ok"]
  assert answer == predictions[0]["prediction"]  # the evaluated model's own answer
  assert answer in out["evidence_texts"][0][out["answer_block_index"][0][0]].decode()
