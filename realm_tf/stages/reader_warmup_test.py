"""Tests of the reader warm-up: its config checks, the MLM loss by hand, a span-match run that
trains, resumes and lets the reader copy a span from its evidence."""
import dataclasses
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from realm_tf.testing.retrieval_fixtures import write_corpus_and_annotations
from realm_tf.modeling.encoder_config import EncoderConfig
from realm_tf.text import RealmTokenizer
from realm_tf.stages import reader_warmup
from realm_tf.stages.reader_warmup import ReaderWarmupConfig, ReaderWarmupJobConfig, mlm_task

TOK = RealmTokenizer()
TINY = EncoderConfig(hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64,
                     dropout_rate=0.0, attention_dropout_rate=0.0)


def test_unknown_evidence_mode_is_refused_with_the_choices():
  with pytest.raises(ValueError, match="own_block.*span_match"):
    ReaderWarmupConfig(evidence="gold")


def test_span_match_needs_the_annotations(tmp_path):
  with pytest.raises(ValueError, match="annotations_dir"):
    reader_warmup.run(ReaderWarmupJobConfig(ReaderWarmupConfig(evidence="span_match"),
                                            corpus_dir=str(tmp_path / "corpus"),
                                            model_dir=str(tmp_path / "reader")))


def test_mlm_loss_is_each_examples_mean_cross_entropy_over_its_masked_pieces():
  logits = np.array([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
                     [[0.0, 0.0, 3.0], [1.0, 1.0, 1.0]]], np.float32)
  ids = np.array([[0, 2], [2, 0]], np.int32)
  weights = np.array([[1, 1], [1, 0]], np.float32)

  def model(inputs, positions, training):
    del inputs, positions, training
    return tf.constant(logits)

  batch = {k: tf.zeros([2, 4], tf.int32) for k in ("input_word_ids", "input_mask",
                                                     "input_type_ids")}
  batch.update(masked_positions=tf.zeros([2, 2], tf.int32), masked_ids=ids,
               masked_weights=weights)
  per_example, metrics = mlm_task(model, batch, training=False)
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  xent = -np.take_along_axis(log_p, ids[..., None], -1)[..., 0]
  np.testing.assert_allclose(per_example.numpy(), [(xent[0, 0] + xent[0, 1]) / 2, xent[1, 0]],
                             rtol=1e-5)
  hits, count = metrics["mlm_accuracy"]
  assert (float(hits), float(count)) == (2.0, 3.0)  # [0,0] and [1,0] right, [0,1] wrong


def test_span_match_warmup_trains_resumes_and_records_its_config(tmp_path):
  corpus_dir, ann_dir = write_corpus_and_annotations(str(tmp_path), TOK)
  model_dir = str(tmp_path / "reader")
  config = ReaderWarmupConfig(knowledge_encoder=TINY, evidence="span_match", query_length=24,
                              seq_length=64, max_predictions=6, batch_size=4, num_train_steps=4,
                              warmup_steps=1, checkpoint_every=2, log_every=2)
  tf_keras.utils.set_random_seed(0)
  job = ReaderWarmupJobConfig(config, corpus_dir=corpus_dir, model_dir=model_dir,
                              annotations_dir=ann_dir)
  first = reader_warmup.run(job)
  assert np.isfinite(first["loss"]) and 0 <= first["mlm_accuracy"] <= 1
  assert os.path.exists(os.path.join(model_dir, "config.json"))
  assert glob.glob(os.path.join(model_dir, "checkpoints", "ckpt-4.index"))
  # A finished run resumes at its last step and trains no further.
  again = reader_warmup.run(job)
  assert "loss" not in again
  with open(os.path.join(model_dir, "TRAINING_DONE")) as f:
    assert json.load(f)["step"] == 4
  # How often it checkpoints and logs is no other run: a work dir written with the cadence of
  # before (one checkpoint at the end) resumes under the main job's.
  again = reader_warmup.run(dataclasses.replace(
      job, warmup=dataclasses.replace(config, checkpoint_every=1, log_every=1)))
  assert "loss" not in again
  # Another evidence mode is another run: the recorded config refuses it.
  with pytest.raises(Exception, match="config"):
    reader_warmup.run(ReaderWarmupJobConfig(
        ReaderWarmupConfig(knowledge_encoder=TINY, query_length=24, seq_length=64,
                           max_predictions=6, batch_size=4, num_train_steps=4),
        corpus_dir=corpus_dir, model_dir=model_dir))
