"""Tests of open-QA fine-tuning: loss goes down, warm starts, data splits, regex answers, resume,
reader positives, JSONL question sets."""
import dataclasses
import json
import logging as py_logging
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from realm_tf.openqa import datasets
from realm_tf.stages import evaluate as evaluate_lib
from realm_tf.stages import finetune
from realm_tf.openqa import training_data
from realm_tf.testing import openqa_models as T
from realm_tf.modeling.openqa_features import OpenQAExample, QuestionFeaturizer
from realm_tf.modeling.openqa_model import OpenQAConfig
from realm_tf.text import RealmTokenizer
from realm_tf.training import warm_start


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  work = str(tmp_path_factory.mktemp("ft"))
  corpus = os.path.join(work, "corpus")
  T.make_text_corpus(corpus)
  index_dir, export = T.make_bundle(work, corpus)
  tok = RealmTokenizer()
  bundle, index = finetune.load_index(index_dir, corpus)
  # The starting point of fine-tuning: the same construction and warm start as finetune.run.
  tf_keras.utils.set_random_seed(0)
  cfg = _config(30)
  model_cfg = dataclasses.replace(cfg.model, retriever=finetune.index_retriever_config(bundle))
  model = finetune.build_model(model_cfg, index, tok)
  warm_start.init_openqa(model, os.path.join(bundle.path, "query_embedder"))
  return {"work": work, "corpus": corpus, "index": index_dir, "export": export, "tok": tok,
          "bundle": bundle, "model": model, "config": cfg}


def _job(config, index_dir, corpus_dir, model_dir, **kw):
  return finetune.FinetuneJobConfig(config, index_dir=index_dir, corpus_dir=corpus_dir,
                                    model_dir=model_dir, **kw)


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
  result = finetune.run(_job(env["config"], env["index"], env["corpus"], model_dir),
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
    answers = training_data.expand_regex_answers(examples, model, fz, num_blocks=100)
  assert answers[0] == ["Jupiter"]
  assert answers[1] == ["Alexander Fleming"]
  assert answers[2] == [] and answers[3] == ["Paris"]
  assert "'ct/1'" in caplog.text and "bad\\\\" in caplog.text
  feats = fz.answer_features(examples, answers)
  assert feats["answer_length"][:, 0].tolist() == [1, 2, 0, 1]


def test_squad_open_splits_by_article():
  train = datasets.load_squad_open("train")
  dev = datasets.load_squad_open("dev")
  assert len(train) + len(dev) == 10570
  assert 0.1 < len(dev) / 10570 < 0.35
  train_ids = {e.qid for e in train}
  assert not train_ids & {e.qid for e in dev}
  assert datasets.load_squad_open("test") == dev
  # Each question knows its gold paragraph, and no article is in both splits.
  assert all(e.doc_id and "#" in e.doc_id for e in train + dev)
  assert not {e.doc_id.rsplit("#", 1)[0] for e in train} & \
      {e.doc_id.rsplit("#", 1)[0] for e in dev}


def test_dataset_positions_resume_exactly():
  feats = {"question_length": np.arange(10, dtype=np.int32),
           "question_ids": np.arange(10, dtype=np.int32)[:, None] * np.ones([1, 3], np.int32)}
  make = training_data.make_dataset_fn(feats, batch_size=4, seed=5)
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


def test_two_hosts_read_the_batches_one_host_gives_its_two_replicas():
  from realm_tf.training.trainer import InputShard  # pylint: disable=g-import-not-at-top
  feats = {"question_length": np.arange(10, dtype=np.int32)}
  make = training_data.make_dataset_fn(feats, batch_size=2, seed=5)
  one = [b["question_length"].numpy().tolist() for _, b in zip(range(6), make(0))]
  hosts = [[b for _, b in zip(range(3), make(0, InputShard(i, 2, 2)))] for i in range(2)]
  # One host's successive batches go to replicas 0, 1, 0, ...; host i reads replica i's.
  for i in range(2):
    assert [b["question_length"].numpy().tolist() for b in hosts[i]] == one[i::2]
  # Each host resumes from its own position (one past the last example it read).
  pos = int(hosts[1][0]["data_position"].numpy().max())
  assert pos == 4
  again = next(iter(make(pos, InputShard(1, 2, 2))))
  assert again["question_length"].numpy().tolist() == one[3]


# ---------------------------------------------------------------------------------------------
# Reader positives on an index whose answer blocks the retriever can never put in the top K.

@pytest.fixture(scope="module")
def unreachable(tmp_path_factory):
  work = str(tmp_path_factory.mktemp("unreachable"))
  corpus = os.path.join(work, "corpus")
  ids = T.make_text_corpus(corpus, T.FACTS + T.distractor_facts(8))
  # Projection size 4: the 8 distractors (± each axis) always outscore the 12 facts (score 0).
  index_dir, _ = T.make_bundle(work, corpus, projection_size=4,
                               embeddings_fn=T.unreachable_answers(ids[:len(T.FACTS)]))
  return {"work": work, "corpus": corpus, "index": index_dir,
          "fact_ids": ids[:len(T.FACTS)]}


def _unreachable_config(steps, reader_positives):
  return finetune.FinetuneConfig(
      model=OpenQAConfig(reader=T.micro_reader_config(), retriever_beam_size=5000,
                         reader_beam_size=2),
      batch_size=4, num_train_steps=steps, learning_rate=1e-2, warmup_steps=0,
      checkpoint_every=steps, log_every=5, reader_positives=reader_positives)


def _by_rule(model, examples, tok, corpus):
  """compute_loss outputs (numpy) of `model` under each reader_positives rule."""
  feats = {k: tf.constant(v) for k, v in
           QuestionFeaturizer(model.config.feature_config, tok).featurize(examples).items()}
  gold = tf.constant(training_data.gold_row_features(examples, model.index, corpus))
  out = {}
  for rule in ("none", "beam", "gold"):
    r = model.compute_loss(dict(feats, gold_rows=gold), training=False, reader_positives=rule)
    out[rule] = {k: r[k].numpy() for k in ("reader_loss", "reader_has_answer", "reader_rows",
                                           "reader_substituted", "retriever_loss")}
  return out


def test_gold_positives_train_a_reader_orqa_would_not(unreachable):
  tok, examples, corpus = RealmTokenizer(), T.examples(), unreachable["corpus"]
  bundle, index = finetune.load_index(unreachable["index"], corpus)
  fact_rows = [index.block_ids.tolist().index(b) for b in unreachable["fact_ids"]]
  gold = training_data.gold_row_features(examples, index, corpus)
  assert gold.shape == (12, training_data.MAX_GOLD_BLOCKS)
  np.testing.assert_array_equal(gold[:, 0], fact_rows)
  assert np.all(gold[:, 1:] == -1)
  # The starting point, built and warm-started as finetune.run does.
  tf_keras.utils.set_random_seed(0)
  cfg = _unreachable_config(24, "gold")
  model = finetune.build_model(dataclasses.replace(
      cfg.model, retriever=finetune.index_retriever_config(bundle)), index, tok)
  warm_start.init_openqa(model, os.path.join(bundle.path, "query_embedder"))
  before = _by_rule(model, examples, tok, corpus)
  # ORQA's rule: no read block ever bears an answer, so the reader gets no signal at all.
  assert not before["none"]["reader_has_answer"].any()
  assert np.all(before["none"]["reader_loss"] == 0)
  assert not np.isin(before["none"]["reader_rows"], fact_rows).any()
  # beam and gold read the fact block (the only answer-bearing one) in the last slot.
  for rule in ("beam", "gold"):
    assert before[rule]["reader_has_answer"].all() and before[rule]["reader_substituted"].all()
    np.testing.assert_array_equal(before[rule]["reader_rows"][:, 1], fact_rows)
    assert np.all(before[rule]["reader_loss"] > 0)
    np.testing.assert_allclose(before[rule]["retriever_loss"], before["none"]["retriever_loss"])

  model_dir = os.path.join(unreachable["work"], "gold")
  tf_keras.utils.set_random_seed(0)
  result = finetune.run(_job(cfg, unreachable["index"], corpus, model_dir), examples=examples)
  # The logged metrics of the last step: every question trained the reader.
  assert result["reader_has_answer"] == 1.0 and result["reader_loss_nonzero"] == 1.0
  assert result["reader_substituted"] == 1.0
  trained, config, _ = finetune.load_finetuned(model_dir)
  assert config.reader_positives == "gold"
  after = _by_rule(trained, examples, tok, corpus)
  assert after["gold"]["reader_loss"].mean() < 0.7 * before["gold"]["reader_loss"].mean(), (
      before["gold"]["reader_loss"], after["gold"]["reader_loss"])
  # The answer blocks are still out of the query tower's reach: ORQA's rule would still give 0.
  assert not after["none"]["reader_has_answer"].any()


def test_orqa_rule_logs_no_reader_signal(unreachable):
  model_dir = os.path.join(unreachable["work"], "none")
  result = finetune.run(_job(_unreachable_config(2, "none"), unreachable["index"],
                             unreachable["corpus"], model_dir), examples=T.examples())
  assert result["reader_has_answer"] == 0.0 and result["reader_loss_nonzero"] == 0.0
  assert result["reader_substituted"] == 0.0 and result["reader_loss"] == 0.0
  with pytest.raises(ValueError, match="reader_positives"):
    _unreachable_config(2, "sometimes")


# ---------------------------------------------------------------------------------------------
# Your own question sets.

def test_jsonl_questions_round_trip_through_finetune_and_evaluate(env, tmp_path, caplog):
  path = tmp_path / "my_questions.jsonl"
  lines = [json.dumps({"question": e.question, "answers": list(e.answers), "id": f"mine-{i}",
                       "doc_id": e.doc_id}) for i, e in enumerate(T.examples(8))]
  lines.insert(3, json.dumps({"question": "What has no answer?", "answers": []}))
  lines.insert(5, "")
  lines.append(json.dumps({"question": "Which planet is largest?", "answers": ["Jupit(er)?"],
                           "answer_regex": True}))
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  dataset = f"jsonl:{path}"
  config = dataclasses.replace(_config(4), dataset=dataset, reader_positives="gold")
  model_dir = str(tmp_path / "run")
  with caplog.at_level(py_logging.WARNING):
    result = finetune.run(_job(config, env["index"], env["corpus"], model_dir))
  assert f"{path}:4: missing or empty \"answers\"" in caplog.text
  assert result["num_examples"] == 9 and np.isfinite(result["loss"])
  # The regex question's answers were expanded and cached, as for CuratedTREC.
  with open(os.path.join(model_dir, "regex_answers.json")) as f:
    assert json.load(f)[-1] == ["Jupiter"]
  model, saved, _ = finetune.load_finetuned(model_dir)
  assert saved.dataset == dataset
  examples = datasets.load_examples(dataset, "test")
  assert [e.qid for e in examples] == [f"mine-{i}" for i in range(8)] + \
      ["my_questions.jsonl:11"]
  assert examples[-1].is_regex and examples[0].doc_id == "fact0"
  out = evaluate_lib.evaluate(model, examples, batch_size=8, recall_ks=(1, 5))
  assert out["num_examples"] == 9 and out["model_calls"] == 2
  # A strict run stops on the bad line, naming file and line, before writing to its model_dir.
  strict_dir = str(tmp_path / "strict")
  with pytest.raises(datasets.DatasetError, match=f"{path}:4: missing or empty"):
    finetune.run(_job(config, env["index"], env["corpus"], strict_dir, strict=True))
  assert not os.path.exists(strict_dir)


def test_retrieval_score_scale_scales_the_warm_started_query_tower(env, tmp_path):
  tok, examples = env["tok"], T.examples()
  cfg = dataclasses.replace(_config(1), learning_rate=0.0, retrieval_score_scale=0.1)
  result = finetune.run(_job(cfg, env["index"], env["corpus"], str(tmp_path / "run")),
                        examples=examples)
  assert result["warm_start"]["retrieval_score_scale"] == 0.1
  model, config, _ = finetune.load_finetuned(str(tmp_path / "run"))
  assert config.retrieval_score_scale == 0.1
  feats = QuestionFeaturizer(model.config.feature_config, tok).featurize(examples)
  feats = {k: tf.constant(v) for k, v in feats.items()}
  # lr 0: the only change is the scale, so every retrieval logit is 0.1 × the bundle's own.
  np.testing.assert_allclose(model.embed_questions(feats).numpy(),
                             0.1 * env["model"].embed_questions(feats).numpy(), rtol=1e-4,
                             atol=1e-6)


def test_retriever_lr_multiplier_zero_keeps_the_query_tower(env, tmp_path):
  tok, examples = env["tok"], T.examples()
  feats = QuestionFeaturizer(env["model"].config.feature_config, tok).featurize(examples)
  feats = {k: tf.constant(v) for k, v in feats.items()}
  start = env["model"].embed_questions(feats).numpy()
  moved = {}
  for multiplier in (0.0, 1.0):
    model_dir = str(tmp_path / f"m{multiplier}")
    finetune.run(_job(dataclasses.replace(_config(3), retriever_lr_multiplier=multiplier),
                      env["index"], env["corpus"], model_dir), examples=examples)
    model, _, _ = finetune.load_finetuned(model_dir)
    moved[multiplier] = float(np.abs(model.embed_questions(feats).numpy() - start).max())
    reader_change = max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in
                        zip(model.reader.trainable_variables,
                            env["model"].reader.trainable_variables))
    assert reader_change > 1e-3, (multiplier, reader_change)  # the reader trains either way
  assert moved[0.0] == 0.0 and moved[1.0] > 1e-3, moved


def test_float16_finetuning_optimizer_scales_the_loss_once(env):
  policy = tf_keras.mixed_precision.global_policy()
  tf_keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    optimizer = finetune._optimizer(env["config"], env["model"])  # pylint: disable=protected-access
  finally:
    tf_keras.mixed_precision.set_global_policy(policy)
  assert isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
  assert not isinstance(optimizer.inner_optimizer, tf_keras.mixed_precision.LossScaleOptimizer)


# ---------------------------------------------------------------------------------------------
# The BM25 + reader baseline: a reader fine-tuned behind BM25.

def test_bm25_finetuning_reads_only_bm25s_rows(unreachable, tmp_path):
  """finetune --retriever=bm25: the reader reads BM25's top K (no logit, no retriever loss).

  On this index the query tower can never put an answer block in its top K, so a reader that
  read the dense beam would see no answer (ORQA's rule: test_orqa_rule_logs_no_reader_signal);
  BM25 ranks each question's fact block first."""
  from realm_tf.retrieval.bm25 import BM25Index  # pylint: disable=g-import-not-at-top
  from realm_tf.stages.openqa_task import openqa_task  # pylint: disable=g-import-not-at-top
  tok, examples, corpus = RealmTokenizer(), T.examples(), unreachable["corpus"]
  bundle, index = finetune.load_index(unreachable["index"], corpus)
  fact_rows = [index.block_ids.tolist().index(b) for b in unreachable["fact_ids"]]
  cfg = dataclasses.replace(_unreachable_config(3, "none"), retriever="bm25")
  tf_keras.utils.set_random_seed(0)
  model = finetune.build_model(dataclasses.replace(
      cfg.model, retriever=finetune.index_retriever_config(bundle)), index, tok)
  warm_start.init_openqa(model, os.path.join(bundle.path, "query_embedder"))
  featurizer = QuestionFeaturizer(model.config.feature_config, tok)
  # The training features carry BM25's top K rows of each question (K = 2 blocks read).
  _, feats = training_data.training_features(examples, model, featurizer, corpus,
                                             str(tmp_path / "features"), "none", 100, "bm25")
  texts = [t + " " + b for t, b in zip(*index.texts(range(index.size)))]
  _, want = BM25Index.from_texts(texts).search([e.question for e in examples], 2)
  np.testing.assert_array_equal(feats["bm25_rows"], want)
  np.testing.assert_array_equal(feats["bm25_rows"][:, 0], fact_rows)
  # The task reads exactly those rows, with zero logits, and its loss is the reader's alone.
  batch = {k: tf.constant(v) for k, v in feats.items()}
  task = openqa_task("none", "bm25")
  first = task.device_first(model, batch, False)
  np.testing.assert_array_equal(first["beam_rows"].numpy(), feats["bm25_rows"])
  assert not first["beam_scores"].numpy().any()
  out = model.loss_from_beam(batch, first, task.host(model, batch, first))
  np.testing.assert_array_equal(out["reader_rows"].numpy(), feats["bm25_rows"])
  assert out["reader_has_answer"].numpy().all()
  loss, metrics = task(model, batch, False)
  np.testing.assert_allclose(loss.numpy(), out["reader_loss"].numpy(), rtol=1e-6)
  assert float(metrics["retriever_loss"][0]) == 0.0
  # The whole run: every question's reader had an answer (the dense beam gives none).
  model_dir = str(tmp_path / "bm25")
  tf_keras.utils.set_random_seed(0)
  result = finetune.run(_job(cfg, unreachable["index"], corpus, model_dir), examples=examples)
  assert result["reader_has_answer"] == 1.0 and result["beam_has_answer"] == 1.0
  assert result["retriever_loss"] == 0.0 and result["reader_loss"] > 0.0
  trained, config, _ = finetune.load_finetuned(model_dir)
  assert config.retriever == "bm25"
  # The query tower got no gradient; the reader trained.
  query = {k: tf.constant(v) for k, v in featurizer.featurize(examples).items()}
  np.testing.assert_array_equal(trained.embed_questions(query).numpy(),
                                model.embed_questions(query).numpy())
  assert max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in
             zip(trained.reader.trainable_variables, model.reader.trainable_variables)) > 1e-3
  # Evaluation behind BM25 reads it as it was trained: no retrieval logit.
  path = tmp_path / "questions.jsonl"
  path.write_text("".join(json.dumps({"question": e.question, "answers": list(e.answers)}) + "\n"
                          for e in examples[:4]), encoding="utf-8")
  scored = evaluate_lib.run(evaluate_lib.EvaluateConfig(
      model_dir=model_dir, dataset=f"jsonl:{path}", retriever="bm25", recall_ks=[1]))
  assert scored["bm25_logits"] == "zero" and scored["recall@1"] == 1.0
  assert scored["predictions"].endswith("-bm25.jsonl")
  # A run recorded before the field existed is a dense one (it resumes as such).
  record = finetune.FinetuneConfig().to_dict()
  del record["retriever"]
  assert finetune.FinetuneConfig.from_dict(record).retriever == "dense"
  assert finetune.FinetuneConfig.with_defaults(record)["retriever"] == "dense"
  with pytest.raises(ValueError, match="retriever must be one of"):
    dataclasses.replace(cfg, retriever="tfidf")


def test_bm25_reader_is_trained_over_the_top_k_in_one_softmax_by_default(unreachable, tmp_path):
  """The BM25 + reader baseline as the command line sets it up with no extra flag: the reader is
  trained over BM25's top k = --reader_beam_size (5) blocks with ONE softmax over all their
  spans, its loss the marginal over the gold spans across the k blocks, as evaluation reads them
  (with no retrieval logit the reader itself must choose among them). The loss is computed here
  by hand from each block read on its own."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import finetune as finetune_cli  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling import openqa_features as features_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.stages.openqa_task import openqa_task  # pylint: disable=g-import-not-at-top
  fv = flags.FlagValues()
  finetune_cli.define_flags(fv)
  fv(["finetune", "--dataset=squad_open", "--retriever=bm25"])
  cfg = finetune_cli.config_from_flags(fv)  # the user's defaults; the reader shrunk below
  tok, examples, corpus = RealmTokenizer(), T.examples(), unreachable["corpus"]
  bundle, index = finetune.load_index(unreachable["index"], corpus)
  tf_keras.utils.set_random_seed(0)
  model = finetune.build_model(dataclasses.replace(
      cfg.model, reader=T.micro_reader_config(),
      retriever=finetune.index_retriever_config(bundle)), index, tok)
  k = model.train_reader_beam_size
  assert k == model.reader_beam_size == 5
  _, feats = training_data.training_features(
      examples, model, QuestionFeaturizer(model.config.feature_config, tok), corpus,
      str(tmp_path / "features"), cfg.reader_positives, 100, cfg.retriever)
  batch = {key: tf.constant(v) for key, v in feats.items()}
  task = openqa_task(cfg.reader_positives, cfg.retriever)  # what finetune.run trains with
  loss, _ = task(model, batch, False)
  first = task.device_first(model, batch, False)
  out = model.loss_from_beam(batch, first, task.host(model, batch, first),
                             reader_positives=cfg.reader_positives)
  # BM25 ranks each fact block first, so nothing is substituted: the k blocks read are BM25's.
  assert not out["reader_substituted"].numpy().any()
  np.testing.assert_array_equal(out["reader_rows"].numpy(), feats["bm25_rows"][:, :k])
  # By hand: every span of every one of the k blocks (each read alone, zero retrieval logit) in
  # one softmax; the loss is -log of the probability of the gold spans among them all.
  logits, gold = [], []
  continuation = model._continuation()  # pylint: disable=protected-access
  for j in range(k):
    inputs = model.reader_inputs(batch, feats["bm25_rows"][:, j:j + 1])
    span_logits, span_mask = model.read(inputs, tf.zeros([len(examples), 1]))
    labels = features_lib.gold_span_labels(inputs["input_word_ids"], batch["answer_ids"],
                                           batch["answer_length"], span_mask, continuation)
    logits.append(span_logits.numpy().reshape(len(examples), -1).astype(np.float64))
    gold.append(labels.numpy().reshape(len(examples), -1))
  logits, gold = np.concatenate(logits, axis=1), np.concatenate(gold, axis=1)
  assert gold[:, :gold.shape[1] // k].any(axis=1).all()  # the top block holds a gold span
  by_hand = (np.logaddexp.reduce(logits, axis=1) -
             np.logaddexp.reduce(np.where(gold, logits, -np.inf), axis=1))
  np.testing.assert_allclose(loss.numpy(), by_hand, rtol=1e-4)
  # Not k softmaxes: the top block's own loss, alone, is another number.
  alone = (np.logaddexp.reduce(logits[:, :logits.shape[1] // k], axis=1) -
           np.logaddexp.reduce(np.where(gold, logits, -np.inf)[:, :logits.shape[1] // k], axis=1))
  assert np.all(np.abs(loss.numpy() - alone) > 1e-3), (loss.numpy(), alone)
