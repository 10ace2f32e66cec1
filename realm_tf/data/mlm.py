"""Masked-LM examples over the corpus with no retrieval: the reader warm-up's input.

REALM's reader starts from BERT, a masked language model with its head. When the initial weights
have no MLM head (all-MiniLM-L6-v2 is a sentence encoder), the reader warm-up fits one on the
corpus first. Its examples use the knowledge-augmented encoder's own layout, `[CLS] x [SEP] z
[SEP]`, with a sentence of a block as x and the rest of the same block as z (the sentence kept
in z 10% of the time, as in ICT), and BERT-style random masking (15% of the wordpieces of both
segments, always `[MASK]`). A word masked in x often appears elsewhere in z, so the model learns
to read its second segment: the skill REALM's retrieval needs, learned without retrieval.

Randomness (which sentence, removal, which pieces) is stateless and keyed by (seed, stream
position), so a data position is one integer and resuming reproduces the examples.
Output: `input_word_ids`, `input_mask`, `input_type_ids` int32 [seq_length]; `masked_positions`,
`masked_ids` int32 and `masked_weights` float32 [max_predictions]; `block_id` int64.
"""
import dataclasses
from typing import Dict

import tensorflow as tf

from realm_tf.config_base import ConfigBase
from realm_tf.data import ict_examples
from realm_tf.text import packing


@dataclasses.dataclass(frozen=True)
class MlmConfig(ConfigBase):
  """Warm-up example shapes and masking (defaults: REALM's 96 + 288 joint layout)."""
  seed: int = 0
  query_length: int = packing.QUERY_LENGTH
  seq_length: int = packing.JOINT_LENGTH
  remove_rate: float = 0.9
  mask_rate: float = 0.15
  max_predictions: int = 20
  min_sentences: int = 2


class MlmExampleBuilder(ict_examples.ICTExampleBuilder):
  """Block dicts (corpus.read_blocks) → masked `[CLS] sentence [SEP] rest of block [SEP]`."""

  def __init__(self, config: MlmConfig = MlmConfig(), tokenizer=None):
    super().__init__(ict_examples.IctExampleConfig(seed=config.seed,
                                                   query_length=config.query_length,
                                                   block_length=config.seq_length,
                                                   remove_rate=config.remove_rate,
                                                   min_sentences=config.min_sentences), tokenizer)
    if not 0.0 < config.mask_rate < 1.0 or config.max_predictions < 1:
      raise ValueError("mask_rate must be in (0, 1) and max_predictions >= 1.")
    self.mlm_config = config

  def __call__(self, index, block: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """One warm-up example plus a boolean `valid` for block number `index` of the stream."""
    cfg = self.mlm_config
    tok = self.tokenizer
    parts = self.split(index, block)
    joint = packing.pack_query_block(ict_examples.as_ragged_row(parts["query_ids"]),
                                     ict_examples.as_ragged_row(parts["body_ids"]),
                                     cfg.query_length, cfg.seq_length, tok.cls_id, tok.sep_id)
    ids = tf.reshape(joint["input_word_ids"], [cfg.seq_length])
    mask = tf.reshape(joint["input_mask"], [cfg.seq_length])
    eligible = (mask > 0) & tf.not_equal(ids, tok.cls_id) & tf.not_equal(ids, tok.sep_id)
    n = tf.reduce_sum(tf.cast(eligible, tf.int32))
    k = tf.cast(tf.round(cfg.mask_rate * tf.cast(n, tf.float32)), tf.int32)
    k = tf.minimum(tf.clip_by_value(k, 1, cfg.max_predictions), n)
    scores = tf.where(eligible, tf.random.stateless_uniform([cfg.seq_length],
                                                            seed=self._seed(index, 5)), -1.0)
    _, positions = tf.math.top_k(scores, k=k)
    positions = tf.sort(positions)
    masked_ids = tf.gather(ids, positions)
    word_ids = tf.tensor_scatter_nd_update(ids, positions[:, None],
                                           tf.fill([k], tf.cast(tok.mask_id, ids.dtype)))
    pad = cfg.max_predictions - k
    example = {
        "input_word_ids": word_ids,
        "input_mask": mask,
        "input_type_ids": tf.reshape(joint["input_type_ids"], [cfg.seq_length]),
        "masked_positions": tf.pad(positions, [[0, pad]]),
        "masked_ids": tf.pad(masked_ids, [[0, pad]]),
        "masked_weights": tf.pad(tf.ones([k], tf.float32), [[0, pad]]),
        "block_id": tf.cast(block["block_id"], tf.int64),
        "valid": (parts["num_sentences"] >= cfg.min_sentences) & (n > 0),
    }
    for key in ("masked_positions", "masked_ids", "masked_weights"):
      example[key] = tf.ensure_shape(example[key], [cfg.max_predictions])
    return example
