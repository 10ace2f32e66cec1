"""Inverse Cloze Task (ICT) inputs for the retriever warm start (ORQA; REALM §3.4), in tf.data.

For a block of the corpus, one sentence is the pseudo-query and the block is its positive document;
90% of the time (`remove_rate`) the sentence is removed from the block, so the retriever must learn
more than word matching, 10% of the time it stays so that it also learns lexical overlap.
Negatives are the other blocks of the batch (the trainer's job).

Sentences are found on the block's wordpieces, so no text processing beyond the tokenizer is needed:
a sentence ends at a `.`, `!` or `?` piece followed by white space in the original text (so "3.5"
and "U.S" do not end one). Blocks with fewer than `min_sentences` sentences are skipped.

Randomness (which sentence, whether it is removed) is stateless and keyed by (seed, block index in
the input stream), like masking.py. Output: `query_input_word_ids/_mask/_type_ids` [query_length]
(`[CLS] sentence [SEP]`), `block_input_word_ids/_mask/_type_ids` [block_length]
(`[CLS] title [SEP] body [SEP]`), `block_id` int64, `sentence_removed` bool.
"""
import dataclasses
import functools
from typing import Dict, Optional

import tensorflow as tf

from realm_tf.config_base import ConfigBase
from realm_tf.data import blocking
from realm_tf.data import corpus
from realm_tf.text import packing


@dataclasses.dataclass(frozen=True)
class IctExampleConfig(ConfigBase):
  """ICT options: query 96 and block 288 wordpieces, sentence removed 90% of the time."""
  seed: int = 0
  query_length: int = packing.QUERY_LENGTH
  block_length: int = packing.BLOCK_LENGTH
  remove_rate: float = 0.9
  min_sentences: int = 2


def as_ragged_row(ids) -> tf.RaggedTensor:
  """A 1-D id tensor as a one-row RaggedTensor [1, (n)] (what the packers take)."""
  return tf.RaggedTensor.from_tensor(tf.reshape(tf.cast(ids, tf.int32), [1, -1]))


class ICTExampleBuilder:
  """Block dicts (corpus.read_blocks) → ICT (query, block) examples.

  Args:
    config: IctExampleConfig.
    tokenizer: a `realm_tf.text.RealmTokenizer` (default vocabulary when None).
  """

  def __init__(self, config: IctExampleConfig = IctExampleConfig(), tokenizer=None):
    if tokenizer is None:
      from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
      tokenizer = RealmTokenizer()
    if not 0.0 <= config.remove_rate <= 1.0:
      raise ValueError(f"remove_rate must be in [0, 1], got {config.remove_rate}.")
    self.config = config
    self.tokenizer = tokenizer
    self._tokenize = blocking.traced_tokenize_with_offsets(tokenizer)
    self._terminal = tf.constant([t in (".", "!", "?") for t in tokenizer.vocab])

  def _seed(self, index, salt: int):
    base = tf.stack([tf.constant(self.config.seed, tf.int64), tf.cast(index, tf.int64)])
    return tf.random.experimental.stateless_fold_in(base, salt)

  def sentence_removed(self, index) -> tf.Tensor:
    """Whether example `index` removes its query sentence from the block (p = remove_rate)."""
    return tf.random.stateless_uniform([], seed=self._seed(index, 2)) < self.config.remove_rate

  @functools.cached_property
  def compiled(self):
    """`__call__` traced once (signature: index, {"block_id", "body", "title_ids"})."""
    return tf.function(self.__call__, autograph=False, input_signature=[
        tf.TensorSpec([], tf.int64),
        {"block_id": tf.TensorSpec([], tf.int64), "body": tf.TensorSpec([], tf.string),
         "title_ids": tf.TensorSpec([None], tf.int32)}])

  def split(self, index, block: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The block's wordpieces split into a pseudo-query sentence and the rest.

    Returns `query_ids` (the sentence), `body_ids` (the block without it, or whole when the
    sentence stays), `title_ids`, `removed` and `num_sentences`.
    """
    ids, starts, limits = self._tokenize(tf.reshape(block["body"], [1]))
    ids, starts, limits = ids.flat_values, starts.flat_values, limits.flat_values
    n = tf.size(ids)
    gap_after = tf.concat([starts[1:] > limits[:-1], tf.ones([tf.minimum(n, 1)], tf.bool)], 0)
    ends = tf.gather(self._terminal, ids) & gap_after
    # The last piece always closes a sentence; sentence number of each piece.
    ends = tf.concat([ends[:-1], tf.ones([tf.minimum(n, 1)], tf.bool)], 0)
    sentence_of = tf.cumsum(tf.cast(ends, tf.int32), exclusive=True)
    num_sentences = tf.reduce_sum(tf.cast(ends, tf.int32))
    pick = tf.random.stateless_uniform([], seed=self._seed(index, 1), minval=0,
                                       maxval=tf.maximum(num_sentences, 1), dtype=tf.int32)
    in_query = tf.equal(sentence_of, pick)
    remove = self.sentence_removed(index)
    query_ids = tf.boolean_mask(ids, in_query)
    body_ids = tf.cond(remove, lambda: tf.boolean_mask(ids, tf.logical_not(in_query)),
                       lambda: ids)
    return {"query_ids": tf.cast(query_ids, tf.int32), "body_ids": tf.cast(body_ids, tf.int32),
            "title_ids": tf.cast(tf.reshape(block["title_ids"], [-1]), tf.int32),
            "removed": remove, "num_sentences": num_sentences}

  def __call__(self, index, block: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """One ICT example plus a boolean `valid` for block number `index` of the stream."""
    cfg = self.config
    tok = self.tokenizer
    parts = self.split(index, block)
    query = packing.pack_query(as_ragged_row(parts["query_ids"]), cfg.query_length, tok.cls_id,
                               tok.sep_id)
    doc = packing.pack_document(as_ragged_row(parts["title_ids"]),
                                as_ragged_row(parts["body_ids"]), cfg.block_length,
                                tok.cls_id, tok.sep_id)
    example = {f"query_{k}": tf.reshape(v, [cfg.query_length]) for k, v in query.items()}
    example.update({f"block_{k}": tf.reshape(v, [cfg.block_length]) for k, v in doc.items()})
    example["block_id"] = tf.cast(block["block_id"], tf.int64)
    example["sentence_removed"] = parts["removed"]
    example["valid"] = parts["num_sentences"] >= cfg.min_sentences
    return example

  def dataset(self, blocks: tf.data.Dataset, start_index: int = 0,
              num_parallel_calls: Optional[int] = tf.data.AUTOTUNE,
              deterministic: bool = True, keep_index: bool = False, keep=None) -> tf.data.Dataset:
    """ICT examples of `blocks` (blocks with too few sentences dropped); block i has index
    start_index + i (kept as `index` with `keep_index`); `keep(block)` drops blocks."""
    def build(index, block):
      return self.compiled(index, {
          "block_id": tf.cast(block["block_id"], tf.int64), "body": block["body"],
          "title_ids": tf.cast(tf.reshape(block["title_ids"], [-1]), tf.int32)})

    return corpus.numbered_examples(blocks, build, start_index, keep_index, num_parallel_calls,
                                    deterministic, keep=keep)
