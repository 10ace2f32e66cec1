"""Tests for the two-tower retriever: scores, gradients to both towers, shared towers, config."""
import numpy as np
import pytest
import tensorflow as tf

from realm_tf.modeling.encoder_config import EncoderConfig
from realm_tf.modeling.retriever import INPUT_KEYS, Retriever, RetrieverConfig

ENC = EncoderConfig(vocab_size=60, hidden_size=16, num_layers=1, num_attention_heads=2,
                    intermediate_size=32, max_position_embeddings=32, dropout_rate=0.0,
                    attention_dropout_rate=0.0)


def _packed(shape, seed):
  ids = tf.random.stateless_uniform(shape, seed=[seed, 0], minval=1, maxval=60, dtype=tf.int32)
  return {"input_word_ids": ids, "input_mask": tf.ones(shape, tf.int32),
          "input_type_ids": tf.zeros(shape, tf.int32)}


def _batch(b=2, c=3):
  return {"query": _packed([b, 6], 1), "candidates": _packed([b, c, 10], 2)}


def test_scores_are_inner_products_of_tower_embeddings():
  r = Retriever(RetrieverConfig(encoder=ENC, projection_size=8))
  batch = _batch()
  scores = r(batch).numpy()
  assert scores.shape == (2, 3)
  q = r.embed_queries(batch["query"]).numpy()
  flat = {k: tf.reshape(v, [-1, 10]) for k, v in batch["candidates"].items()}
  d = r.embed_documents(flat).numpy().reshape(2, 3, 8)
  np.testing.assert_allclose(scores, np.einsum("bd,bcd->bc", q, d), rtol=1e-5, atol=1e-5)
  # Separate towers: different weights give different embeddings of the same input.
  assert np.abs(r.embed_queries(batch["query"]).numpy()
                - r.embed_documents(batch["query"]).numpy()).max() > 1e-3


def test_gradient_flows_to_both_towers():
  r = Retriever(RetrieverConfig(encoder=ENC, projection_size=8))
  batch = _batch()
  r(batch)
  with tf.GradientTape() as tape:
    scores = r(batch, training=True)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.constant([0, 2]), logits=scores))
  parts = {"query_encoder": r.query_encoder, "query_projection": r.query_projection,
           "doc_encoder": r.doc_encoder, "doc_projection": r.doc_projection}
  variables = {name: part.trainable_variables for name, part in parts.items()}
  grads = tape.gradient(loss, variables)
  for name, gs in grads.items():
    norm = sum(float(tf.reduce_sum(tf.square(tf.convert_to_tensor(g)))) for g in gs if g is not None)
    assert norm > 0, name
  # Every projection weight, including the layer norm, gets a gradient.
  assert all(g is not None for g in grads["query_projection"] + grads["doc_projection"])
  assert len(variables["doc_projection"]) == 4  # dense kernel/bias + layer norm gamma/beta


def test_shared_towers_use_one_set_of_weights():
  r = Retriever(RetrieverConfig(encoder=ENC, projection_size=8, share_towers=True))
  batch = _batch()
  r(batch)
  assert r.doc_encoder is r.query_encoder and r.doc_projection is r.query_projection
  np.testing.assert_allclose(r.embed_queries(batch["query"]).numpy(),
                             r.embed_documents(batch["query"]).numpy(), atol=1e-6)
  separate = Retriever(RetrieverConfig(encoder=ENC, projection_size=8))
  separate(batch)
  assert len(r.trainable_variables) * 2 == len(separate.trainable_variables)


def test_config_round_trip_and_build_towers():
  cfg = RetrieverConfig(encoder=ENC, projection_size=8, query_seq_length=6, doc_seq_length=10,
                        projection_layer_norm=False)
  again = RetrieverConfig.from_dict(cfg.to_dict())
  assert again == cfg
  r = Retriever(again).build_towers()
  assert r.query_projection.layer_norm is None
  out = r.embed_documents({k: tf.zeros([1, 10], tf.int32) for k in INPUT_KEYS})
  assert out.shape == (1, 8)
  assert RetrieverConfig.from_dict({"encoder": "tiny"}).encoder_config.hidden_size == 128


def test_mean_pooling_averages_unpadded_tokens_and_ignores_padding():
  r = Retriever(RetrieverConfig(encoder=ENC, projection_size=8, pooling="mean"))
  x = _packed([2, 6], 3)
  # The same two texts padded to 10 tokens: padding must not change their embeddings.
  padded = {k: tf.concat([v, tf.zeros([2, 4], tf.int32)], axis=1) for k, v in x.items()}
  np.testing.assert_allclose(r.embed_queries(x).numpy(), r.embed_queries(padded).numpy(),
                             rtol=1e-4, atol=1e-4)
  seq = r.query_encoder(x)["sequence_output"].numpy()
  expected = r.query_projection(tf.constant(seq.mean(axis=1))).numpy()
  np.testing.assert_allclose(r.embed_queries(x).numpy(), expected, rtol=1e-5, atol=1e-5)
  # The [CLS] pooler is not what a mean-pooled tower embeds.
  cls = r.query_projection(r.query_encoder(x)["pooled_output"]).numpy()
  assert np.abs(cls - expected).max() > 1e-3
  assert RetrieverConfig.from_dict(r.config.to_dict()).pooling == "mean"


def test_unknown_pooling_is_refused():
  with pytest.raises(ValueError, match="pooling must be one of.*'max'"):
    RetrieverConfig(encoder=ENC, pooling="max")
