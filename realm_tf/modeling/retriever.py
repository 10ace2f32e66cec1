"""REALM's neural retriever: a query tower and a document tower scored by inner product.

Each tower is a BERT encoder whose pooled [CLS] vector is projected to 128 dimensions
(`Embed_input` and `Embed_doc` in the paper). Relevance `f(x, z) = Embed_q(x) · Embed_d(z)`.

`pooling="mean"` replaces the [CLS] pooler by the mean of the unpadded token vectors, the pooling
sentence-transformers models (e.g. all-MiniLM-L6-v2) were trained with, and one that gives even
randomly initialised towers a bag-of-words signal to start from.
"""
import dataclasses
from typing import Union

import tensorflow as tf
import tf_keras

from realm_tf.modeling.encoder_config import EncoderConfig, build_encoder, get_encoder_config
from realm_tf.modeling.layers import RetrievalProjection
from realm_tf.text import packing
from realm_tf.text.packing import INPUT_KEYS  # re-exported: other modules import it from here
from realm_tf.config_base import ConfigBase
POOLINGS = ("cls", "mean")


@dataclasses.dataclass(frozen=True)
class RetrieverConfig(ConfigBase):
  """Configuration of the two retrieval towers."""
  NESTED = {"encoder": EncoderConfig}
  encoder: Union[str, EncoderConfig] = "tiny"
  projection_size: int = 128
  share_towers: bool = False
  query_seq_length: int = packing.QUERY_LENGTH
  doc_seq_length: int = packing.BLOCK_LENGTH
  # LayerNorm after the dense projection, as in the original ICT/REALM embedder.
  projection_layer_norm: bool = True
  # "cls": BERT's pooled [CLS] output (ORQA/REALM); "mean": masked mean of the token vectors.
  pooling: str = "cls"
  # Dropout on the projected embedding while training (ORQA's ICT module applies 0.1).
  projection_dropout: float = 0.1
  # Initial scale (LayerNorm gamma) of the projected embedding. 1.0 is ORQA's; inner products
  # then reach ±projection_size, so random towers start with a one-hot prior over candidates.
  projection_scale_init: float = 1.0

  def __post_init__(self):
    if self.pooling not in POOLINGS:
      raise ValueError(f"RetrieverConfig.pooling must be one of {POOLINGS}, got {self.pooling!r}.")

  @property
  def encoder_config(self) -> EncoderConfig:
    return get_encoder_config(self.encoder)



def _inputs(features):
  return {k: features[k] for k in INPUT_KEYS}


def masked_mean(sequence_output, input_mask):
  """Mean of `sequence_output` [B, T, H] over the positions where `input_mask` [B, T] is 1."""
  mask = tf.cast(input_mask, sequence_output.dtype)[:, :, None]
  total = tf.reduce_sum(sequence_output * mask, axis=1)
  return total / tf.maximum(tf.reduce_sum(mask, axis=1), tf.cast(1.0, sequence_output.dtype))


class Retriever(tf_keras.Model):
  """Query and document embedders. `call` scores queries [B] against candidates [B, C]."""

  def __init__(self, config: RetrieverConfig = RetrieverConfig(), **kwargs):
    super().__init__(**kwargs)
    self.config = config
    enc = config.encoder_config
    self.query_encoder = build_encoder(enc, name="query_encoder")
    self.query_projection = RetrievalProjection(config.projection_size, enc.initializer_range,
                                                use_layer_norm=config.projection_layer_norm,
                                                scale_init=config.projection_scale_init,
                                                name="query_projection")
    if config.share_towers:
      self.doc_encoder, self.doc_projection = self.query_encoder, self.query_projection
    else:
      self.doc_encoder = build_encoder(enc, name="doc_encoder")
      self.doc_projection = RetrievalProjection(config.projection_size, enc.initializer_range,
                                                use_layer_norm=config.projection_layer_norm,
                                                scale_init=config.projection_scale_init,
                                                name="doc_projection")
    self.projection_dropout = tf_keras.layers.Dropout(config.projection_dropout,
                                                      name="projection_dropout")

  def _pool(self, encoder, features, training):
    out = encoder(_inputs(features), training=training)
    if self.config.pooling == "mean":
      return masked_mean(out["sequence_output"], features["input_mask"])
    return out["pooled_output"]

  def embed_queries(self, features, training=False):
    """Packed query inputs [B, Tq] → embeddings [B, 128]."""
    emb = self.query_projection(self._pool(self.query_encoder, features, training))
    return self.projection_dropout(emb, training=training)

  def embed_documents(self, features, training=False):
    """Packed document inputs [N, Td] → embeddings [N, 128]."""
    emb = self.doc_projection(self._pool(self.doc_encoder, features, training))
    return self.projection_dropout(emb, training=training)

  def call(self, inputs, training=False):
    """inputs: {"query": packed [B, Tq], "candidates": packed [B, C, Td]} → scores [B, C]."""
    q = self.embed_queries(inputs["query"], training=training)
    cand = inputs["candidates"]
    shape = tf.shape(cand["input_word_ids"])
    flat = {k: tf.reshape(cand[k], [-1, shape[-1]]) for k in INPUT_KEYS}
    d = self.embed_documents(flat, training=training)
    d = tf.reshape(d, [shape[0], shape[1], -1])
    return tf.einsum("bd,bcd->bc", q, d)

  def build_towers(self):
    """Creates all variables by running each tower once on a dummy batch.

    On first build, separate towers get the same initial projection: two independent random
    projections put queries and documents in unrelated spaces, which only training can undo
    (and which destroys a pretrained encoder's retrieval outright).
    """
    fresh = not self.query_projection.built
    for length, fn in ((self.config.query_seq_length, self.embed_queries),
                       (self.config.doc_seq_length, self.embed_documents)):
      dummy = {k: tf.zeros([1, length], tf.int32) for k in INPUT_KEYS}
      fn(dummy)
    if fresh and self.doc_projection is not self.query_projection:
      for dst, src in zip(self.doc_projection.variables, self.query_projection.variables):
        dst.assign(src)
    return self
