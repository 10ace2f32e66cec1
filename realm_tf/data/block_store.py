"""In-memory block lookup for featurizing retrieved candidates.

Retrieval returns block ids; the pre-training and open-QA pipelines need each block's packed
document input (`[CLS] title [SEP] body [SEP]`, 288) and its body wordpieces (for the
`[CLS] x [SEP] body [SEP]` reader input). The store keeps both as int32 tensors keyed by block id.
"""
from typing import Iterable, Optional

import numpy as np
import tensorflow as tf

from realm_tf.data import corpus
from realm_tf.text import RealmTokenizer, pack_document, packing


class BlockStore(tf.Module):
  """Block id → packed document ids [Td] and ragged body ids; -1 rows for unknown ids."""

  def __init__(self, corpus_dirs: Iterable[str], tokenizer: Optional[RealmTokenizer] = None,
               doc_seq_length: int = packing.BLOCK_LENGTH, keep_text: bool = False, name="block_store"):
    super().__init__(name=name)
    tokenizer = tokenizer or RealmTokenizer()
    self.doc_seq_length = doc_seq_length
    ids, titles, bodies, packed, body_rows = [], [], [], [], []
    for corpus_dir in corpus_dirs:
      ds = corpus.read_blocks(corpus_dir).ragged_batch(1024)
      for b in ds:
        p = pack_document(b["title_ids"], b["body_ids"], doc_seq_length, tokenizer.cls_id,
                          tokenizer.sep_id)
        packed.append(np.stack([p[k].numpy() for k in
                                ("input_word_ids", "input_mask", "input_type_ids")], axis=1))
        ids.append(b["block_id"].numpy())
        body_rows.extend(b["body_ids"].to_list())
        if keep_text:
          titles.extend(b["title"].numpy().tolist())
          bodies.extend(b["body"].numpy().tolist())
    if not ids:
      raise corpus.CorpusError(f"No blocks found in {list(corpus_dirs)}.")
    self.block_ids = np.concatenate(ids)
    if len(np.unique(self.block_ids)) != len(self.block_ids):
      raise corpus.CorpusError("Duplicate block ids across the corpus directories.")
    self.size = len(self.block_ids)
    self.packed = tf.constant(np.concatenate(packed).astype(np.int32))  # [N, 3, Td]
    self.body_ids = tf.RaggedTensor.from_nested_row_lengths(
        tf.constant(np.array([t for row in body_rows for t in row], np.int32)),
        [tf.constant([len(r) for r in body_rows], tf.int64)])
    self.titles = tf.constant(titles, tf.string) if keep_text else None
    self.bodies = tf.constant(bodies, tf.string) if keep_text else None
    self.table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(self.block_ids, tf.int64),
                                            tf.range(self.size, dtype=tf.int64)),
        default_value=-1)

  def rows(self, block_ids):
    """Block ids (any shape, int64) → store rows (int64, -1 where unknown)."""
    return self.table.lookup(tf.cast(block_ids, tf.int64))

  def documents(self, rows):
    """Store rows [...] → dict of packed document inputs [..., Td] (rows < 0 give padding)."""
    safe = tf.maximum(rows, 0)
    packed = tf.gather(self.packed, safe)  # [..., 3, Td]
    valid = tf.cast(rows >= 0, tf.int32)[..., None]
    keys = ("input_word_ids", "input_mask", "input_type_ids")
    return {k: packed[..., i, :] * valid for i, k in enumerate(keys)}

  def bodies_ragged(self, rows):
    """Store rows [N] → body wordpieces, ragged [N, (n)]; rows < 0 give row 0's body, which
    callers mask out through their candidate mask."""
    return tf.gather(self.body_ids, tf.maximum(rows, 0))
