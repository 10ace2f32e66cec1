"""The corpus inside a SavedModel: `BlockTable`, and block features from block texts.

A served open-QA model must show its evidence and cut its answers out of the original block text,
so `realm_openqa` carries the corpus instead of asking the client for it. It carries the texts
only, as ORQA's export did: the reader's wordpieces and their byte offsets are computed in the
graph for the K blocks a question retrieves (`text_blocks`), which the corpus builder makes equal
to the stored wordpieces (re-tokenizing a body gives its ids back). So the export costs the text
bytes plus ~36 bytes a block, not the wordpieces and offsets of every block.

`BlockTable` keeps every title and body as one uint8 byte array with their offsets; `gather` turns
index rows into block ids, titles and texts (`reader_blocks` adds their wordpieces),
`rows_for_block_ids` maps block ids to rows. It is
built in batches (two passes over the texts: sizes, then bytes), so building it holds one batch
of texts at a time beside the array itself; saving writes the array without copying it.
"""
from typing import Callable, Dict, Iterable, Iterator, Sequence, Tuple

import numpy as np
import tensorflow as tf

from realm_tf.export.versioning import ServingExportError
from realm_tf.text import RealmTokenizer
from realm_tf.utils.progress import ItemProgress

# Rows whose wordpieces `BlockTable.from_index` re-tokenizes and compares (spread over the index).
CHECKED_ROWS = 256
# One byte as a one-byte string, to turn gathered bytes back into strings with stock ops.
_BYTE_STRINGS = tuple(bytes([i]) for i in range(256))

TextBatches = Callable[[], Iterator[Tuple[Sequence, Sequence]]]


def _as_bytes(values) -> list:
  """A batch of strings (tf.string tensor, bytes or str) → a list of bytes."""
  if isinstance(values, tf.Tensor):
    return list(values.numpy())
  return [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values]


class BlockTable(tf.Module):
  """The corpus blocks of an index, in index row order, as SavedModel variables.

  Variables: `block_ids` int64 [N]; `text_bytes` uint8 [T], every block's title then body, UTF-8;
  `text_offsets` int64 [2N + 1], where text i starts (2r: row r's title, 2r + 1: its body);
  `sorted_block_ids` int64 [N] / `sorted_rows` int32 [N], to map block ids to rows with
  `searchsorted` (a hash table would put N keys into the graph as constants). Each variable is
  read one way only (dense or `gather`), so TensorFlow never copies one on read.
  """

  def __init__(self, block_ids: np.ndarray, text_batches: TextBatches, name: str = "block_table"):
    """`text_batches()` yields (titles, bodies) batches in row order; it is called twice."""
    super().__init__(name=name)
    block_ids = np.asarray(block_ids, np.int64)
    n = len(block_ids)
    if n == 0:
      raise ServingExportError("BlockTable: no blocks.")
    order = np.argsort(block_ids, kind="stable")
    if np.any(block_ids[order][1:] == block_ids[order][:-1]):
      raise ServingExportError("BlockTable: duplicate block ids.")
    offsets = self._offsets(text_batches, n)
    self.size = n
    self.block_ids = tf.Variable(block_ids, trainable=False, name="block_ids")
    self.text_offsets = tf.Variable(offsets, trainable=False, name="text_offsets")
    self.sorted_block_ids = tf.Variable(block_ids[order], trainable=False,
                                        name="sorted_block_ids")
    self.sorted_rows = tf.Variable(order.astype(np.int32), trainable=False, name="sorted_rows")
    self.text_bytes = tf.Variable(tf.zeros([0], tf.uint8), shape=tf.TensorShape([None]),
                                  trainable=False, name="text_bytes")
    self._fill(text_batches, int(offsets[-1]))

  @staticmethod
  def _offsets(text_batches: TextBatches, n: int) -> np.ndarray:
    """First pass: the start of every title and body, int64 [2N + 1]."""
    sizes = []
    progress = ItemProgress(n, "block table: text sizes", "blocks")
    for titles, bodies in text_batches():
      lengths = np.stack([tf.strings.length(tf.convert_to_tensor(t, tf.string)).numpy()
                          for t in (titles, bodies)], axis=1)  # [b, 2]: title, body
      sizes.append(lengths.reshape([-1]).astype(np.int64))
      progress.add(len(lengths))
    sizes = np.concatenate(sizes) if sizes else np.zeros([0], np.int64)
    if len(sizes) != 2 * n:
      raise ServingExportError(f"BlockTable: {n} block ids but {len(sizes) // 2} texts.")
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

  def _fill(self, text_batches: TextBatches, total: int) -> None:
    """Second pass: allocates `text_bytes` in the graph (so no eager copy of it exists) and
    writes each batch's bytes into its slice in place."""
    tf.function(lambda size: self.text_bytes.assign(tf.zeros([size], tf.uint8)),
                autograph=False)(
        tf.constant(total, tf.int64))
    lo = 0
    progress = ItemProgress(self.size, "block table: texts", "blocks")
    for titles, bodies in text_batches():
      pieces = [p for pair in zip(_as_bytes(titles), _as_bytes(bodies)) for p in pair]
      chunk = np.frombuffer(b"".join(pieces), np.uint8)
      if lo + len(chunk) > total:
        raise ServingExportError("BlockTable: the texts changed between the two passes.")
      if len(chunk):
        tf.raw_ops.ResourceStridedSliceAssign(
            ref=self.text_bytes.handle, begin=tf.constant([lo], tf.int64),
            end=tf.constant([lo + len(chunk)], tf.int64), strides=tf.constant([1], tf.int64),
            value=tf.constant(chunk))
      lo += len(chunk)
      progress.add(len(pieces) // 2)
    if lo != total:
      raise ServingExportError("BlockTable: the texts changed between the two passes.")

  @classmethod
  def from_texts(cls, block_ids: np.ndarray, titles: Sequence, texts: Sequence,
                 name: str = "block_table") -> "BlockTable":
    """From in-memory titles and texts (a few blocks: tests, examples)."""
    if len(titles) != len(block_ids) or len(texts) != len(block_ids):
      raise ServingExportError(f"BlockTable: {len(block_ids)} block ids but {len(titles)} "
                               f"titles, {len(texts)} texts.")
    return cls(block_ids, lambda: iter([(list(titles), list(texts))]), name=name)

  @classmethod
  def from_index(cls, index, tokenizer: RealmTokenizer) -> "BlockTable":
    """From an open-QA `FrozenIndex` (rows in index order), streamed by `index.text_batches`.

    Re-tokenizes CHECKED_ROWS bodies spread over the index and compares them with the lookup's
    wordpieces first, so a corpus built with another vocabulary fails here, naming a block.
    """
    rows = np.unique(np.linspace(0, index.size - 1, min(index.size, CHECKED_ROWS)).astype(int))
    _, bodies = index.texts(rows)
    check_wordpieces(tokenizer, index.block_ids[rows], rows, bodies,
                     [index.lookup.body_ids_np(index.lookup_rows[r]) for r in rows])
    return cls(index.block_ids, lambda: ((t, b) for _, t, b in index.text_batches()))

  def rows_for_block_ids(self, block_ids):
    """Block ids (int64, any shape) → index rows int32; InvalidArgument naming an unknown id."""
    block_ids = tf.cast(block_ids, tf.int64)
    flat = tf.reshape(block_ids, [-1])
    sorted_ids = self.sorted_block_ids.read_value()
    pos = tf.searchsorted(sorted_ids, flat, side="left", out_type=tf.int32)
    pos = tf.minimum(pos, self.size - 1)
    found = tf.equal(tf.gather(sorted_ids, pos), flat)
    missing = tf.boolean_mask(flat, tf.logical_not(found))
    check = tf.debugging.Assert(
        tf.reduce_all(found),
        ["block_ids not in the exported corpus (first few):", missing[:5]], summarize=5)
    with tf.control_dependencies([check]):
      rows = tf.gather(self.sorted_rows, pos)
    return tf.reshape(rows, tf.shape(block_ids))

  def gather(self, rows) -> Dict[str, tf.Tensor]:
    """Index rows [...] → `block_ids` int64, `titles` / `texts` string, each of rows' shape."""
    rows = tf.cast(rows, tf.int64)
    shape = tf.shape(rows)
    flat = tf.reshape(rows, [-1])
    which = tf.reshape(tf.stack([2 * flat, 2 * flat + 1], axis=1), [-1])  # title, body, ...
    strings = tf.reshape(self._strings(which), [-1, 2])
    return {"block_ids": tf.reshape(tf.gather(self.block_ids, flat), shape),
            "titles": tf.reshape(strings[:, 0], shape),
            "texts": tf.reshape(strings[:, 1], shape)}

  def reader_blocks(self, rows, tokenizer: RealmTokenizer) -> Dict[str, tf.Tensor]:
    """Index rows [B, K] → `gather`'s outputs plus the reader's block data tokenized from the
    texts (`text_blocks`): everything `answers.read_blocks` needs."""
    out = self.gather(rows)
    out.update(text_blocks(tokenizer, out["texts"]))
    return out

  def _strings(self, which) -> tf.Tensor:
    """Text numbers [M] (2r title, 2r + 1 body) → string [M], from the byte array."""
    starts = tf.gather(self.text_offsets, which)
    limits = tf.gather(self.text_offsets, which + 1)
    positions = tf.ragged.range(starts, limits)
    chars = tf.gather(tf.constant(_BYTE_STRINGS),
                      tf.cast(tf.gather(self.text_bytes, positions.flat_values), tf.int32))
    return tf.strings.unsorted_segment_join(chars, positions.value_rowids(), tf.size(which))


def check_wordpieces(tokenizer: RealmTokenizer, block_ids: Iterable[int], rows: Iterable[int],
                     texts: Sequence, body_ids: Sequence[np.ndarray]) -> None:
  """Raises ServingExportError naming the first block whose text does not re-tokenize to its
  stored body wordpieces (answer spans could not be cut out of its text)."""
  got = tokenizer.tokenize(_as_bytes(texts)).to_list()
  for block_id, row, ids, want in zip(block_ids, rows, got, body_ids):
    want = np.asarray(want, np.int32)
    if len(ids) != len(want) or not np.array_equal(want, ids):
      raise ServingExportError(
          f"Block {int(block_id)} (row {int(row)}): re-tokenizing its text does not give its "
          f"stored body wordpieces ({len(ids)} vs {len(want)} pieces), so answer spans could "
          "not be mapped back to the text; rebuild the corpus with this vocabulary.")


def ragged_bodies(ids: tf.RaggedTensor, starts: tf.RaggedTensor, limits: tf.RaggedTensor,
                  shape) -> Dict[str, tf.Tensor]:
  """Ragged wordpieces/offsets [M, (n)] → dense ones reshaped to `shape` + [L] (zero padded)."""
  lengths = tf.cast(ids.row_lengths(), tf.int32)
  width = tf.maximum(tf.reduce_max(tf.concat([lengths, [1]], 0)), 1)
  dense = lambda r: tf.cast(r.to_tensor(0, shape=[tf.size(lengths), width]), tf.int32)  # pylint: disable=unnecessary-lambda-assignment
  full = tf.concat([shape, [width]], 0)
  return {"body_ids": tf.reshape(dense(ids), full),
          "starts": tf.reshape(dense(starts), full),
          "limits": tf.reshape(dense(limits), full),
          "body_length": tf.reshape(lengths, shape)}


def text_blocks(tokenizer: RealmTokenizer, texts) -> Dict[str, tf.Tensor]:
  """Block texts [B, K] → the reader's block data, tokenized in the graph: `body_ids` int32
  [B, K, L] (zero padded), `body_length` int32 [B, K], `starts` / `limits` int32 [B, K, L] (byte
  offsets of each wordpiece in its text, for `select_answers`), and `texts`."""
  texts = tf.convert_to_tensor(texts, tf.string)
  shape = tf.shape(texts)
  ids, starts, limits = tokenizer.tokenize_with_offsets(tf.reshape(texts, [-1]))
  out = ragged_bodies(ids, starts, limits, shape)
  out["texts"] = texts
  return out
