"""The block lookup: every stage's host-side view of the corpus blocks, memory-mapped from disk.

Retrieval returns block ids; pre-training, the reader warm-up, evaluation, open-QA fine-tuning
and the export need each block's wordpieces (to pack `[CLS] title [SEP] body [SEP]` and
`[CLS] x [SEP] body [SEP]`) and, for evidence output and BM25, its text. The lookup keeps them as
flat arrays in files beside the corpus, written once from the corpus shards:

    <corpus_dir>/lookup/
        meta.json           counts, dtypes, the corpus fingerprint it was built from
        tokens.<dtype>      every block's title then body wordpieces, uint16 (the 30,522-word
                            vocabulary fits; int32 for larger vocabularies)
        offsets.i64         [N + 1] start of each block's wordpieces in tokens
        title_lengths.u16   [N] wordpieces of each block's title
        block_ids.i64       [N] block id of each row (manifest order)
        sorted_ids.i64      [N] block ids sorted, and sorted_rows.i32 [N] their rows: id → row by
        sorted_rows.i32     binary search, with nothing per block beyond these 12 bytes
        text.bin            every block's title then body, UTF-8
        text_offsets.i64    [2N + 1] start of each title and body in text.bin

A 288-wordpiece block costs ~0.6 KB of wordpieces and ids; the text (~1.2 KB) is read only for the
rows asked for. The files are memory-mapped (numpy) and TensorFlow reads them through
`tf.numpy_function` ops: nothing is copied into the process but the rows a step asks for, the
pages are shared by every process on the host that maps the same files (trainer, evaluator,
fine-tuning, export), and the ops run on the host in tf.data and in models alike, so on
accelerators the lookup never becomes a replica variable. Packing
(`[CLS]`, `[SEP]`, masks, type ids) is done per lookup. A corpus on remote storage gets its lookup
built in a local cache directory (memory-mapping needs a local file).
"""
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.data import corpus
from realm_tf.io.errors import error_text
from realm_tf.io import publish
from realm_tf.io.publish import is_remote
from realm_tf.text import pack_document
from realm_tf.text.packing import INPUT_KEYS
from realm_tf.utils.progress import ItemProgress

LOOKUP_DIR = "lookup"
META = "meta.json"
FORMAT_VERSION = 1
# name → dtype of every fixed file (tokens' dtype is in meta.json).
_FILES = {"offsets": np.int64, "title_lengths": np.uint16, "block_ids": np.int64,
          "sorted_ids": np.int64, "sorted_rows": np.int32, "text_offsets": np.int64}
_SUFFIX = {np.dtype(np.int64): "i64", np.dtype(np.int32): "i32", np.dtype(np.uint16): "u16",
           np.dtype(np.uint8): "u8"}
_BATCH = 4096


def _file_name(name: str, dtype) -> str:
  return f"{name}.{_SUFFIX[np.dtype(dtype)]}"


def _write_array(f, array: np.ndarray, dtype) -> None:
  f.write(np.ascontiguousarray(array, dtype=dtype).tobytes())


def lookup_dir_for(corpus_dir: str, cache_dir: Optional[str] = None) -> str:
  """Where the lookup of `corpus_dir` lives: `<corpus_dir>/lookup` for a local corpus, else a
  local cache directory keyed by the corpus fingerprint (`cache_dir`, default the temp dir)."""
  if cache_dir is None and not is_remote(corpus_dir):
    return os.path.join(corpus_dir, LOOKUP_DIR)
  fingerprint = corpus.load_manifest(corpus_dir)["fingerprint"]
  base = cache_dir or os.path.join(tempfile.gettempdir(), "realm_tf_lookup")
  return os.path.join(base, fingerprint)


def build_lookup(corpus_dir: str, lookup_dir: Optional[str] = None) -> str:
  """Writes the lookup of `corpus_dir` (see module docstring) and publishes it by renaming its
  directory into place; returns the directory.

  A lookup of the same corpus already there (another process's, which may be in use) is kept:
  nothing is built, or, when one appears while this one is built, this one is dropped. Only a
  stale lookup (another corpus, another format) is replaced.

  Streams the corpus shards in batches: memory while building is ~40 bytes per block (ids and
  offsets) plus one batch, never a Python object per block or wordpiece.
  """
  manifest = corpus.load_manifest(corpus_dir)
  lookup_dir = lookup_dir or lookup_dir_for(corpus_dir)
  if _is_fresh(lookup_dir, manifest["fingerprint"]):
    logging.info("Block lookup %s is up to date with %s; kept.", lookup_dir, corpus_dir)
    return lookup_dir
  parent = os.path.dirname(os.path.abspath(lookup_dir))
  os.makedirs(parent, exist_ok=True)
  tmp = os.path.join(parent, f".{os.path.basename(lookup_dir)}-tmp-{uuid.uuid4().hex[:8]}")
  os.makedirs(tmp)
  total = int(manifest["num_blocks"])
  progress = ItemProgress(total, "block lookup", "blocks")
  try:
    ids, offsets, title_lengths, text_offsets = [], [np.zeros([1], np.int64)], [], \
        [np.zeros([1], np.int64)]
    num_tokens = num_text = 0
    max_id = max_body = 0
    # Written as uint16 first; widened below if a wordpiece id does not fit.
    tokens_path = os.path.join(tmp, "tokens.tmp")
    with open(tokens_path, "wb") as ft, open(os.path.join(tmp, "text.bin"), "wb") as fx:
      for b in _read_batches(corpus_dir, manifest):
        both = tf.concat([b["title_ids"], b["body_ids"]], axis=1)
        flat = both.flat_values.numpy().astype(np.int64)
        if flat.size:
          max_id = max(max_id, int(flat.max()))
          if flat.min() < 0:
            raise corpus.CorpusError(f"Corpus {corpus_dir} holds a negative wordpiece id.")
        _write_array(ft, flat, np.int32)
        lengths = both.row_lengths().numpy()
        offsets.append(num_tokens + np.cumsum(lengths))
        num_tokens += int(lengths.sum())
        tl = b["title_ids"].row_lengths().numpy()
        max_body = max(max_body, int(np.max(lengths - tl, initial=0)))
        if tl.size and tl.max() > np.iinfo(np.uint16).max:
          raise corpus.CorpusError(f"Corpus {corpus_dir}: a title longer than 65,535 pieces.")
        title_lengths.append(tl)
        ids.append(b["block_id"].numpy())
        pieces = []
        for title, body in zip(b["title"].numpy(), b["body"].numpy()):
          pieces += [title, body]
        sizes = np.fromiter((len(p) for p in pieces), np.int64, len(pieces))
        fx.write(b"".join(pieces))
        text_offsets.append(num_text + np.cumsum(sizes))
        num_text += int(sizes.sum())
        progress.add(len(lengths))
    block_ids = np.concatenate(ids) if ids else np.zeros([0], np.int64)
    n = len(block_ids)
    if n == 0:
      raise corpus.CorpusError(f"No blocks found in {corpus_dir}.")
    if n != total:
      corpus.verify_shards(corpus_dir, manifest)  # a truncated shard: the error names it
      raise corpus.CorpusError(f"Corpus {corpus_dir}: its manifest lists {total} blocks but its "
                               f"shards hold {n}.")
    order = np.argsort(block_ids, kind="stable")
    sorted_ids = block_ids[order]
    dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if dup.size:
      raise corpus.CorpusError(f"Corpus {corpus_dir}: block id {int(sorted_ids[dup[0]])} occurs "
                               "more than once.")
    token_dtype = np.uint16 if max_id <= np.iinfo(np.uint16).max else np.int32
    tokens_name = _file_name("tokens", token_dtype)
    _convert_tokens(tokens_path, os.path.join(tmp, tokens_name), token_dtype)
    arrays = {"offsets": np.concatenate(offsets), "title_lengths": np.concatenate(title_lengths),
              "block_ids": block_ids, "sorted_ids": sorted_ids, "sorted_rows": order,
              "text_offsets": np.concatenate(text_offsets)}
    for name, dtype in _FILES.items():
      with open(os.path.join(tmp, _file_name(name, dtype)), "wb") as f:
        _write_array(f, arrays[name], dtype)
        f.write(b"\0" * 64)  # never an empty file: an empty region cannot be mapped
    meta = {"format_version": FORMAT_VERSION, "num_blocks": n, "num_tokens": num_tokens,
            "token_dtype": np.dtype(token_dtype).name, "num_text_bytes": num_text,
            "corpus_fingerprint": manifest["fingerprint"],
            "max_block_length": int(manifest.get("max_block_length", 0)),
            "max_body_length": max_body,
            "created": time.time()}
    with open(os.path.join(tmp, META), "w") as f:
      json.dump(meta, f, indent=2, sort_keys=True)
    _publish_dir(tmp, lookup_dir, manifest["fingerprint"])
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp, ignore_errors=True)
  logging.info("Block lookup of %s written to %s (%d blocks, %d wordpieces).", corpus_dir,
               lookup_dir, n, num_tokens)
  return lookup_dir


def _read_batches(corpus_dir: str, manifest):
  """The corpus's blocks in batches of `_BATCH`. A shard that cannot be read (a truncated GZIP
  shard reads as an error, or as fewer records, which `build_lookup` counts) raises CorpusError
  naming the shard that fails its manifest's sha256."""
  batches = iter(corpus.read_blocks(corpus_dir).ragged_batch(_BATCH))
  while True:
    try:
      batch = next(batches)
    except StopIteration:
      return
    except tf.errors.OpError as e:
      corpus.verify_shards(corpus_dir, manifest)
      raise corpus.CorpusError(f"Corpus {corpus_dir}: its shards cannot be read: "
                               f"{error_text(e)}") from e
    yield batch


def _convert_tokens(src: str, dst: str, dtype) -> None:
  """Rewrites the int32 wordpiece file `src` as `dst` in `dtype`, reading (not mapping) it in
  chunks, so memory stays at one chunk; removes `src`."""
  chunk = 1 << 22
  with open(src, "rb") as f_in, open(dst, "wb") as f_out:
    while True:
      data = np.frombuffer(f_in.read(4 * chunk), np.int32)
      if not data.size:
        break
      _write_array(f_out, data, dtype)
    f_out.write(b"\0" * 64)
  os.remove(src)


def _is_fresh(lookup_dir: str, fingerprint: str) -> bool:
  """Whether `lookup_dir` holds a lookup of the corpus with `fingerprint` in this format."""
  try:
    with open(os.path.join(lookup_dir, META)) as f:
      meta = json.load(f)
  except (OSError, ValueError):
    return False
  return (isinstance(meta, dict) and meta.get("corpus_fingerprint") == fingerprint
          and meta.get("format_version") == FORMAT_VERSION)


def _publish_dir(tmp: str, target: str, fingerprint: str) -> None:
  """Publishes `tmp` as `target` unless a fresh lookup (of `fingerprint`) is there: that one,
  which another process may have just built and be opening, is kept and `tmp` left to the caller
  to remove. A stale `target` is replaced (moved aside and deleted; processes that mapped it keep
  their pages); if another builder publishes meanwhile, its lookup is kept."""
  for _ in range(5):
    try:
      publish.move_into_place(tmp, target)
      return
    except publish.TargetExistsError:
      pass
    if _is_fresh(target, fingerprint):
      logging.info("Block lookup %s was published by another process meanwhile; kept.", target)
      return
    logging.info("Replacing the stale block lookup %s.", target)
    try:
      publish.move_into_place(tmp, target, replace=True)
      return
    except (OSError, tf.errors.OpError):
      if not os.path.exists(target):
        raise
  raise corpus.CorpusError(f"Could not publish the block lookup {target}: other processes kept "
                           "replacing it.")


class BlockLookup:
  """Block id → row → wordpieces (in TensorFlow) and texts (on the host), memory-mapped.

  Open with `BlockLookup.open(corpus_dir)`, which builds the lookup files once if they are
  missing or were built from another corpus. TensorFlow methods (`rows`, `documents`,
  `bodies_ragged`, `titles_ragged`, `dense_bodies`) work eagerly, in tf.functions and in tf.data
  functions; numpy methods (`rows_np`, `texts`, `text_batches`) serve host code.
  """

  def __init__(self, lookup_dir: str):
    meta_path = os.path.join(lookup_dir, META)
    if not os.path.exists(meta_path):
      raise corpus.CorpusError(f"No block lookup at {lookup_dir} (no {META}).")
    with open(meta_path) as f:
      self.meta = json.load(f)
    if self.meta.get("format_version") != FORMAT_VERSION:
      raise corpus.CorpusError(f"Block lookup {lookup_dir} has format "
                               f"{self.meta.get('format_version')}; expected {FORMAT_VERSION}.")
    self.path = os.path.abspath(lookup_dir)
    self.size = int(self.meta["num_blocks"])
    self.num_tokens = int(self.meta["num_tokens"])
    self.corpus_fingerprint = self.meta["corpus_fingerprint"]
    # The longest body: the width of dense body batches.
    self.max_body_length = max(int(self.meta["max_body_length"]), 1)
    self._token_dtype = np.dtype(self.meta["token_dtype"])
    n = self.size
    self._shapes = {"tokens": (self._token_dtype, self.num_tokens), "offsets": (np.int64, n + 1),
                    "title_lengths": (np.uint16, n), "block_ids": (np.int64, n),
                    "sorted_ids": (np.int64, n), "sorted_rows": (np.int32, n),
                    "text_offsets": (np.int64, 2 * n + 1)}
    self._np = {}
    self._text_fd = self._text_offsets_fd = None
    # Files are opened and mapped on first use, from whichever thread gets there first (tf.data
    # runs the lookup's ops on several): one lock, so each is opened once.
    self._open_lock = threading.Lock()

  @classmethod
  def open(cls, corpus_dir: str, cache_dir: Optional[str] = None) -> "BlockLookup":
    """The lookup of `corpus_dir`, built first if missing or stale (another corpus fingerprint)."""
    manifest = corpus.load_manifest(corpus_dir)
    lookup_dir = lookup_dir_for(corpus_dir, cache_dir)
    if _is_fresh(lookup_dir, manifest["fingerprint"]):
      return cls(lookup_dir)
    if os.path.exists(os.path.join(lookup_dir, META)):
      logging.info("Block lookup %s is stale (built from another corpus); rebuilding.",
                   lookup_dir)
    build_lookup(corpus_dir, lookup_dir)
    return cls(lookup_dir)

  def __repr__(self):
    return f"BlockLookup({self.size} blocks at {self.path!r})"

  def _path(self, name: str) -> str:
    dtype = self._shapes[name][0]
    return os.path.join(self.path, _file_name(name, dtype))

  def nbytes(self) -> Dict[str, int]:
    """Bytes of each file's data (what the lookup maps), by name, plus `text`."""
    out = {name: int(np.dtype(d).itemsize * k) for name, (d, k) in self._shapes.items()}
    out["text"] = int(self.meta["num_text_bytes"])
    return out

  # ---- TensorFlow side ------------------------------------------------------------------------
  # Each op is one `tf.numpy_function` over the memory-mapped arrays: the host reads just the rows
  # asked for, straight from the shared page cache. (TensorFlow's own memory-mapping op,
  # ImmutableConst, copies the whole file into every process that runs it.)

  def rows(self, block_ids) -> tf.Tensor:
    """Block ids (any shape) → rows int64 of the same shape, -1 where the id is unknown."""
    ids = tf.cast(block_ids, tf.int64)
    rows = tf.numpy_function(self.rows_np, [ids], tf.int64, stateful=False, name="lookup_rows")
    return tf.reshape(rows, tf.shape(ids))

  def _pieces(self, rows, which: str) -> tf.RaggedTensor:
    """Rows [M] → their `which` ("title" or "body") wordpieces, ragged int32 [M, (n)]; rows < 0
    read row 0."""
    values, lengths = tf.numpy_function(
        lambda r: self.pieces_np(r, which), [tf.cast(tf.reshape(rows, [-1]), tf.int64)],
        (tf.int32, tf.int64), stateful=False, name=f"lookup_{which}s")
    values.set_shape([None])
    lengths.set_shape([None])
    return tf.RaggedTensor.from_row_lengths(values, lengths, validate=False)

  def bodies_ragged(self, rows) -> tf.RaggedTensor:
    """Rows [M] → body wordpieces, ragged int32 [M, (n)]; rows < 0 give row 0's body, which
    callers mask out."""
    return self._pieces(rows, "body")

  def titles_ragged(self, rows) -> tf.RaggedTensor:
    """Rows [M] → title wordpieces, ragged int32 [M, (n)]; rows < 0 give row 0's title."""
    return self._pieces(rows, "title")

  def documents(self, rows, seq_length: int, cls_id: int, sep_id: int) -> Dict[str, tf.Tensor]:
    """Rows [...] → packed `[CLS] title [SEP] body [SEP]` inputs, dict of int32 [..., seq_length]
    (INPUT_KEYS); rows < 0 give all-zero (padding) documents."""
    rows = tf.cast(rows, tf.int64)
    flat = tf.reshape(rows, [-1])
    packed = pack_document(self.titles_ragged(flat), self.bodies_ragged(flat), seq_length,
                           cls_id, sep_id)
    valid = tf.cast(flat >= 0, tf.int32)[:, None]
    shape = tf.concat([tf.shape(rows), [seq_length]], 0)
    return {k: tf.reshape(packed[k] * valid, shape) for k in INPUT_KEYS}

  def body_lengths(self, rows) -> tf.Tensor:
    """Rows [...] → body wordpiece counts int32 [...]; rows < 0 give row 0's."""
    rows = tf.cast(rows, tf.int64)
    n = tf.numpy_function(lambda r: self.body_lengths_np(r).astype(np.int32), [rows], tf.int32,
                          stateful=False, name="lookup_body_lengths")
    return tf.reshape(n, tf.shape(rows))

  def dense_bodies(self, rows, length: int) -> Tuple[tf.Tensor, tf.Tensor]:
    """Rows [...] → (body wordpieces int32 [..., length], zero padded and cut at `length`;
    their lengths int32 [...], at most `length`). Rows < 0 give row 0's body."""
    rows = tf.cast(rows, tf.int64)
    dense, lengths = tf.numpy_function(
        lambda r: self.dense_bodies_np(np.maximum(r.ravel(), 0), length), [rows],
        (tf.int32, tf.int32), stateful=False, name="lookup_dense_bodies")
    shape = tf.shape(rows)
    dense = tf.reshape(dense, tf.concat([shape, [length]], 0))
    dense.set_shape(rows.shape.concatenate([length]))
    lengths = tf.reshape(lengths, shape)
    lengths.set_shape(rows.shape)
    return dense, lengths

  # ---- host side ------------------------------------------------------------------------------

  def _array(self, name: str) -> np.ndarray:
    array = self._np.get(name)
    if array is None:
      with self._open_lock:
        array = self._np.get(name)
        if array is None:
          dtype, n = self._shapes[name]
          array = self._np[name] = np.memmap(self._path(name), dtype=dtype, mode="r", shape=(n,))
    return array

  def _fd(self, attr: str, path: str) -> int:
    """The read-only descriptor of `path` kept in `attr`, opened on first use (once, whatever the
    threads)."""
    fd = getattr(self, attr)
    if fd is None:
      with self._open_lock:
        fd = getattr(self, attr)
        if fd is None:
          fd = os.open(path, os.O_RDONLY)
          setattr(self, attr, fd)
    return fd

  @property
  def block_ids(self) -> np.ndarray:
    """int64 [N]: the block id of each row (memory-mapped)."""
    return self._array("block_ids")

  def rows_np(self, block_ids) -> np.ndarray:
    """`rows` on the host: block ids (any shape) → int64 rows, -1 where unknown."""
    ids = np.asarray(block_ids, np.int64)
    sorted_ids = self._array("sorted_ids")
    pos = np.minimum(np.searchsorted(sorted_ids, ids.ravel(), side="left"), self.size - 1)
    found = sorted_ids[pos] == ids.ravel()
    rows = np.where(found, self._array("sorted_rows")[pos].astype(np.int64), -1)
    return rows.reshape(ids.shape)

  def pieces_np(self, rows: np.ndarray, which: str) -> Tuple[np.ndarray, np.ndarray]:
    """`which` ("title" or "body") wordpieces of `rows` [M] (rows < 0 read row 0), as the
    flat values int32 [sum n] and lengths int64 [M] of a ragged batch."""
    rows = np.maximum(np.asarray(rows, np.int64).ravel(), 0)
    offsets = self._array("offsets")
    starts = offsets[rows]
    title_end = starts + self._array("title_lengths")[rows]
    lo, hi = (starts, title_end) if which == "title" else (title_end, offsets[rows + 1])
    lengths = (hi - lo).astype(np.int64)
    within = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(
        np.cumsum(lengths) - lengths, lengths)
    values = self._array("tokens")[np.repeat(lo, lengths) + within].astype(np.int32)
    return values, lengths

  def body_lengths_np(self, rows: np.ndarray) -> np.ndarray:
    """Body wordpiece counts int64 of `rows` (rows < 0 read row 0)."""
    rows = np.maximum(np.asarray(rows, np.int64), 0)
    offsets = self._array("offsets")
    return offsets[rows + 1] - offsets[rows] - self._array("title_lengths")[rows]

  def body_ids_np(self, row: int) -> np.ndarray:
    """One row's body wordpieces, int32 [n]."""
    offsets = self._array("offsets")
    lo = int(offsets[row]) + int(self._array("title_lengths")[row])
    return np.asarray(self._array("tokens")[lo:int(offsets[row + 1])], np.int32)

  def texts(self, rows: Sequence[int]) -> Tuple[List[str], List[str]]:
    """(titles, bodies) of `rows` as str, for the few rows a host shows or scores."""
    titles, bodies = self.text_bytes(rows)
    decode = lambda b: b.decode("utf-8", "replace")  # pylint: disable=unnecessary-lambda-assignment
    return [decode(t) for t in titles], [decode(b) for b in bodies]

  def text_batches(self, rows: Optional[np.ndarray] = None, batch_size: int = _BATCH
                   ) -> Iterator[Tuple[np.ndarray, tf.Tensor, tf.Tensor]]:
    """Yields (rows int64 [b], titles string [b], bodies string [b]) for `rows` (default every
    row, in row order), `batch_size` at a time: whole-corpus passes (BM25, exports) with memory
    bounded by one batch."""
    rows = np.arange(self.size, dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
    for lo in range(0, len(rows), batch_size):
      chunk = rows[lo:lo + batch_size]
      titles, bodies = self.text_bytes(chunk)
      yield chunk, tf.constant(titles, tf.string), tf.constant(bodies, tf.string)

  def joined_texts(self, rows: Optional[np.ndarray] = None) -> Iterator[str]:
    """Yields `title + " " + body` of `rows` (default every row, in row order): the documents of
    BM25 over the corpus, streamed."""
    for _, titles, bodies in self.text_batches(rows):
      for t, b in zip(titles.numpy(), bodies.numpy()):
        yield t.decode("utf-8", "replace") + " " + b.decode("utf-8", "replace")

  def dense_bodies_np(self, rows: np.ndarray, length: int) -> Tuple[np.ndarray, np.ndarray]:
    """`dense_bodies` on the host for valid rows [R]: (int32 [R, length], lengths int32 [R])."""
    rows = np.asarray(rows, np.int64)
    offsets = self._array("offsets")
    starts = offsets[rows] + self._array("title_lengths")[rows]
    lengths = np.minimum(offsets[rows + 1] - starts, length)
    positions = starts[:, None] + np.arange(length)[None, :]
    inside = np.arange(length)[None, :] < lengths[:, None]
    tokens = self._array("tokens")
    dense = np.where(inside, tokens[np.where(inside, positions, 0)], 0).astype(np.int32)
    return dense, lengths.astype(np.int32)

  def text_bytes(self, rows: Sequence[int]) -> Tuple[List[bytes], List[bytes]]:
    """(titles, bodies) of `rows` as UTF-8 bytes; a row < 0 (an unknown block id's) gives empty
    ones. The text is read with `pread`, not mapped, so a whole-corpus pass leaves none of it
    resident in the process; a run of consecutive rows is one read, any other row one read each.
    Raises IndexError for a row past the last."""
    rows = np.asarray(rows, np.int64).ravel()
    if rows.size == 0:
      return [], []
    if int(rows.max()) >= self.size:
      raise IndexError(f"Block lookup {self.path}: row {int(rows.max())} is past its last row "
                       f"({self.size - 1}).")
    text_fd = self._fd("_text_fd", os.path.join(self.path, "text.bin"))
    if rows[0] >= 0 and np.array_equal(rows, rows[0] + np.arange(rows.size)):
      offsets = self._read_offsets(2 * int(rows[0]), 2 * rows.size + 1)
      lo = int(offsets[0])
      data = os.pread(text_fd, int(offsets[-1]) - lo, lo)
      cuts = (offsets - lo).tolist()
      pieces = [data[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
      return pieces[0::2], pieces[1::2]
    offsets = self._array("text_offsets")
    titles, bodies = [], []
    for r in rows.tolist():
      if r < 0:
        titles.append(b"")
        bodies.append(b"")
        continue
      lo, mid, hi = (int(x) for x in offsets[2 * r:2 * r + 3])
      data = os.pread(text_fd, hi - lo, lo)
      titles.append(data[:mid - lo])
      bodies.append(data[mid - lo:])
    return titles, bodies

  def _read_offsets(self, start: int, count: int) -> np.ndarray:
    """text_offsets[start:start + count], read (not mapped)."""
    raw = os.pread(self._fd("_text_offsets_fd", self._path("text_offsets")), 8 * count, 8 * start)
    return np.frombuffer(raw, np.int64)

  def __del__(self):
    for fd in (getattr(self, "_text_fd", None), getattr(self, "_text_offsets_fd", None)):
      if fd is not None:
        os.close(fd)
