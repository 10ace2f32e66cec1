"""The corpus inside a SavedModel: `BlockTable`, and the same block data from raw texts.

A served reader must cut its answer out of the original block text, so the export carries the
corpus as variables (block ids, titles, texts, body wordpieces and their byte offsets into the
text) instead of asking the client for them. `BlockTable.rows_for_block_ids` maps the block ids a
client sends (or a searcher returns) to rows, `BlockTable.gather` turns rows into the reader's
block features plus the offsets `select_answers` (answers.py) needs; `text_blocks` builds the
same features from block texts tokenized in the graph (`realm_reader`'s `read_texts`).
"""
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from realm_tf.export.versioning import ServingExportError
from realm_tf.text import RealmTokenizer


class BlockTable(tf.Module):
  """The corpus blocks of an index, in index row order, as SavedModel variables.

  Variables: `block_ids` int64 [N], `titles` / `texts` string [N], the body wordpieces `piece_ids`
  int32 [P] with `piece_starts` / `piece_limits` int32 [P] (byte offsets into the block text) and
  `row_splits` int64 [N + 1]; plus `sorted_block_ids` / `sorted_rows` to map block ids to rows with
  `searchsorted` (a hash table would put N keys into the graph as constants).

  The wordpieces are recomputed from the text with offsets and must equal the corpus' stored
  `body_ids` (the corpus builder guarantees that re-tokenizing a body gives its ids back); a
  mismatch names the block.
  """

  def __init__(self, block_ids: np.ndarray, titles: Sequence, texts: Sequence,
               body_ids: Optional[Sequence[np.ndarray]], tokenizer: RealmTokenizer,
               name: str = "block_table"):
    super().__init__(name=name)
    block_ids = np.asarray(block_ids, np.int64)
    n = len(block_ids)
    if n == 0:
      raise ServingExportError("BlockTable: no blocks.")
    if len(titles) != n or len(texts) != n or (body_ids is not None and len(body_ids) != n):
      raise ServingExportError(f"BlockTable: {n} block ids but {len(titles)} titles, "
                               f"{len(texts)} texts, "
                               f"{None if body_ids is None else len(body_ids)} bodies.")
    if len(np.unique(block_ids)) != n:
      raise ServingExportError("BlockTable: duplicate block ids.")
    enc = lambda s: s if isinstance(s, bytes) else str(s).encode("utf-8")  # pylint: disable=unnecessary-lambda-assignment
    texts = [enc(t) for t in texts]
    titles = [enc(t) for t in titles]
    # Eager: tracing costs more than running the ops once per 1,024 texts.
    tokenize = tokenizer.tokenize_with_offsets
    flat_ids, flat_starts, flat_limits, lengths = [], [], [], []
    for lo in range(0, n, 1024):
      ids, starts, limits = tokenize(tf.constant(texts[lo:lo + 1024]))
      splits = ids.row_splits.numpy()
      v_ids, v_s, v_l = (ids.flat_values.numpy(), starts.flat_values.numpy(),
                         limits.flat_values.numpy())
      for i in range(len(splits) - 1):
        a, b = splits[i], splits[i + 1]
        row = lo + i
        if body_ids is not None:
          want = np.asarray(body_ids[row], np.int32)
          if want.shape != (b - a,) or not np.array_equal(want, v_ids[a:b]):
            raise ServingExportError(
                f"Block {int(block_ids[row])} (row {row}): re-tokenizing its text does not give "
                f"its stored body wordpieces ({b - a} vs {len(want)} pieces), so answer spans "
                "could not be mapped back to the text; rebuild the corpus with this vocabulary.")
        lengths.append(b - a)
      flat_ids.append(v_ids)
      flat_starts.append(v_s)
      flat_limits.append(v_l)
    row_splits = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    order = np.argsort(block_ids, kind="stable")
    self.size = n
    self.block_ids = tf.Variable(block_ids, trainable=False, name="block_ids")
    self.titles = tf.Variable(tf.constant(titles, tf.string), trainable=False, name="titles")
    self.texts = tf.Variable(tf.constant(texts, tf.string), trainable=False, name="texts")
    self.piece_ids = tf.Variable(np.concatenate(flat_ids).astype(np.int32), trainable=False,
                                 name="piece_ids")
    self.piece_starts = tf.Variable(np.concatenate(flat_starts).astype(np.int32),
                                    trainable=False, name="piece_starts")
    self.piece_limits = tf.Variable(np.concatenate(flat_limits).astype(np.int32),
                                    trainable=False, name="piece_limits")
    self.row_splits = tf.Variable(row_splits, trainable=False, name="row_splits")
    self.sorted_block_ids = tf.Variable(block_ids[order], trainable=False,
                                        name="sorted_block_ids")
    self.sorted_rows = tf.Variable(order.astype(np.int32), trainable=False, name="sorted_rows")

  @classmethod
  def from_index(cls, index, tokenizer: RealmTokenizer) -> "BlockTable":
    """From an open-QA `FrozenIndex` (rows in index order, texts kept)."""
    bodies = [np.asarray(index.body_ids_np[i, :index.body_length_np[i]])
              for i in range(index.size)]
    return cls(index.block_ids, list(index.titles), list(index.bodies), bodies, tokenizer)

  def rows_for_block_ids(self, block_ids):
    """Block ids (int64, any shape) → index rows int32; InvalidArgument naming an unknown id."""
    block_ids = tf.cast(block_ids, tf.int64)
    flat = tf.reshape(block_ids, [-1])
    pos = tf.searchsorted(self.sorted_block_ids, flat, side="left", out_type=tf.int32)
    pos = tf.minimum(pos, self.size - 1)
    found = tf.equal(tf.gather(self.sorted_block_ids, pos), flat)
    missing = tf.boolean_mask(flat, tf.logical_not(found))
    check = tf.debugging.Assert(
        tf.reduce_all(found),
        ["block_ids not in the exported corpus (first few):", missing[:5]], summarize=5)
    with tf.control_dependencies([check]):
      rows = tf.gather(self.sorted_rows, pos)
    return tf.reshape(rows, tf.shape(block_ids))

  def gather(self, rows) -> Dict[str, tf.Tensor]:
    """Index rows [B, K] → block data: `body_ids` int32 [B, K, L] (zero padded), `body_length`
    int32 [B, K], `starts` / `limits` int32 [B, K, L], `texts` / `titles` string [B, K],
    `block_ids` int64 [B, K]."""
    rows = tf.cast(rows, tf.int32)
    shape = tf.shape(rows)
    flat = tf.reshape(rows, [-1])
    out = ragged_bodies(
        tf.RaggedTensor.from_row_splits(self.piece_ids.read_value(), self.row_splits.read_value(),
                                        validate=False),
        tf.RaggedTensor.from_row_splits(self.piece_starts.read_value(),
                                        self.row_splits.read_value(), validate=False),
        tf.RaggedTensor.from_row_splits(self.piece_limits.read_value(),
                                        self.row_splits.read_value(), validate=False),
        flat, shape)
    out["texts"] = tf.reshape(tf.gather(self.texts, flat), shape)
    out["titles"] = tf.reshape(tf.gather(self.titles, flat), shape)
    out["block_ids"] = tf.reshape(tf.gather(self.block_ids, flat), shape)
    return out


def ragged_bodies(ids: tf.RaggedTensor, starts: tf.RaggedTensor, limits: tf.RaggedTensor,
                  rows, shape) -> Dict[str, tf.Tensor]:
  """Gathers `rows` [M] of ragged wordpieces/offsets and reshapes them to `shape` + [L]."""
  if rows is not None:
    ids, starts, limits = (tf.gather(ids, rows), tf.gather(starts, rows),
                           tf.gather(limits, rows))
  lengths = tf.cast(ids.row_lengths(), tf.int32)
  width = tf.maximum(tf.reduce_max(tf.concat([lengths, [1]], 0)), 1)
  dense = lambda r: tf.cast(r.to_tensor(0, shape=[tf.size(lengths), width]), tf.int32)  # pylint: disable=unnecessary-lambda-assignment
  full = tf.concat([shape, [width]], 0)
  return {"body_ids": tf.reshape(dense(ids), full),
          "starts": tf.reshape(dense(starts), full),
          "limits": tf.reshape(dense(limits), full),
          "body_length": tf.reshape(lengths, shape)}


def text_blocks(tokenizer: RealmTokenizer, texts) -> Dict[str, tf.Tensor]:
  """Block texts [B, K] → the same block data as `BlockTable.gather`, tokenized in the graph."""
  texts = tf.convert_to_tensor(texts, tf.string)
  shape = tf.shape(texts)
  flat = tf.reshape(texts, [-1])
  ids, starts, limits = tokenizer.tokenize_with_offsets(flat)
  out = ragged_bodies(ids, starts, limits, None, shape)
  out["texts"] = texts
  return out
