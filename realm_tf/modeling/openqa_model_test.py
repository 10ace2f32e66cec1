"""Tests of the open-QA model: ORQA losses, reader positives, frozen untracked index, batched
prediction, and question embeddings that match the index's pooling."""
import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.modeling import openqa_features as F
from realm_tf.openqa import metrics
from realm_tf.testing import openqa_models as T
from realm_tf.modeling.openqa_model import OpenQAConfig, OpenQAModel, marginal_log_loss
from realm_tf.text import RealmTokenizer


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  tok = RealmTokenizer()
  model = T.micro_model(str(tmp_path_factory.mktemp("corpus")), tok, seed=0,
                        retriever_beam_size=5000, reader_beam_size=3)
  fz = F.QuestionFeaturizer(model.config.feature_config, tok)
  return tok, model.index, model, fz


def _tensors(feats):
  return {k: tf.constant(v) for k, v in feats.items()}


def test_marginal_log_loss_numbers():
  logits = tf.constant([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [5.0, -1.0, 0.5]])
  correct = tf.constant([[True, False, True], [False, False, False], [False, True, False]])
  loss, anyc = marginal_log_loss(logits, correct)
  want0 = np.log(np.exp([1, 2, 3]).sum()) - np.log(np.exp([1, 3]).sum())
  want2 = np.log(np.exp([5, -1, 0.5]).sum()) - (-1.0)
  np.testing.assert_allclose(loss.numpy(), [want0, 0.0, want2], rtol=1e-5)
  assert anyc.numpy().tolist() == [True, False, True]


def test_index_is_frozen_and_not_checkpointed(setup, tmp_path):
  _, index, model, _ = setup
  names = [v.name for v in model.variables]
  assert not any("index_" in n for n in names), names
  assert model.retriever_beam_size == index.size == 12  # 5000 capped at the corpus size
  path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
  keys = [k for k, _ in tf.train.list_variables(path)]
  assert any("query_encoder" in k for k in keys) and any("span_head" in k for k in keys)
  assert not any("index" in k for k in keys), [k for k in keys if "index" in k]


def test_losses_follow_orqa(setup):
  tok, index, model, fz = setup
  examples = T.examples(6) + [F.OpenQAExample("nowhere", "Where is Zanzibar?", ("Zanzibar",))]
  feats = _tensors(fz.featurize(examples))
  out = model.compute_loss(feats, training=False)
  fwd = model(feats, training=False)
  scores, rows = fwd["beam_scores"].numpy(), fwd["beam_rows"].numpy()
  for i, e in enumerate(examples):
    bodies = index.texts(rows[i])[1]
    correct = np.array([metrics.has_answer(body, e.answers, False) for body in bodies])
    if correct.any():
      want = np.log(np.exp(scores[i] - scores[i].max()).sum()) - \
          np.log(np.exp(scores[i][correct] - scores[i].max()).sum())
      assert out["retriever_loss"].numpy()[i] == pytest.approx(want, rel=1e-4, abs=1e-4)
      assert out["beam_has_answer"].numpy()[i]
    else:
      assert out["retriever_loss"].numpy()[i] == 0.0
  # No block holds "Zanzibar": both terms are zero, not NaN.
  assert out["beam_has_answer"].numpy()[-1] == 0
  assert out["reader_loss"].numpy()[-1] == 0.0 and out["loss"].numpy()[-1] == 0.0
  # Reader loss is positive exactly where a gold span is among the blocks read.
  read = rows[:, :model.reader_beam_size]
  for i, e in enumerate(examples):
    has = any(metrics.has_answer(index.texts([r])[1][0], e.answers, False) for r in read[i])
    assert bool(out["reader_has_answer"].numpy()[i]) == has
    assert (out["reader_loss"].numpy()[i] > 0) == has
  assert np.all(np.isfinite(out["loss"].numpy()))


def test_gradients_reach_query_tower_and_reader(setup):
  _, _, model, fz = setup
  feats = _tensors(fz.featurize(T.examples(4)))
  with tf.GradientTape() as tape:
    loss = tf.reduce_mean(model.compute_loss(feats, training=True)["loss"])
  grads = tape.gradient(loss, model.trainable_variables)
  by_name = {v.name: g for v, g in zip(model.trainable_variables, grads)}
  proj = [g for n, g in by_name.items() if "query_projection" in n and "kernel" in n]
  head = [g for n, g in by_name.items() if "score_dense" in n and "kernel" in n]
  assert proj and float(tf.norm(proj[0])) > 0
  assert head and float(tf.norm(head[0])) > 0


def test_batch_of_eight_predictions_stay_in_blocks(setup):
  tok, index, model, fz = setup
  examples = T.examples(8)
  res = model.predict_spans(_tensors(fz.featurize(examples)), num_retrieved=6)
  assert res["rows"].shape == (8, 6) and res["retrieval_scores"].shape == (8, 6)
  rows = res["rows"].numpy()
  block = res["block_index"].numpy()
  assert np.all((block >= 0) & (block < model.reader_beam_size))
  chosen = rows[np.arange(8), block]
  start, end = res["start_piece"].numpy(), res["end_piece"].numpy()
  lengths = np.array([len(index.lookup.body_ids_np(index.lookup_rows[r])) for r in chosen])
  assert np.all(start >= 0) and np.all(end >= start) and np.all(end < lengths)
  assert np.all(end - start < model.config.reader.max_span_width)
  prob = res["probability"].numpy()
  assert np.all((prob > 0) & (prob <= 1))
  texts = F.span_text(tok, [index.texts([r])[1][0] for r in chosen], start, end).numpy()
  for text, r in zip(texts, chosen):
    assert text and text.decode() in index.texts([r])[1][0]
  # Retrieval order: scores sorted, and equal to q · e for the returned rows.
  scores = res["retrieval_scores"].numpy()
  assert np.all(np.diff(scores, axis=1) <= 1e-6)


def _row_of_answer(index, answer):
  bodies = index.texts(range(index.size))[1]
  rows = [r for r, body in enumerate(bodies) if metrics.has_answer(body, [answer], False)]
  assert len(rows) == 1, (answer, rows)
  return rows[0]


def test_reader_positives_substitute_the_last_read_block(setup):
  tok, index, model, fz = setup
  examples = T.examples() + [F.OpenQAExample("nowhere", "Where is Zanzibar?", ("Zanzibar",))]
  feats = _tensors(fz.featurize(examples))
  k = model.reader_beam_size
  none = model.compute_loss(feats, reader_positives="none")
  beam = model.compute_loss(feats, reader_positives="beam")
  fwd = model(feats)
  rows, scores = fwd["beam_rows"].numpy(), fwd["beam_scores"].numpy()
  answer_rows = [_row_of_answer(index, e.answers[0]) for e in examples[:-1]]
  read_has = [answer_rows[i] in rows[i, :k] for i in range(len(answer_rows))] + [False]
  # ORQA's rule: rows are the top K, and the reader loss is zero where they bear no answer.
  np.testing.assert_array_equal(none["reader_rows"].numpy(), rows[:, :k])
  assert none["reader_has_answer"].numpy().tolist() == read_has
  assert not none["reader_substituted"].numpy().any()
  # The retriever loss does not depend on the rule.
  np.testing.assert_allclose(beam["retriever_loss"].numpy(), none["retriever_loss"].numpy())
  assert 0 < sum(read_has) < len(answer_rows), "the random index should miss some answers"
  got = beam["reader_rows"].numpy()
  for i, has in enumerate(read_has):
    np.testing.assert_array_equal(got[i, :k - 1], rows[i, :k - 1])
    if has or i == len(examples) - 1:
      assert not beam["reader_substituted"].numpy()[i] and got[i, k - 1] == rows[i, k - 1]
    else:  # the beam's (here: only) answer-bearing block takes the last slot
      assert beam["reader_substituted"].numpy()[i] and got[i, k - 1] == answer_rows[i]
  assert beam["reader_has_answer"].numpy().tolist() == [True] * len(answer_rows) + [False]
  assert np.all(beam["reader_loss"].numpy()[:-1] > 0) and beam["reader_loss"].numpy()[-1] == 0

  # gold: the gold document's answer-bearing block; a gold block without the answer, or none,
  # falls back to the beam. Its logit is q · e (checked through the reader loss below).
  gold_rows = np.full([len(examples), 2], -1, np.int32)
  misses = [i for i, has in enumerate(read_has[:-1]) if not has]
  first, second = misses[0], misses[1]
  wrong = next(r for r in range(index.size) if r not in (answer_rows[first], answer_rows[second]))
  gold_rows[first] = [wrong, answer_rows[first]]   # the second gold block bears the answer
  gold_rows[second] = [wrong, -1]                  # no gold block bears it: beam
  gold = model.compute_loss(dict(feats, gold_rows=tf.constant(gold_rows)),
                            reader_positives="gold")
  np.testing.assert_array_equal(gold["reader_rows"].numpy(), got)
  np.testing.assert_allclose(gold["reader_loss"].numpy(), beam["reader_loss"].numpy(), rtol=1e-5)
  # Without gold rows in the features, gold is the beam rule.
  np.testing.assert_array_equal(
      model.compute_loss(feats, reader_positives="gold")["reader_rows"].numpy(), got)
  with pytest.raises(ValueError, match="reader_positives"):
    model.compute_loss(feats, reader_positives="always")


def test_gold_positive_that_the_beam_never_saw(setup):
  """A gold block outside the retriever beam is read with its own logit q · e."""
  tok, index, model, fz = setup
  examples = T.examples(4)
  feats = _tensors(fz.featurize(examples))
  small = OpenQAModel(dataclasses.replace(model.config, retriever_beam_size=model.reader_beam_size),
                      index, tok.vocab, tok.cls_id, tok.sep_id)
  small.build_all()
  small.set_weights(model.get_weights())
  fwd = small(feats)
  rows = fwd["beam_rows"].numpy()
  answer_rows = [_row_of_answer(index, e.answers[0]) for e in examples]
  missing = [i for i in range(4) if answer_rows[i] not in rows[i]]
  assert missing, "some answer block should lie outside the top K"
  gold_rows = np.array([[r] for r in answer_rows], np.int32)
  out = small.compute_loss(dict(feats, gold_rows=tf.constant(gold_rows)), reader_positives="gold")
  beam = small.compute_loss(feats, reader_positives="beam")
  q = small.embed_questions(feats).numpy()
  for i in missing:
    assert out["reader_rows"].numpy()[i, -1] == answer_rows[i]
    assert out["reader_has_answer"].numpy()[i] and not beam["reader_has_answer"].numpy()[i]
  # The substitute is read with logit q · e: the loss equals a direct read of those rows.
  i = missing[0]
  want_rows = out["reader_rows"].numpy()[i:i + 1]
  logits = (q[i] @ index.embeddings_np[want_rows[0]].T)[None]
  one = {k: v[i:i + 1] for k, v in feats.items()}
  inputs = small.reader_inputs(one, tf.constant(want_rows))
  span_logits, span_mask = small.read(inputs, tf.constant(logits, tf.float32))
  labels = F.gold_span_labels(inputs["input_word_ids"], one["answer_ids"], one["answer_length"],
                              span_mask, small.reader.continuation)
  want_loss, _ = marginal_log_loss(tf.reshape(span_logits, [1, -1]), tf.reshape(labels, [1, -1]))
  assert out["reader_loss"].numpy()[i] == pytest.approx(float(want_loss[0]), rel=1e-4)


def test_questions_embed_as_the_mean_pooled_index_does(tmp_path):
  """Fine-tuning, regex expansion and the exports embed questions with the index's pooling."""
  from realm_tf.export import block_table, modules, versioning  # pylint: disable=g-import-not-at-top
  from realm_tf.export import openqa as export_openqa  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import finetune  # pylint: disable=g-import-not-at-top
  from realm_tf.training import warm_start  # pylint: disable=g-import-not-at-top
  tok = RealmTokenizer()
  corpus = str(tmp_path / "corpus")
  T.make_text_corpus(corpus)
  index_dir, _ = T.make_bundle(str(tmp_path), corpus, pooling="mean")
  bundle, index = finetune.load_index(index_dir, corpus)
  retriever = finetune.index_retriever_config(bundle)
  assert retriever.pooling == "mean"
  cfg = OpenQAConfig(retriever=retriever, reader=T.micro_reader_config(), reader_beam_size=3,
                     retriever_beam_size=12)
  model = finetune.build_model(cfg, index, tok)
  warm_start.init_openqa(model, os.path.join(bundle.path, "query_embedder"))
  questions = [e.question for e in T.examples(5)]
  feats = F.QuestionFeaturizer(cfg.feature_config, tok).featurize(T.examples(5))
  packed = {k: tf.constant(feats[f"query/{k}"]) for k in F.QUERY_KEYS}
  want = bundle.query_embedder.embed_queries(packed).numpy()
  mine = model.embed_questions({f"query/{k}": v for k, v in packed.items()}).numpy()
  np.testing.assert_allclose(mine, want, atol=1e-5)
  # The [CLS] pooler would give other vectors, so the check above can fail.
  cls = model.query_projection(model.query_encoder(packed)["pooled_output"]).numpy()
  assert np.abs(cls - want).max() > 1e-2
  # The exported query embedder (strings in, tokenized in the graph) after a save and reload.
  module = modules.QueryEmbedderModule(model, tok)
  path = versioning.publish_saved_model(module, str(tmp_path / "exports"),
                                        modules.QUERY_EMBEDDER, 1, module.signatures())
  served = tf.saved_model.load(path).signatures["serving_default"]
  np.testing.assert_allclose(served(questions=tf.constant(questions))["embeddings"].numpy(), want,
                             atol=1e-5)
  # realm_openqa retrieves with the same embeddings: its evidence is the index's exact top K.
  table = block_table.BlockTable.from_index(index, tok)
  out = export_openqa.OpenQAModule(model, tok, table).answer(tf.constant(questions))
  scores = want @ index.embeddings_np.T
  top = np.argsort(-scores, axis=1, kind="stable")[:, :3]
  np.testing.assert_array_equal(out["evidence_block_ids"].numpy(), index.block_ids[top])
  np.testing.assert_allclose(out["evidence_scores"].numpy(),
                             np.take_along_axis(scores, top, axis=1), atol=1e-4)


def test_training_reads_train_reader_beam_size_blocks(setup):
  tok, index, model, fz = setup
  feats = _tensors(fz.featurize(T.examples()))
  cfg = dataclasses.replace(model.config, train_reader_beam_size=2)
  small = OpenQAModel(cfg, index, tok.vocab, tok.cls_id, tok.sep_id).build_all()
  small.set_weights(model.get_weights())
  assert small.reader_beam_size == model.reader_beam_size == 3
  assert small.train_reader_beam_size == 2 and model.train_reader_beam_size == 3
  full = model.compute_loss(feats, reader_positives="beam")
  two = small.compute_loss(feats, reader_positives="beam")
  assert two["reader_rows"].shape[1] == 2 and full["reader_rows"].shape[1] == 3
  # The first block read is the same; the positive takes the (earlier) last slot.
  np.testing.assert_array_equal(two["reader_rows"].numpy()[:, 0], full["reader_rows"].numpy()[:, 0])
  np.testing.assert_allclose(two["retriever_loss"].numpy(), full["retriever_loss"].numpy(),
                             rtol=1e-5)
  assert two["reader_has_answer"].numpy().all()
  # Prediction still reads reader_beam_size blocks: the same answers as the K = 3 model.
  query = {k: feats[k] for k in ("query/input_word_ids", "query/input_mask",
                                 "query/input_type_ids", "question_ids", "question_length")}
  np.testing.assert_allclose(small.predict_spans(query)["probability"].numpy(),
                             model.predict_spans(query)["probability"].numpy(), rtol=1e-5)
  assert OpenQAConfig.from_dict(cfg.to_dict()) == cfg
