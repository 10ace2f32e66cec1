"""REALM's knowledge-augmented encoder: BERT MLM over `[CLS] x [SEP] z_body [SEP]`.

It reads the masked query together with one retrieved document body and predicts the masked
wordpieces, giving `p(y | z, x)`. The MLM head is tied to the encoder's word embeddings.
"""
import tensorflow as tf
import tf_keras

from realm_tf.modeling.encoder_config import build_encoder, get_encoder_config
from realm_tf.modeling.layers import MaskedLMHead
from realm_tf.modeling.retriever import INPUT_KEYS
from realm_tf.text import packing


class KnowledgeAugmentedEncoder(tf_keras.Model):
  """BERT encoder + tied MLM head; `call` returns logits at the masked positions."""

  def __init__(self, encoder_config="tiny", seq_length: int = packing.JOINT_LENGTH, **kwargs):
    super().__init__(**kwargs)
    self.encoder_config = get_encoder_config(encoder_config)
    self.seq_length = seq_length
    self.encoder = build_encoder(self.encoder_config, name="knowledge_encoder")
    self.mlm_head = MaskedLMHead(self.encoder.get_embedding_table,
                                 initializer_range=self.encoder_config.initializer_range,
                                 name="mlm_head")

  def call(self, features, masked_positions, training=False):
    """features: packed inputs [N, T]; masked_positions [N, M] → logits [N, M, vocab]."""
    out = self.encoder({k: features[k] for k in INPUT_KEYS}, training=training)
    return self.mlm_head(out["sequence_output"], masked_positions)

  def build_all(self, max_predictions: int = 20):
    """Creates every variable with one dummy forward pass."""
    dummy = {k: tf.zeros([1, self.seq_length], tf.int32) for k in INPUT_KEYS}
    self(dummy, tf.zeros([1, max_predictions], tf.int32))
    return self
