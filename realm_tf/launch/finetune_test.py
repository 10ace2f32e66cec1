"""End-to-end test of the open-QA command lines: fine-tune on 2 CPU replicas, then evaluate."""
import json
import os
import subprocess
import sys

import pytest

from realm_tf.openqa import testing as T

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(args, timeout=600):
  proc = subprocess.run([sys.executable, "-m"] + args, cwd=ROOT, capture_output=True, text=True,
                        timeout=timeout, env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc


@pytest.mark.slow
def test_finetune_mirrored_then_evaluate(tmp_path):
  corpus = str(tmp_path / "corpus")
  T.make_text_corpus(corpus)
  index_dir, export = T.make_bundle(str(tmp_path), corpus)
  model_dir = str(tmp_path / "ft")
  proc = _run(["realm_tf.launch.finetune", "--dataset=squad_open", f"--index_dir={index_dir}",
               f"--corpus_dir={corpus}", f"--model_dir={model_dir}", f"--init_checkpoint={export}",
               "--strategy=mirrored", "--num_cpu_devices=2", "--batch_size=4",
               "--num_train_steps=2", "--checkpoint_every=2", "--max_train_examples=16",
               "--reader_seq_length=64", "--reader_query_length=16", "--span_hidden_size=16",
               "--retriever_beam_size=8"])
  assert "MirroredStrategy with 2 replica(s)" in proc.stderr
  assert os.path.exists(os.path.join(model_dir, "TRAINING_DONE"))
  with open(os.path.join(model_dir, "config.json")) as f:
    cfg = json.load(f)
  assert cfg["dataset"] == "squad_open" and cfg["model"]["retriever_beam_size"] == 8
  prefix = str(tmp_path / "eval" / "squad")
  _run(["realm_tf.launch.evaluate", f"--model_dir={model_dir}", "--dataset=squad_open",
        "--split=dev", "--max_examples=8", "--batch_size=8", "--recall_ks=1,5",
        f"--output_prefix={prefix}"])
  with open(prefix + ".json") as f:
    result = json.load(f)
  assert result["num_examples"] == 8 and result["model_calls"] == 1
  assert 0.0 <= result["exact_match"] <= 1.0 and "recall@5" in result
  with open(prefix + ".jsonl", encoding="utf-8") as f:
    lines = [json.loads(x) for x in f]
  assert len(lines) == 8 and all(len(x["evidence"]) == 5 for x in lines)
