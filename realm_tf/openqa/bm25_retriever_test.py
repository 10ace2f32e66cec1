"""Tests of the BM25 baselines behind one reader: what the reader adds for BM25's blocks."""
import numpy as np
import pytest
import tensorflow as tf

from realm_tf.openqa import bm25_retriever
from realm_tf.modeling.openqa_features import QuestionFeaturizer
from realm_tf.stages import evaluate as E
from realm_tf.testing import openqa_models as T
from realm_tf.text import RealmTokenizer

SCALE = 0.05


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
  """A micro model whose query tower was rescaled by SCALE (as fine-tuning's
  retrieval_score_scale does), and its query embeddings of 8 questions before that."""
  tok = RealmTokenizer()
  model = T.micro_model(str(tmp_path_factory.mktemp("corpus")), tok, seed=1, reader_beam_size=5)
  examples = T.examples(8)
  feats = QuestionFeaturizer(model.config.feature_config, tok).featurize(examples)
  unscaled = model.embed_questions({k: tf.constant(v) for k, v in feats.items()}).numpy()
  model.query_projection.rescale(SCALE)
  return {"model": model, "examples": examples, "feats": feats, "unscaled": unscaled}


def test_evaluate_reads_bm25_blocks_with_the_models_own_retrieval_logit(scaled):
  model, examples, feats = scaled["model"], scaled["examples"], scaled["feats"]
  emb = model.index.embeddings_np
  predictor = E.Predictor(model, num_retrieved=5, retriever="bm25")  # evaluate's default
  given = predictor.retrieve_fn(examples, feats)
  rows = given["rows"]
  # The logit of each BM25 block is q · emb[row] at the model's retrieval score scale.
  want = SCALE * np.einsum("bd,bkd->bk", scaled["unscaled"], emb[rows])
  assert np.abs(want).max() > 1.0  # large enough that a zero logit changes the answer
  np.testing.assert_allclose(given["reader_logits"], want, rtol=1e-4, atol=1e-4)
  # ... which is exactly what the dense path adds for the same block.
  dense = model.predict_spans({k: tf.constant(v) for k, v in feats.items()},
                              num_retrieved=model.index.size)
  dense_rows, dense_scores = dense["rows"].numpy(), dense["retrieval_scores"].numpy()
  for b in range(len(examples)):
    for k, r in enumerate(rows[b]):
      np.testing.assert_allclose(given["reader_logits"][b, k],
                                 dense_scores[b, list(dense_rows[b]).index(r)], rtol=1e-4,
                                 atol=1e-4)
  # BM25's own scores are what the evidence shows.
  np.testing.assert_allclose(given["scores"],
                             [np.sort(predictor.retrieve_fn.scores(e.question))[::-1][:5]
                              for e in examples], rtol=1e-5)
  # evaluate's answers are the reader's over BM25's blocks with those logits, not with zeros.
  inputs = {k: tf.constant(feats[k]) for k in ("query/input_word_ids", "query/input_mask",
                                               "query/input_type_ids", "question_ids",
                                               "question_length")}

  def probabilities(logits):
    out = model.predict_spans(inputs, rows=tf.constant(rows),
                              retrieval_scores=tf.constant(logits, tf.float32))
    return out["probability"].numpy()
  result = E.evaluate(model, examples, batch_size=8, recall_ks=(5,), retriever="bm25")
  assert result["retriever"] == "bm25" and result["bm25_logits"] == "dense"
  got = [p["probability"] for p in E.Predictor(model, num_retrieved=5,
                                               retriever="bm25").predict(examples)]
  np.testing.assert_allclose(got, probabilities(want), rtol=1e-4)
  assert np.abs(probabilities(want) - probabilities(np.zeros_like(want))).max() > 1e-3


def test_zero_logit_is_named_and_reads_without_a_retrieval_logit(scaled):
  model, examples, feats = scaled["model"], scaled["examples"], scaled["feats"]
  predictor = E.Predictor(model, num_retrieved=5, retriever="bm25", bm25_logits="zero")
  given = predictor.retrieve_fn(examples, feats)
  assert not given["reader_logits"].any()
  result = E.evaluate(model, examples[:2], recall_ks=(5,), retriever="bm25", bm25_logits="zero")
  assert result["bm25_logits"] == "zero"
  # The logit a reader is read with by default is the one it was fine-tuned with.
  assert bm25_retriever.default_reader_logits("dense") == "dense"
  assert bm25_retriever.default_reader_logits("bm25") == "zero"
  with pytest.raises(ValueError, match="reader_logits must be one of"):
    bm25_retriever.BM25Retriever(model.index, 5, model, "bm25_scores")
  with pytest.raises(ValueError, match="needs the model"):
    bm25_retriever.BM25Retriever(model.index, 5)(examples, feats)
  with pytest.raises(ValueError, match="bm25_logits must be one of"):
    E.EvaluateConfig(model_dir="x", retriever="bm25", bm25_logits="none")
