"""End to end on a small real corpus: blocks → annotations → ICT → bundle → REALM with inline
refresh → recall, then a resume, a corpus-mismatch refusal and a config-mismatch refusal."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.data import corpus as corpus_lib
from realm_tf.evaluation.recall import measure_bundle_recall
from realm_tf.modeling.encoder_config import EncoderConfig
from realm_tf.modeling.realm_pretrainer import RealmConfig
from realm_tf.modeling.retriever import RetrieverConfig
from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.retrieval.refresh import IndexRefresher, RefreshConfig
from realm_tf.stages import pretrain_job
from realm_tf.stages import ict_experiment
from realm_tf.stages.ict_experiment import IctConfig, IctJobConfig
from realm_tf.stages.realm_experiment import (BundleMismatchError, PretrainConfig,
                                                RealmExperiment)
from realm_tf.training.trainer import DONE_MARKER, ConfigMismatchError
from realm_tf.testing import toy_jobs

MICRO = EncoderConfig(hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
  root = tmp_path_factory.mktemp("realm_e2e")
  src = root / "docs.jsonl"
  src.write_text("\n".join(json.dumps(d) for d in toy_jobs.DOCS) + "\n")
  dirs = {k: str(root / k) for k in ("corpus", "annotations", "ict", "realm", "index")}
  pretrain_job.ensure_corpus([str(src)], dirs["corpus"])
  pretrain_job.ensure_annotations(dirs["corpus"], dirs["annotations"])
  ict = ict_experiment.run(IctJobConfig(
      IctConfig(retriever=RetrieverConfig(encoder=MICRO), batch_size=4, num_train_steps=3,
                warmup_steps=0, learning_rate=1e-3, checkpoint_every=3, log_every=1),
      corpus_dir=dirs["corpus"], model_dir=dirs["ict"]))
  refresher = IndexRefresher(RefreshConfig(model_dir=dirs["realm"], corpus_dir=dirs["corpus"],
                                           index_dir=dirs["index"], min_recall=0.0,
                                           recall_queries=20))
  refresher.refresh(ict["export"])
  return dirs, refresher, ict


def _config(steps):
  return PretrainConfig(model=RealmConfig(retriever_encoder=MICRO, reader_encoder=MICRO,
                                          num_candidates=4),
                        batch_size=2, num_train_steps=steps, learning_rate=1e-3, warmup_steps=0,
                        refresh="inline", refresh_every_steps=2, export_every_steps=2,
                        checkpoint_every=2, log_every=1)


def test_pretraining_with_inline_refresh_resumes_and_measures_recall(work, caplog):
  dirs, refresher, _ = work
  first = bundle_lib.latest(dirs["index"]).version
  exp = RealmExperiment(_config(2), dirs["corpus"], dirs["annotations"], dirs["index"],
                        dirs["realm"], refresher=refresher)
  scalars = exp.train(retriever_init=dirs["ict"])
  assert np.isfinite(scalars["loss"]) and scalars["loss"] > 0
  assert 0.0 <= scalars["null_posterior"] <= 1.0
  # The inline refresh at step 2 published a bundle built from the REALM export of step 2.
  live = bundle_lib.latest(dirs["index"])
  assert live.version > first and live.step == 2
  assert live.manifest["source_export"].endswith("00000002")
  assert os.path.exists(os.path.join(dirs["realm"], DONE_MARKER))
  # A second export of the same step (the held-out evaluation's best export after the refresh's)
  # is the one already published, without a second write or an "already exists" warning.
  caplog.clear()
  assert exp.export(2) == live.manifest["source_export"]
  assert "already exists" not in caplog.text

  position, = exp.trainer.data_position.numpy().tolist()  # one input pipeline
  assert position >= 2 * 2  # at least batch × steps raw records consumed

  recall = measure_bundle_recall(live, dirs["annotations"], dirs["corpus"], 10, False)
  assert 0.0 <= recall["own_block_recall@5"] <= 1.0


class _Stopped(Exception):
  """The process stopping inside a hook (as a kill would), raised by a stand-in refresh."""


def test_a_run_stopped_between_a_checkpoint_and_its_refresh_refreshes_on_resume(work, tmp_path):
  # A step's checkpoint is written before its hook exports and refreshes. Stopped in between,
  # the run must not go on (or end) with the previous index: the resumed run finishes the
  # restored step's refresh from that step's export first.
  dirs, _, _ = work
  index, realm = str(tmp_path / "index"), str(tmp_path / "realm")
  shutil.copytree(dirs["index"], index)
  before = bundle_lib.latest(index).version
  refresher = IndexRefresher(RefreshConfig(model_dir=realm, corpus_dir=dirs["corpus"],
                                           index_dir=index, min_recall=0.0, recall_queries=20))

  def stop(export_dir, *args, **kwargs):
    raise _Stopped(export_dir)

  refresher.refresh, refresh = stop, refresher.refresh
  with pytest.raises(_Stopped):
    RealmExperiment(_config(2), dirs["corpus"], dirs["annotations"], index, realm,
                    refresher=refresher).train(retriever_init=dirs["ict"])
  assert tf.train.latest_checkpoint(os.path.join(realm, "checkpoints")).endswith("ckpt-2")
  assert bundle_lib.latest(index).version == before  # the step-2 refresh never happened

  refresher.refresh = refresh
  RealmExperiment(_config(2), dirs["corpus"], dirs["annotations"], index, realm,
                  refresher=refresher).train(retriever_init=dirs["ict"])
  live = bundle_lib.latest(index)
  assert live.version > before and live.step == 2
  assert live.manifest["source_export"].startswith(os.path.abspath(realm))


def test_bundle_from_another_corpus_is_refused(work, tmp_path):
  dirs, _, _ = work
  other = tmp_path / "other.jsonl"
  other.write_text(json.dumps({"title": "X", "text": "Something else entirely. Twice."}) + "\n")
  pretrain_job.ensure_corpus([str(other)], str(tmp_path / "corpus"))
  cfg = _config(2)
  cfg.refresh = "none"
  with pytest.raises(BundleMismatchError, match="built from corpus"):
    RealmExperiment(cfg, str(tmp_path / "corpus"), dirs["annotations"], dirs["index"],
                    str(tmp_path / "realm"))
  assert not (tmp_path / "realm").exists()  # nothing written on refusal


def test_checkpoint_from_another_config_is_refused(work, tmp_path):
  dirs, refresher, _ = work
  model_dir = str(tmp_path / "realm")
  RealmExperiment(_config(2), dirs["corpus"], dirs["annotations"], dirs["index"], model_dir,
                  refresher=refresher)  # records its config in model_dir
  cfg = _config(2)
  cfg.learning_rate = 0.5
  with pytest.raises(ConfigMismatchError, match="learning_rate"):
    RealmExperiment(cfg, dirs["corpus"], dirs["annotations"], dirs["index"], model_dir,
                    refresher=refresher)


def test_missing_corpus_or_index_is_a_clear_error(work, tmp_path):
  dirs, _, _ = work
  cfg = _config(2)
  cfg.refresh = "none"
  with pytest.raises(corpus_lib.CorpusError, match="No corpus manifest"):
    RealmExperiment(cfg, str(tmp_path / "nowhere"), dirs["annotations"], dirs["index"],
                    str(tmp_path / "m1"))
  with pytest.raises(bundle_lib.BundleNotFoundError, match=str(tmp_path / "noindex")):
    RealmExperiment(cfg, dirs["corpus"], dirs["annotations"], str(tmp_path / "noindex"),
                    str(tmp_path / "m2"))
  assert not (tmp_path / "m1").exists() and not (tmp_path / "m2").exists()


@pytest.mark.slow  # kept out of the default run for its time; `make test-slow` runs it
def test_ict_launcher_trains_exports_and_publishes_the_first_bundle(work, tmp_path):
  dirs, _, _ = work
  model_dir, index_dir = str(tmp_path / "ict"), str(tmp_path / "index")
  cmd = [sys.executable, "-m", "realm_tf.launch.ict", f"--corpus_dir={dirs['corpus']}",
         f"--model_dir={model_dir}", f"--index_dir={index_dir}", "--batch_size=2",
         "--num_train_steps=2", "--checkpoint_every=2", "--min_recall=0"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "ICT: 2 steps, loss=" in proc.stdout
  live = bundle_lib.latest(index_dir)
  assert live.version == 1 and live.step == 2
  assert live.manifest["source_export"].startswith(os.path.join(model_dir, "embedder_exports"))
  assert live.num_rows == corpus_lib.load_manifest(dirs["corpus"])["num_blocks"]

  missing = str(tmp_path / "no_corpus")
  proc = subprocess.run([*cmd[:3], f"--corpus_dir={missing}", f"--model_dir={tmp_path / 'm'}"],
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert missing in proc.stderr and "error:" in proc.stderr


@pytest.mark.slow  # kept out of the default run for its time; `make test-slow` runs it
def test_main_job_runs_every_stage_and_repeats_with_the_same_seed(work, tmp_path):
  """`pretrain_job.run` (what `python -m realm_tf.launch.pretrain` calls) through ICT, the
  reader warm-up, REALM with inline refresh and the held-out figures, at toy size; a second run
  with the same seed gives the same figures (the seed fixes the models' initialisation and
  dropout as well as the data order)."""
  summary = pretrain_job.run(toy_jobs.toy_job(work[0], str(tmp_path / "a"), seed=3))
  assert set(summary["ict"]) == {"loss", "accuracy"}
  assert np.isfinite(summary["reader_warmup"]["loss"])
  assert np.isfinite(summary["train"]["loss"]) and summary["train"]["loss"] > 0
  assert summary["heldout_start"]["step"] == 0 and summary["heldout_end"]["step"] == 2
  assert set(summary["goals"]) >= {"null_posterior_below_0.9"}
  assert "Learning goals" in pretrain_job.format_summary(summary)

  def figures(s):
    return [{k: v for k, v in s[stage].items() if k != "progress_line"}  # has a rate
            for stage in ("ict", "reader_warmup", "train")]

  second = pretrain_job.run(toy_jobs.toy_job(work[0], str(tmp_path / "b"), seed=3))
  assert figures(summary) == figures(second)
