"""Masked-LM pre-training examples from annotated text, in tf.data (no py_function).

Three masking modes, the paper's salient masking and its two ablations:

- `salient`: pick one salient span of the record uniformly; its sentence is the query
  `[CLS] sentence [SEP]` (truncated to `query_length`); every wordpiece lying fully inside the
  span's byte range becomes `[MASK]` (always `[MASK]`, never a random or kept token). The example is
  rejected when a masked piece would fall past the truncation, when the span covers more than
  `max_predictions` pieces, or when it covers none.
- `random_uniform`: the same sentence; `mask_rate` (15%) of its pieces, at least one, chosen
  uniformly (BERT-style, always `[MASK]`).
- `random_span`: the same sentence; one contiguous run of whole words, its length in words drawn
  from Geometric(`span_geometric_p`) clipped to `max_span_words` (SpanBERT-style), at most
  `max_predictions` pieces.

All three choose the query sentence the same way (the sentence of a uniformly drawn salient span),
so the ablations differ only in what is masked.

Randomness is stateless and keyed by (seed, example index), where the example index is the
record's position in the annotation stream; so a data position is one integer, and resuming at
position p (`records.skip(p)`, `start_index=p`) reproduces the same examples.

Output (the "Masked example" contract): `input_word_ids`, `input_mask`, `input_type_ids` int32
[query_length]; `masked_positions`, `masked_ids` int32 and `masked_weights` float32
[max_predictions]; `block_id` int64 (the record's own block, -1 if none).
"""
import dataclasses
import functools
from typing import Dict, Optional

import tensorflow as tf

from realm_tf.config_base import ConfigBase
from realm_tf.data import blocking
from realm_tf.data import corpus
from realm_tf.text import packing

MODES = ("salient", "random_uniform", "random_span")


@dataclasses.dataclass(frozen=True)
class MaskingConfig(ConfigBase):
  """Masking options (defaults: REALM's salient span masking, query length 96, 10 predictions)."""
  mode: str = "salient"
  seed: int = 0
  query_length: int = packing.QUERY_LENGTH
  max_predictions: int = 10
  mask_rate: float = 0.15
  span_geometric_p: float = 0.2
  max_span_words: int = 10


# Input signature of one parsed annotation record (corpus.ANNOTATION_FEATURES).
RECORD_SIGNATURE = {
    "title": tf.TensorSpec([], tf.string), "text": tf.TensorSpec([], tf.string),
    "sentence_starts": tf.TensorSpec([None], tf.int64),
    "sentence_limits": tf.TensorSpec([None], tf.int64),
    "span_starts": tf.TensorSpec([None], tf.int64),
    "span_limits": tf.TensorSpec([None], tf.int64),
    "span_types": tf.TensorSpec([None], tf.string),
    "block_id": tf.TensorSpec([], tf.int64),
}


def _pad(x, length, value=0):
  x = x[:length]
  return tf.pad(x, [[0, length - tf.shape(x)[0]]], constant_values=value)


class Masker:
  """Turns annotation records (corpus.ANNOTATION_FEATURES dicts) into masked query examples.

  Args:
    config: MaskingConfig.
    tokenizer: a `realm_tf.text.RealmTokenizer` (default vocabulary when None).
  """

  def __init__(self, config: MaskingConfig = MaskingConfig(), tokenizer=None):
    if config.mode not in MODES:
      raise ValueError(f"Unknown masking mode {config.mode!r}; expected one of {MODES}.")
    if config.query_length < 3 or config.max_predictions < 1:
      raise ValueError("query_length must be >= 3 and max_predictions >= 1.")
    if tokenizer is None:
      from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
      tokenizer = RealmTokenizer()
    self.config = config
    self.tokenizer = tokenizer
    self._tokenize = blocking.traced_tokenize_with_offsets(tokenizer)
    self._continuation = tf.constant([t.startswith("##") for t in tokenizer.vocab])

  def _seed(self, index, salt: int):
    base = tf.stack([tf.constant(self.config.seed, tf.int64), tf.cast(index, tf.int64)])
    return tf.random.experimental.stateless_fold_in(base, salt)

  def _positions(self, ids, starts, limits, span_start, span_limit, index):
    """(masked positions among the sentence pieces, valid) for the configured mode."""
    cfg = self.config
    n_keep = cfg.query_length - 2
    n = tf.size(ids)
    n_eff = tf.minimum(n, n_keep)
    if cfg.mode == "salient":
      inside = (starts >= span_start) & (limits <= span_limit)
      idx = tf.cast(tf.where(inside)[:, 0], tf.int32)
      count = tf.size(idx)
      valid = (count > 0) & (count <= cfg.max_predictions) & tf.reduce_all(idx < n_keep)
      return idx, valid
    if cfg.mode == "random_uniform":
      k = tf.cast(tf.round(cfg.mask_rate * tf.cast(n_eff, tf.float32)), tf.int32)
      k = tf.clip_by_value(k, 1, cfg.max_predictions)
      k = tf.minimum(k, n_eff)
      scores = tf.random.stateless_uniform([n_eff], seed=self._seed(index, 2))
      _, idx = tf.math.top_k(scores, k=k)
      return tf.sort(idx), n_eff > 0
    # random_span: whole words, one run.
    pieces = ids[:n_eff]
    starts_word = tf.logical_not(tf.gather(self._continuation, pieces))
    # The first piece of the sentence starts a word even if it is a "##" piece.
    starts_word = tf.concat([tf.ones([tf.minimum(n_eff, 1)], tf.bool), starts_word[1:]], 0)
    word_of = tf.cumsum(tf.cast(starts_word, tf.int32)) - 1
    n_words = tf.reduce_max(tf.concat([word_of + 1, [0]], 0))
    u = tf.random.stateless_uniform([], seed=self._seed(index, 3), minval=1e-6, maxval=1.0)
    length = tf.cast(tf.math.ceil(tf.math.log(u) / tf.math.log(1.0 - cfg.span_geometric_p)),
                     tf.int32)
    length = tf.clip_by_value(length, 1, cfg.max_span_words)
    length = tf.maximum(tf.minimum(length, n_words), 1)
    first = tf.random.stateless_uniform([], seed=self._seed(index, 4), minval=0,
                                        maxval=tf.maximum(n_words - length + 1, 1),
                                        dtype=tf.int32)
    in_span = (word_of >= first) & (word_of < first + length)
    idx = tf.cast(tf.where(in_span)[:, 0], tf.int32)
    # Whole words only: drop trailing words whose pieces would pass max_predictions.
    words = tf.gather(word_of, idx)
    through = tf.reduce_sum(tf.cast(words[None, :] <= words[:, None], tf.int32), axis=1)
    idx = tf.boolean_mask(idx, through <= cfg.max_predictions)
    return idx, (n_words > 0) & (tf.size(idx) > 0)

  def __call__(self, index, record: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """One masked example plus a boolean `valid` (False: reject it) for record number `index`."""
    cfg = self.config
    tok = self.tokenizer
    span_starts = tf.cast(record["span_starts"], tf.int64)
    span_limits = tf.cast(record["span_limits"], tf.int64)
    sent_starts = tf.cast(record["sentence_starts"], tf.int64)
    sent_limits = tf.cast(record["sentence_limits"], tf.int64)
    n_spans = tf.size(span_starts)
    pick = tf.random.stateless_uniform([], seed=self._seed(index, 1), minval=0,
                                       maxval=tf.maximum(n_spans, 1), dtype=tf.int32)
    zero = tf.zeros([1], tf.int64)
    span_start = tf.gather(tf.concat([span_starts, zero], 0), pick)
    span_limit = tf.gather(tf.concat([span_limits, zero], 0), pick)
    inside = (sent_starts <= span_start) & (sent_limits >= span_limit)
    found = (n_spans > 0) & tf.reduce_any(inside)
    sent = tf.argmax(tf.concat([tf.cast(inside, tf.int32), [0]], 0), output_type=tf.int32)
    sent_start = tf.gather(tf.concat([sent_starts, zero], 0), sent)
    sent_limit = tf.gather(tf.concat([sent_limits, zero], 0), sent)
    sentence = tf.strings.substr(record["text"], sent_start, sent_limit - sent_start, unit="BYTE")
    ids, starts, limits = self._tokenize(tf.reshape(sentence, [1]))
    ids, starts, limits = ids.flat_values, starts.flat_values, limits.flat_values
    idx, valid = self._positions(ids, starts, limits, span_start - sent_start,
                                 span_limit - sent_start, index)
    n_keep = cfg.query_length - 2
    pieces = ids[:n_keep]
    n_eff = tf.size(pieces)
    idx = tf.boolean_mask(idx, idx < n_eff)[: cfg.max_predictions]
    is_masked = tf.scatter_nd(idx[:, None], tf.ones_like(idx, tf.bool), [n_eff])
    word_ids = tf.where(is_masked, tf.cast(tok.mask_id, ids.dtype), pieces)
    word_ids = tf.concat([[tok.cls_id], tf.cast(word_ids, tf.int32), [tok.sep_id]], 0)
    count = tf.size(idx)
    example = {
        "input_word_ids": _pad(word_ids, cfg.query_length, tok.pad_id),
        "input_mask": _pad(tf.ones([n_eff + 2], tf.int32), cfg.query_length),
        "input_type_ids": tf.zeros([cfg.query_length], tf.int32),
        "masked_positions": _pad(idx + 1, cfg.max_predictions),
        "masked_ids": _pad(tf.cast(tf.gather(pieces, idx), tf.int32), cfg.max_predictions),
        "masked_weights": _pad(tf.ones([count], tf.float32), cfg.max_predictions),
        "block_id": tf.cast(record["block_id"], tf.int64),
    }
    for key in ("input_word_ids", "input_mask", "input_type_ids"):
      example[key] = tf.ensure_shape(example[key], [cfg.query_length])
    for key in ("masked_positions", "masked_ids", "masked_weights"):
      example[key] = tf.ensure_shape(example[key], [cfg.max_predictions])
    example["valid"] = found & valid
    return example

  @functools.cached_property
  def compiled(self):
    """`__call__` traced once for any record (eager tokenizer calls cost ~0.1 s each)."""
    return tf.function(self.__call__, autograph=False,
                       input_signature=[tf.TensorSpec([], tf.int64), RECORD_SIGNATURE])

  def dataset(self, records: tf.data.Dataset, start_index: int = 0,
              num_parallel_calls: Optional[int] = tf.data.AUTOTUNE,
              deterministic: bool = True, keep_index: bool = False, keep=None) -> tf.data.Dataset:
    """Masked examples of `records` (rejected ones dropped); record i has index start_index + i
    (kept as `index` with `keep_index`); `keep(record)` drops records (corpus.numbered_examples)."""
    def mask(index, record):
      return self.compiled(index, {k: record[k] for k in RECORD_SIGNATURE})

    return corpus.numbered_examples(records, mask, start_index, keep_index, num_parallel_calls,
                                    deterministic, keep=keep)


def masked_dataset(annotation_dir: str, config: MaskingConfig = MaskingConfig(),
                   tokenizer=None, start_index: int = 0, repeat: bool = False,
                   num_parallel_calls: Optional[int] = tf.data.AUTOTUNE) -> tf.data.Dataset:
  """Masked examples of the annotations in `annotation_dir` (corpus.read_annotations).

  With `repeat`, the records repeat forever and every pass draws new spans and masks, since the
  example index keeps growing. Resume at data position p with `start_index=p`.
  """
  records = corpus.read_annotations(annotation_dir)
  if repeat:
    records = records.repeat()
  if start_index:
    records = records.skip(start_index)
  return Masker(config, tokenizer).dataset(records, start_index=start_index,
                                           num_parallel_calls=num_parallel_calls)
