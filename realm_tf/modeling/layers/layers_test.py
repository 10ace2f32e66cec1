"""Tests for the reusable heads: the tied MLM head and the retrieval projection."""
import numpy as np
import tensorflow as tf

from realm_tf.modeling.encoder_config import EncoderConfig, build_encoder
from realm_tf.modeling.layers import MaskedLMHead, RetrievalProjection

CFG = EncoderConfig(vocab_size=50, hidden_size=16, num_layers=1, num_attention_heads=2,
                    intermediate_size=32, max_position_embeddings=16)


def _inputs():
  return {"input_word_ids": tf.constant([[1, 5, 9, 2]]), "input_mask": tf.ones([1, 4], tf.int32),
          "input_type_ids": tf.zeros([1, 4], tf.int32)}


def test_mlm_head_is_tied_to_the_embedding_variable():
  encoder = build_encoder(CFG)
  seq = encoder(_inputs())["sequence_output"]
  head = MaskedLMHead(encoder.get_embedding_table(), name="mlm")
  logits = head(seq, tf.constant([[1, 3]]))
  assert logits.shape == (1, 2, CFG.vocab_size)
  # Same variable object, not a copy: the head's weights are its transform, layer norm and bias
  # plus the encoder's own table (tracked by reference, never duplicated).
  assert head.embedding_table is encoder.get_embedding_table()
  assert sum(v is encoder.get_embedding_table() for v in head.trainable_variables) == 1
  assert len(head.trainable_variables) == 6
  assert sum(int(np.prod(v.shape)) for v in head.trainable_variables) == (
      CFG.vocab_size * CFG.hidden_size + CFG.hidden_size ** 2 + 3 * CFG.hidden_size
      + CFG.vocab_size)
  # Changing the embedding table changes the logits exactly as h @ E^T + b predicts.
  table = encoder.get_embedding_table()
  table.assign(table * 2.0)
  h = head.layer_norm(head.transform(tf.gather(seq, [[1, 3]], batch_dims=1)))
  expected = tf.matmul(h, table, transpose_b=True) + head.output_bias
  np.testing.assert_allclose(head(seq, tf.constant([[1, 3]])).numpy(), expected.numpy(), atol=1e-5)


def test_mlm_head_gradient_reaches_the_shared_table_and_accepts_a_callable():
  encoder = build_encoder(CFG)
  head = MaskedLMHead(encoder.get_embedding_table)  # lazily resolved
  with tf.GradientTape() as tape:
    seq = encoder(_inputs())["sequence_output"]
    logits = head(seq)  # all positions
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.constant([[3, 4, 5, 6]]), logits=logits))
  assert head.embedding_table is encoder.get_embedding_table()
  table = encoder.get_embedding_table()
  grads = tape.gradient(loss, [table, head.output_bias, head.transform.kernel])
  dense = tf.convert_to_tensor(grads[0]).numpy()
  # Output-side gradient touches every vocabulary row, not just the 4 input ids.
  assert (np.abs(dense).sum(1) > 0).sum() == CFG.vocab_size
  assert all(np.abs(tf.convert_to_tensor(g).numpy()).max() > 0 for g in grads[1:])


def test_knowledge_encoder_lists_the_tied_table_once():
  from realm_tf.modeling.knowledge_encoder import KnowledgeAugmentedEncoder  # pylint: disable=g-import-not-at-top
  model = KnowledgeAugmentedEncoder(CFG, seq_length=6).build_all(max_predictions=2)
  table = model.encoder.get_embedding_table()
  assert model.mlm_head.embedding_table is table
  assert sum(v is table for v in model.trainable_variables) == 1
  assert len({id(v) for v in model.trainable_variables}) == len(model.trainable_variables)


def test_retrieval_projection_layer_norm_and_config():
  proj = RetrievalProjection(128, name="proj")
  x = tf.random.stateless_normal([3, 16], seed=[1, 2]) * 5.0
  y = proj(x).numpy()
  assert y.shape == (3, 128)
  # LayerNorm output at init (gamma 1, beta 0): zero mean, unit variance per row.
  np.testing.assert_allclose(y.mean(-1), 0.0, atol=1e-5)
  np.testing.assert_allclose(y.std(-1), 1.0, atol=1e-3)
  np.testing.assert_allclose(
      y, proj.layer_norm(proj.dense(x)).numpy(), atol=1e-6)

  linear = RetrievalProjection(8, use_layer_norm=False)
  z = linear(x)
  np.testing.assert_allclose(z.numpy(), (x @ linear.dense.kernel + linear.dense.bias).numpy(),
                             atol=1e-5)
  assert linear.layer_norm is None and len(linear.trainable_variables) == 2
  clone = RetrievalProjection.from_config(proj.get_config())
  assert (clone.output_dim, clone.use_layer_norm, clone.layer_norm_eps) == (128, True, 1e-12)


def test_rescale_multiplies_every_output():
  x = tf.random.stateless_normal([3, 16], seed=[1, 2])
  for use_layer_norm in (True, False):
    proj = RetrievalProjection(8, use_layer_norm=use_layer_norm)
    before = proj(x).numpy()
    if use_layer_norm:  # a non-zero offset must scale too
      proj.layer_norm.beta.assign(tf.fill([8], 0.3))
      before = proj(x).numpy()
    proj.rescale(0.05)
    np.testing.assert_allclose(proj(x).numpy(), 0.05 * before, rtol=1e-5, atol=1e-7)
