"""Tests of the open-QA model: ORQA losses, frozen untracked index, batched prediction."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from realm_tf.data.block_store import BlockStore
from realm_tf.openqa import features as F
from realm_tf.openqa import metrics
from realm_tf.openqa import testing as T
from realm_tf.openqa.model import FrozenIndex, OpenQAConfig, OpenQAModel, marginal_log_loss
from realm_tf.text import RealmTokenizer


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  tok = RealmTokenizer()
  corpus = str(tmp_path_factory.mktemp("corpus"))
  T.make_text_corpus(corpus)
  store = BlockStore([corpus], tok, doc_seq_length=T.DOC_LEN, keep_text=True)
  dense, lengths = F.dense_bodies(store.body_ids)
  rng = np.random.default_rng(0)
  emb = rng.normal(size=[store.size, 128]).astype(np.float32)
  index = FrozenIndex(emb, store.block_ids, dense, lengths,
                      [t.decode() for t in store.titles.numpy()],
                      [b.decode() for b in store.bodies.numpy()])
  tf_keras.utils.set_random_seed(0)
  cfg = OpenQAConfig(retriever=T.micro_retriever_config(), reader=T.micro_reader_config(),
                     retriever_beam_size=5000, reader_beam_size=3)
  model = OpenQAModel(cfg, index, tok.vocab, tok.cls_id, tok.sep_id).build_all()
  fz = F.QuestionFeaturizer(cfg.feature_config, tok)
  return tok, index, model, fz


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
    correct = np.array([metrics.has_answer(index.bodies[r], e.answers, False) for r in rows[i]])
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
    has = any(metrics.has_answer(index.bodies[r], e.answers, False) for r in read[i])
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
  lengths = index.body_length_np[chosen]
  assert np.all(start >= 0) and np.all(end >= start) and np.all(end < lengths)
  assert np.all(end - start < model.config.reader.max_span_width)
  prob = res["probability"].numpy()
  assert np.all((prob > 0) & (prob <= 1))
  texts = F.span_text(tok, [index.bodies[r] for r in chosen], start, end).numpy()
  for text, r in zip(texts, chosen):
    assert text and text.decode() in index.bodies[r]
  # Retrieval order: scores sorted, and equal to q · e for the returned rows.
  scores = res["retrieval_scores"].numpy()
  assert np.all(np.diff(scores, axis=1) <= 1e-6)
