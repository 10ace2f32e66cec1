"""The toy main job, fine-tuning, evaluation, export and serving with their work dir on `ram://`.

`ram://` is TensorFlow's in-memory filesystem: `tf.io.gfile`, SavedModel save/load and
`tf.train.Checkpoint` reach it; `open()`, `os.path` and `os.listdir` do not (to them it is a
relative local path named `ram:`, which the test watches for). It stands in for `gs://`: a stage
that reads or writes any of its files past `tf.io.gfile` fails here or leaves a local `ram:`
directory behind.

The Beam stages (build_corpus, annotate) run on local disk, and their outputs are copied to the
`ram://` work dir before the job starts (`paths.copy_tree`); every later stage reads them there.
The reader starts from Hugging Face weights (config.json + model.safetensors, a micro BERT) stored
on `ram://` too. The block lookup is local by design: for a remote corpus it builds its
memory-mapped copy in a local cache directory (`block_lookup.lookup_dir_for`), which the test
points at its tmp dir.
"""
import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.testing import bert_checkpoints
from realm_tf.data import block_lookup
from realm_tf.io import paths
from realm_tf.io import work_dir as work_dir_lib
from realm_tf.launch import evaluate as evaluate_cli
from realm_tf.launch import export as export_cli
from realm_tf.launch import finetune as finetune_cli
from realm_tf.modeling.encoder_config import EncoderConfig
from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.stages import evaluate as evaluate_stage
from realm_tf.stages import export_job
from realm_tf.stages import finetune as finetune_stage
from realm_tf.stages import pretrain_job
from realm_tf.training import warm_start
from realm_tf.testing import export_models
from realm_tf.training.trainer import DONE_MARKER
from realm_tf.testing.cli import parsed_flags
from realm_tf.testing import toy_jobs
from serving import model_config
from serving import model_manager

# The longest end-to-end runs are kept out of the default run (`make test-slow` runs them);
# the default run keeps one end-to-end smoke of the same path (tests/test_field_formats_e2e.py
# pre-trains, fine-tunes and evaluates on a user's corpus; the ram:// paths are in io/paths_test.py).
pytestmark = pytest.mark.slow

QUESTIONS = [
    {"question": "Where was Marie Curie born?", "answers": ["Warsaw"]},
    {"question": "What is the capital of Poland?", "answers": ["Warsaw"]},
    {"question": "Where did Chopin die?", "answers": ["Paris"]},
    {"question": "Who founded the Nobel Prize?", "answers": ["Alfred Nobel"]},
]
# The reader's initial weights: a micro BERT over the project's 30,522-wordpiece vocabulary.
HF_READER = EncoderConfig(hidden_size=32, num_layers=1, num_attention_heads=2,
                          intermediate_size=64)


@pytest.fixture()
def remote(tmp_path, monkeypatch):
  """A `ram://` work dir holding the corpus and annotations the Beam stages built locally."""
  monkeypatch.chdir(tmp_path)  # a stray local `ram:` directory would appear here
  (tmp_path / "cache").mkdir()
  monkeypatch.setattr(block_lookup.tempfile, "tempdir", str(tmp_path / "cache"))
  local = tmp_path / "beam"
  local.mkdir()
  (local / "docs.jsonl").write_text("\n".join(json.dumps(d) for d in toy_jobs.DOCS) + "\n")
  pretrain_job.ensure_corpus([str(local / "docs.jsonl")], str(local / "corpus"))
  pretrain_job.ensure_annotations(str(local / "corpus"), str(local / "annotations"))
  root = f"ram://{tmp_path.name}/work"
  for name in ("corpus", "annotations"):
    paths.copy_tree(str(local / name), f"{root}/{name}")
  with tf.io.gfile.GFile(f"{root}/my_qa.jsonl", "w") as f:
    f.write("\n".join(json.dumps(q) for q in QUESTIONS) + "\n")
  bert_checkpoints.write_hf_dir(
      str(local / "hf_reader"), HF_READER, bert_checkpoints.make_hf_arrays(HF_READER))
  paths.copy_tree(str(local / "hf_reader"), f"{root}/hf_reader")
  yield root
  paths.remove_tree(f"ram://{tmp_path.name}")


def test_main_job_finetune_evaluate_export_and_serve_on_ram(remote):
  work = work_dir_lib.WorkDir(remote)
  # Pre-training: ICT, the reader warm-up, index refresh and REALM with held-out evaluation.
  job = toy_jobs.toy_job({"corpus": work.corpus, "annotations": work.annotations}, remote)
  summary = pretrain_job.run(dataclasses.replace(job, reader_init=f"{remote}/hf_reader"))
  assert all(path.startswith(f"{remote}/") for path in summary["dirs"].values())
  assert np.isfinite(summary["reader_warmup"]["loss"]) and np.isfinite(summary["train"]["loss"])
  assert summary["heldout_start"]["step"] == 0 and summary["heldout_end"]["step"] == 2
  # The reader warm-up (the HF weights have no MLM head) built its encoder from their config.
  assert warm_start.encoder_config_of(work.reader) == HF_READER
  assert tf.io.gfile.exists(os.path.join(work.realm, DONE_MARKER))
  live = bundle_lib.latest(work.index)
  assert live.path.startswith(work.index + "/") and live.step == 2

  # Fine-tuning and evaluation on questions stored beside the work dir.
  dataset = f"--dataset=jsonl:{remote}/my_qa.jsonl"
  job = finetune_cli.job_from_flags(parsed_flags(finetune_cli, f"--work_dir={remote}", dataset, *toy_jobs.FINETUNE_TOY))
  result = finetune_stage.run(job)
  assert result["num_examples"] == len(QUESTIONS)
  assert tf.io.gfile.exists(os.path.join(work.finetune, DONE_MARKER))
  with tf.io.gfile.GFile(os.path.join(work.finetune, "config.json")) as f:
    recorded = json.load(f)
  assert recorded["corpus_dir"] == work.corpus and recorded["index_bundle"] == live.path
  metrics = evaluate_stage.run(evaluate_cli.config_from_flags(
      parsed_flags(evaluate_cli, f"--work_dir={remote}", dataset, "--recall_ks=1,5")))
  assert metrics["num_examples"] == len(QUESTIONS)
  assert tf.io.gfile.exists(os.path.join(work.finetune, "eval", "jsonl_my_qa-test.jsonl"))

  # Export, and the model server's manager finds and loads the version there.
  exported = export_job.run(export_cli.config_from_flags(
      parsed_flags(export_cli, f"--work_dir={remote}", "--variant=stock", "--components=openqa")))
  base = os.path.join(work.serving, "realm_openqa")
  assert exported == {"export_base": work.serving, "models": {"realm_openqa": f"{base}/1"}}
  assert model_config.list_versions(base) == [1]
  model_manager.import_scann()
  manager = model_manager.ModelManager([model_config.ModelConfig("realm_openqa", base)])
  manager.poll_once()
  with manager.servable("realm_openqa") as servable:
    out = servable.signature("")({"questions": export_models.strings([QUESTIONS[0]["question"]])})
  manager.stop()
  assert out["status"].tolist() == [b"ok"]
  # Nothing went to local disk under the ram:// name (the test runs in its tmp dir) ...
  assert not os.path.exists("ram:"), "a stage wrote a ram:// path to local disk"
  # ... but the block lookup of the remote corpus, which is local by design.
  assert os.listdir(os.path.join(block_lookup.tempfile.gettempdir(), "realm_tf_lookup"))
