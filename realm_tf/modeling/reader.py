"""ORQA's span reader: BERT over `[CLS] question [SEP] block [SEP]` scoring answer spans.

For every candidate span (start s, end e) of at most `max_span_width` wordpieces inside the block
segment, the score is (ORQA, Lee et al. 2019; REALM §3.4):

    score(s, e) = w · LayerNorm(ReLU(W_s h_s + W_e h_e))  (+ the block's retriever logit)

Spans are enumerated as a dense [N, T, W] grid (start position × width - 1) so the whole head is
a few matmuls that run under XLA/TPU; grid cells whose span is not inside the block segment (the
question, [CLS]/[SEP], padding) get -inf-like logits. With a vocabulary given, spans must also
start and end on word boundaries (no `##` continuation at the start, none right after the end), so
every span maps back to whole words of the block text.

Sublayer names (`encoder`, `span_head.{start_dense,end_dense,layer_norm,score_dense}`) are the
contract with `realm_tf.checkpoints` (ORQA TF1 reader → these attributes).
"""
import dataclasses
from typing import Dict, Optional, Sequence, Union

import numpy as np
import tensorflow as tf
import tf_keras

from realm_tf.modeling.encoder_config import EncoderConfig, build_encoder, get_encoder_config
from realm_tf.text.packing import INPUT_KEYS
from realm_tf.config_base import ConfigBase
NEG_INF = -1e9


@dataclasses.dataclass(frozen=True)
class ReaderConfig(ConfigBase):
  """Shape of the reader (ORQA defaults except the encoder preset)."""
  NESTED = {"encoder": EncoderConfig}
  encoder: Union[str, EncoderConfig] = "tiny"
  span_hidden_size: int = 256        # ORQA's span_hidden_size
  max_span_width: int = 10           # spans of at most 10 wordpieces
  seq_length: int = 320              # [CLS] question [SEP] block [SEP]
  query_length: int = 64             # the question part ([CLS] q [SEP]) is at most 64 pieces

  @property
  def encoder_config(self) -> EncoderConfig:
    return get_encoder_config(self.encoder)



def continuation_mask(vocab: Sequence[str]) -> np.ndarray:
  """bool [V]: True for wordpieces that continue a word (`##...`)."""
  return np.array([t.startswith("##") for t in vocab], dtype=bool)


def block_token_mask(input_mask, input_type_ids):
  """bool [N, T]: positions of block wordpieces in `[CLS] q [SEP] block [SEP]`.

  The block segment is type 1; its last type-1 position is the closing [SEP], excluded by
  requiring the next position to be a type-1 token as well.
  """
  seg = tf.logical_and(tf.cast(input_mask, tf.bool), tf.equal(input_type_ids, 1))
  nxt = tf.pad(seg[:, 1:], [[0, 0], [0, 1]])
  return tf.logical_and(seg, nxt)


def span_mask(input_word_ids, input_mask, input_type_ids, max_span_width: int,
              continuation: Optional[tf.Tensor] = None):
  """bool [N, T, W]: span (start t, end t + w) lies inside the block segment.

  With `continuation` (bool [V]) the span must also start at a word start and end at a word end.
  """
  in_block = block_token_mask(input_mask, input_type_ids)  # [N, T]
  t = tf.shape(in_block)[1]
  starts_ok = in_block
  ends_ok = in_block
  if continuation is not None:
    is_cont = tf.gather(continuation, tf.cast(input_word_ids, tf.int32))  # [N, T]
    starts_ok = tf.logical_and(starts_ok, tf.logical_not(is_cont))
    next_cont = tf.pad(is_cont[:, 1:], [[0, 0], [0, 1]])
    ends_ok = tf.logical_and(ends_ok, tf.logical_not(next_cont))
  cols = []
  for w in range(max_span_width):
    # The block is contiguous, so start and end inside it means the whole span is.
    end_w = tf.pad(ends_ok[:, w:], [[0, 0], [0, w]])[:, :t]
    cols.append(tf.logical_and(starts_ok, end_w))
  return tf.stack(cols, axis=2)


@tf_keras.utils.register_keras_serializable(package="realm_tf")
class SpanHead(tf_keras.layers.Layer):
  """ORQA's span scorer: w · LayerNorm(ReLU(W_s h_start + W_e h_end)) over a [T, W] span grid."""

  def __init__(self, span_hidden_size: int = 256, max_span_width: int = 10,
               initializer_range: float = 0.02, **kwargs):
    super().__init__(**kwargs)
    self.span_hidden_size = span_hidden_size
    self.max_span_width = max_span_width
    self.initializer_range = initializer_range
    init = lambda: tf_keras.initializers.TruncatedNormal(stddev=initializer_range)  # pylint: disable=unnecessary-lambda-assignment
    self.start_dense = tf_keras.layers.Dense(span_hidden_size, kernel_initializer=init(),
                                             name="start_dense")
    self.end_dense = tf_keras.layers.Dense(span_hidden_size, kernel_initializer=init(),
                                           name="end_dense")
    # epsilon 1e-3: tf.keras' default, which ORQA's layer norm used.
    self.layer_norm = tf_keras.layers.LayerNormalization(axis=-1, epsilon=1e-3, dtype="float32",
                                                         name="layer_norm")
    self.score_dense = tf_keras.layers.Dense(1, kernel_initializer=init(), dtype="float32",
                                             name="score_dense")

  def call(self, sequence_output):
    """[N, T, H] → raw span scores float32 [N, T, W] (start t, end t + w)."""
    start = self.start_dense(sequence_output)  # [N, T, S]
    end = self.end_dense(sequence_output)
    t = tf.shape(end)[1]
    ends = tf.stack([tf.pad(end[:, w:], [[0, 0], [0, w], [0, 0]])[:, :t]
                     for w in range(self.max_span_width)], axis=2)  # [N, T, W, S]
    hidden = tf.nn.relu(start[:, :, None, :] + ends)
    hidden = self.layer_norm(tf.cast(hidden, tf.float32))
    return tf.squeeze(self.score_dense(hidden), -1)

  def get_config(self):
    return dict(super().get_config(), span_hidden_size=self.span_hidden_size,
                max_span_width=self.max_span_width, initializer_range=self.initializer_range)


class Reader(tf_keras.Model):
  """BERT encoder + span head. `call` returns masked span logits [N, T, W].

  Args:
    config: a ReaderConfig.
    vocab: optional wordpiece vocabulary; when given, spans must start and end on word
      boundaries (continuation pieces `##x` never start a span nor follow its end).
  """

  def __init__(self, config: ReaderConfig = ReaderConfig(), vocab: Optional[Sequence[str]] = None,
               **kwargs):
    super().__init__(**kwargs)
    self.config = config
    enc = config.encoder_config
    self.encoder = build_encoder(enc, name="reader_encoder")
    self.span_head = SpanHead(config.span_hidden_size, config.max_span_width,
                              enc.initializer_range, name="span_head")
    self._continuation = None
    if vocab is not None:
      mask = continuation_mask(vocab)
      if len(mask) != enc.vocab_size:
        raise ValueError(f"The vocabulary has {len(mask)} entries but the reader encoder has "
                         f"vocab_size={enc.vocab_size}.")
      self._continuation = mask

  @property
  def continuation(self) -> Optional[tf.Tensor]:
    return None if self._continuation is None else tf.constant(self._continuation)

  def span_mask(self, features) -> tf.Tensor:
    """bool [N, T, W] of the spans the reader may predict for `features`."""
    return span_mask(features["input_word_ids"], features["input_mask"],
                     features["input_type_ids"], self.config.max_span_width, self.continuation)

  def call(self, features, retrieval_logits=None, training=False):
    """Packed inputs [N, T] (+ optional retriever logits [N]) → dict of
    `span_logits` float32 [N, T, W] (invalid spans at -1e9) and `span_mask` bool [N, T, W]."""
    out = self.encoder({k: features[k] for k in INPUT_KEYS}, training=training)
    scores = self.span_head(out["sequence_output"])
    if retrieval_logits is not None:
      scores = scores + tf.cast(retrieval_logits, tf.float32)[:, None, None]
    mask = self.span_mask(features)
    logits = tf.where(mask, scores, tf.cast(NEG_INF, tf.float32))
    return {"span_logits": logits, "span_mask": mask}

  def build_all(self):
    """Creates every variable with one dummy forward pass."""
    dummy = {k: tf.zeros([1, self.config.seq_length], tf.int32) for k in INPUT_KEYS}
    self(dummy)
    return self


def best_spans(span_logits):
  """Argmax over [N, T, W] span grids → (start [N], end [N], logit [N]) int32/float32."""
  n = tf.shape(span_logits)[0]
  w = tf.shape(span_logits)[2]
  flat = tf.reshape(span_logits, [n, -1])
  idx = tf.argmax(flat, axis=-1, output_type=tf.int32)
  start = idx // w
  end = start + idx % w
  return start, end, tf.reduce_max(flat, axis=-1)
