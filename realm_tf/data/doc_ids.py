"""Which corpus document each block came from: a memory-mapped doc-id column beside the lookup.

Run files (DPR retriever results, TREC runs) name documents, not blocks, but the block lookup
(`block_lookup.py`) keeps only block ids, wordpieces and texts. The corpus records carry each
block's `doc_id`; `DocIdTable.open(corpus_dir, lookup)` reads them once, in lookup row order
(= manifest order), into files beside the lookup, and maps them from then on:

    <lookup_dir>-doc_ids/            (<corpus_dir>/lookup-doc_ids for a local corpus)
        meta.json                    corpus fingerprint, counts
        doc_ids.bin                  every row's doc id, UTF-8, concatenated
        offsets.i64                  [N + 1] start of each row's doc id in doc_ids.bin
        parts.i32                    [N] the row's place among its document's blocks (0, 1, ...
                                     in corpus order), or -1 when the document is one block

A block's *context id* is its document id when the document is one block, else
`<doc_id>#<part>`. For a corpus written by the corpus builder, blocks of a document are in
block order, so `part` is the block index and `corpus.block_id_for(doc_id, part)` is the block's
id: every context id leads back to exactly one block. Parts are counted over the whole corpus
(documents grouped by a 64-bit hash of their id), so the blocks of one document get distinct
parts even when they are not adjacent.

Building streams the shards and holds 16 bytes per block (the id hashes and the order); a
13M-block corpus takes one pass over its shards, once.
"""
import hashlib
import json
import os
from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.data import corpus
from realm_tf.io import publish

META = "meta.json"
FORMAT_VERSION = 1
_BATCH = 4096
_FEATURES = {"block_id": tf.io.FixedLenFeature([], tf.int64),
             "doc_id": tf.io.FixedLenFeature([], tf.string)}


def table_dir_for(lookup) -> str:
  """Where the doc-id table of a `BlockLookup` lives: `<lookup dir>-doc_ids`."""
  return lookup.path.rstrip("/") + "-doc_ids"


def _hash(doc_id: bytes) -> int:
  return int.from_bytes(hashlib.blake2b(doc_id, digest_size=8).digest(), "little")


def build_table(corpus_dir: str, lookup, table_dir: Optional[str] = None) -> str:
  """Writes the doc-id table of `corpus_dir` (rows of `lookup`) and publishes it; returns its
  directory. Raises CorpusError when the shards' block ids are not the lookup's rows."""
  manifest = corpus.load_manifest(corpus_dir)
  table_dir = table_dir or table_dir_for(lookup)
  n = lookup.size
  expected = lookup.block_ids
  hashes = np.zeros([n], np.uint64)
  with publish.publish_dir(table_dir, replace=True) as tmp:
    offsets = [np.zeros([1], np.int64)]
    row = total = 0
    records = tf.data.TFRecordDataset(corpus.shard_paths(corpus_dir, manifest),
                                      compression_type=corpus.COMPRESSION)
    with open(os.path.join(tmp, "doc_ids.bin"), "wb") as out:
      for batch in records.batch(_BATCH).map(lambda s: tf.io.parse_example(s, _FEATURES)):
        ids, docs = batch["block_id"].numpy(), batch["doc_id"].numpy()
        if row + len(ids) > n or not np.array_equal(ids, expected[row:row + len(ids)]):
          raise corpus.CorpusError(
              f"Corpus {corpus_dir}: its blocks from row {row} are not those of the block lookup "
              f"{lookup.path}; rebuild the lookup from this corpus.")
        sizes = np.fromiter((len(d) for d in docs), np.int64, len(docs))
        out.write(b"".join(docs))
        offsets.append(total + np.cumsum(sizes))
        total += int(sizes.sum())
        hashes[row:row + len(ids)] = [_hash(d) for d in docs]
        row += len(ids)
    if row != n:
      raise corpus.CorpusError(f"Corpus {corpus_dir} holds {row} blocks; the block lookup "
                               f"{lookup.path} has {n}.")
    order = np.argsort(hashes, kind="stable")  # rows of one document together, in row order
    sorted_hashes = hashes[order]
    starts = np.flatnonzero(np.r_[True, sorted_hashes[1:] != sorted_hashes[:-1]])
    sizes = np.diff(np.r_[starts, n])
    place = np.arange(n) - np.repeat(starts, sizes)
    parts = np.empty([n], np.int32)
    parts[order] = np.where(np.repeat(sizes, sizes) > 1, place, -1)
    np.concatenate(offsets).astype(np.int64).tofile(os.path.join(tmp, "offsets.i64"))
    parts.tofile(os.path.join(tmp, "parts.i32"))
    with open(os.path.join(tmp, META), "w") as f:
      json.dump({"format_version": FORMAT_VERSION, "num_blocks": n, "num_bytes": total,
                 "num_documents": int(len(starts)),
                 "corpus_fingerprint": manifest["fingerprint"]}, f, indent=2, sort_keys=True)
  logging.info("Doc-id table of %s written to %s (%d blocks, %d documents).", corpus_dir,
               table_dir, n, len(starts))
  return table_dir


class DocIdTable:
  """Lookup row → document id and context id (see module docstring), memory-mapped.

  Open with `DocIdTable.open(corpus_dir, lookup)`, which builds the files once if they are
  missing or were built from another corpus.
  """

  def __init__(self, table_dir: str):
    with open(os.path.join(table_dir, META)) as f:
      self.meta = json.load(f)
    if self.meta.get("format_version") != FORMAT_VERSION:
      raise corpus.CorpusError(f"Doc-id table {table_dir} has format "
                               f"{self.meta.get('format_version')}; expected {FORMAT_VERSION}.")
    self.path = table_dir
    self.size = int(self.meta["num_blocks"])
    num_bytes = int(self.meta["num_bytes"])
    # A zero-length file cannot be mapped: an all-empty column reads as b"".
    self._bytes = (np.memmap(os.path.join(table_dir, "doc_ids.bin"), np.uint8, "r")
                   if num_bytes else np.zeros([0], np.uint8))
    self._offsets = np.memmap(os.path.join(table_dir, "offsets.i64"), np.int64, "r",
                              shape=(self.size + 1,))
    self._parts = np.memmap(os.path.join(table_dir, "parts.i32"), np.int32, "r",
                            shape=(self.size,))

  @classmethod
  def open(cls, corpus_dir: str, lookup) -> "DocIdTable":
    """The table of `corpus_dir` over `lookup`'s rows, built first if missing or stale."""
    table_dir = table_dir_for(lookup)
    meta_path = os.path.join(table_dir, META)
    if os.path.exists(meta_path):
      with open(meta_path) as f:
        meta = json.load(f)
      if meta.get("corpus_fingerprint") == lookup.corpus_fingerprint and \
          meta.get("format_version") == FORMAT_VERSION and meta.get("num_blocks") == lookup.size:
        return cls(table_dir)
      logging.info("Doc-id table %s is stale (built from another corpus); rebuilding.", table_dir)
    return cls(build_table(corpus_dir, lookup, table_dir))

  def doc_ids(self, rows: Sequence[int]) -> List[str]:
    """The corpus `doc_id` of each lookup row."""
    out = []
    for r in np.asarray(rows, np.int64).ravel().tolist():
      lo, hi = int(self._offsets[r]), int(self._offsets[r + 1])
      out.append(self._bytes[lo:hi].tobytes().decode("utf-8", "replace"))
    return out

  def parts(self, rows: Sequence[int]) -> np.ndarray:
    """Each row's place among its document's blocks, int32 (-1: the document is one block)."""
    return np.asarray(self._parts[np.asarray(rows, np.int64).ravel()])

  def context_ids(self, rows: Sequence[int]) -> List[str]:
    """Unique id of each row's block: `doc_id`, or `doc_id#part` for a document of several
    blocks (module docstring)."""
    return [d if p < 0 else f"{d}#{p}" for d, p in zip(self.doc_ids(rows), self.parts(rows))]
