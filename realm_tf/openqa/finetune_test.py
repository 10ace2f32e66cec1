"""Tests of open-QA fine-tuning: loss goes down, warm starts, data splits, regex answers, resume."""
import dataclasses
import json
import logging as py_logging
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from realm_tf.openqa import finetune
from realm_tf.openqa import testing as T
from realm_tf.openqa.features import OpenQAExample, QuestionFeaturizer
from realm_tf.openqa.model import OpenQAConfig
from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.text import RealmTokenizer
from realm_tf.training import warm_start


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  work = str(tmp_path_factory.mktemp("ft"))
  corpus = os.path.join(work, "corpus")
  T.make_text_corpus(corpus)
  index_dir, export = T.make_bundle(work, corpus)
  tok = RealmTokenizer()
  bundle, index = finetune.load_index(index_dir, corpus, tok)
  # The starting point of fine-tuning: the same construction and warm start as run_finetune.
  tf_keras.utils.set_random_seed(0)
  cfg = _config(30)
  model_cfg = dataclasses.replace(cfg.model, retriever=finetune.index_retriever_config(bundle))
  model = finetune.build_model(model_cfg, index, tok)
  warm_start.init_openqa(model, os.path.join(bundle.path, "query_embedder"))
  return {"work": work, "corpus": corpus, "index": index_dir, "export": export, "tok": tok,
          "bundle": bundle, "model": model, "config": cfg}


def _config(steps, **kw):
  # All 12 blocks are read, so every question has a gold span and the reader loss is comparable.
  return finetune.FinetuneConfig(
      model=OpenQAConfig(reader=T.micro_reader_config(), retriever_beam_size=5000,
                         reader_beam_size=12),
      batch_size=4, num_train_steps=steps, learning_rate=1e-2, warmup_steps=0,
      checkpoint_every=steps, log_every=10, **kw)


def _losses(model, examples, tok):
  feats = QuestionFeaturizer(model.config.feature_config, tok).featurize(examples)
  out = model.compute_loss({k: tf.constant(v) for k, v in feats.items()}, training=False)
  return {k: float(np.mean(out[k].numpy())) for k in ("loss", "reader_loss", "retriever_loss")}


def test_short_finetuning_reduces_loss(env):
  tok, examples = env["tok"], T.examples()
  before = _losses(env["model"], examples, tok)
  model_dir = os.path.join(env["work"], "run")
  tf_keras.utils.set_random_seed(0)
  result = finetune.run_finetune(env["config"], env["index"], env["corpus"], model_dir,
                                 examples=examples)
  assert result["num_examples"] == 12 and np.isfinite(result["loss"])
  assert os.path.exists(os.path.join(model_dir, "TRAINING_DONE"))
  after_model, config, used_bundle = finetune.load_finetuned(model_dir)
  assert config.num_train_steps == 30 and used_bundle.path == env["bundle"].path
  after = _losses(after_model, examples, tok)
  assert after["loss"] < 0.85 * before["loss"], (before, after)
  assert after["reader_loss"] < 0.8 * before["reader_loss"], (before, after)
  # The index stayed frozen.
  np.testing.assert_array_equal(after_model.index.variables()[0].numpy(),
                                np.asarray(env["bundle"].embeddings))


def test_init_from_realm_pretraining_dir(env, tmp_path):
  from realm_tf.modeling.realm_pretrainer import RealmConfig, RealmPretrainer  # pylint: disable=g-import-not-at-top
  tok = env["tok"]
  realm_cfg = RealmConfig(retriever_encoder=T.MICRO, reader_encoder=T.MICRO,
                          query_seq_length=T.QUERY_LEN, doc_seq_length=T.DOC_LEN,
                          joint_seq_length=T.QUERY_LEN + T.DOC_LEN, max_predictions=4)
  tf_keras.utils.set_random_seed(3)
  realm = RealmPretrainer(realm_cfg).build_all()
  realm_dir = str(tmp_path / "realm")
  os.makedirs(os.path.join(realm_dir, "checkpoints"))
  with open(os.path.join(realm_dir, "config.json"), "w") as f:
    json.dump({"model": realm_cfg.to_dict(), "batch_size": 8}, f)
  tf.train.Checkpoint(model=realm).save(os.path.join(realm_dir, "checkpoints", "ckpt"))
  assert warm_start.source_kind(realm_dir) == "trainer"
  assert warm_start.trainer_run_kind(realm_dir) == "realm"
  assert warm_start.source_kind(env["export"]) == "export"
  assert warm_start.encoder_config_of(realm_dir) == T.MICRO

  bundle, model = env["bundle"], env["model"]
  cfg = model.config
  used = warm_start.init_openqa(model, realm_dir)
  assert set(used) == {"query_tower", "reader"}
  for mine, theirs in ((model.query_encoder, realm.retriever.query_encoder),
                       (model.query_projection, realm.retriever.query_projection),
                       (model.reader.encoder, realm.knowledge_encoder.encoder)):
    assert len(mine.variables) == len(theirs.variables)
    for a, b in zip(mine.variables, theirs.variables):
      np.testing.assert_array_equal(a.numpy(), b.numpy())
  # An embedder export warm-starts the query tower to reproduce the index's query embeddings.
  warm_start.init_openqa(model, env["export"])
  feats = QuestionFeaturizer(cfg.feature_config, tok).featurize(T.examples(3))
  mine = model.embed_questions({k: tf.constant(v) for k, v in feats.items()}).numpy()
  theirs = bundle.query_embedder.embed_queries(
      {k: tf.constant(feats[f"query/{k}"]) for k in ("input_word_ids", "input_mask",
                                                     "input_type_ids")}).numpy()
  np.testing.assert_allclose(mine, theirs, atol=1e-5)
  with pytest.raises(warm_start.WarmStartError, match="none of"):
    warm_start.source_kind(str(tmp_path))


def test_regex_answers_expand_to_matched_strings(env, caplog):
  tok = env["tok"]
  model = env["model"]
  cfg = model.config
  examples = [
      OpenQAExample("ct/0", "Which is the largest planet?", (r"Jupit(er)?",), True),
      OpenQAExample("ct/1", "Who discovered penicillin?", (r"(Alexander )?Fleming", "bad\\"),
                    True),
      OpenQAExample("ct/2", "Where?", ("Nowhere[0-9]+",), True),
      OpenQAExample("plain", "Where is Paris?", ("Paris",), False),
  ]
  fz = QuestionFeaturizer(cfg.feature_config, tok)
  with caplog.at_level(py_logging.WARNING):
    answers = finetune.expand_regex_answers(examples, model, fz, num_blocks=100)
  assert answers[0] == ["Jupiter"]
  assert answers[1] == ["Alexander Fleming"]
  assert answers[2] == [] and answers[3] == ["Paris"]
  assert "'ct/1'" in caplog.text and "bad\\\\" in caplog.text
  feats = fz.answer_features(examples, answers)
  assert feats["answer_length"][:, 0].tolist() == [1, 2, 0, 1]


def test_squad_open_splits_by_article():
  train = finetune.load_squad_open("train")
  dev = finetune.load_squad_open("dev")
  assert len(train) + len(dev) == 10570
  assert 0.1 < len(dev) / 10570 < 0.35
  train_ids = {e.qid for e in train}
  assert not train_ids & {e.qid for e in dev}
  assert finetune.load_squad_open("test") == dev


def test_dataset_positions_resume_exactly():
  feats = {"question_length": np.arange(10, dtype=np.int32),
           "question_ids": np.arange(10, dtype=np.int32)[:, None] * np.ones([1, 3], np.int32)}
  make = finetune.make_dataset_fn(feats, batch_size=4, seed=5)
  full = [b for _, b in zip(range(6), make(0))]
  stream = np.concatenate([b["question_length"].numpy() for b in full])
  # Each epoch is a permutation of all examples.
  assert sorted(stream[:10].tolist()) == list(range(10))
  assert sorted(stream[10:20].tolist()) == list(range(10))
  pos = int(full[2]["data_position"].numpy().max())
  assert pos == 12
  resumed = [b for _, b in zip(range(3), make(pos))]
  np.testing.assert_array_equal(np.concatenate([b["question_length"].numpy() for b in resumed]),
                                stream[12:24])
