"""BM25 over the block corpus: the sparse baseline every dense retrieval figure is reported beside.

One BM25 document per block: the lower-cased `\\w+` tokens of `title + " " + body`. Scores are
BM25 Okapi with `rank_bm25.BM25Okapi`'s defaults and formula (k1=1.5, b=0.75; idf
log((N - df + 0.5) / (df + 0.5)), floored at 0.25 x the vocabulary's mean idf where negative; term
frequency (k1 + 1) tf / (tf + k1 (1 - b + b |d| / avgdl)); an empty block counts as one empty
token; a query token counts as often as it occurs).

The index is an eager sparse BM25 (the layout of `bm25s`, "BM25S", Lù 2024, made smaller):
each (term, block) posting holds its precomputed idf x tf-component, postings grouped by term
and rows ascending within a term, so a query sums the postings of its terms. A posting is 6
bytes: its score (float32) and its row's low 16 bits (uint16); the rows' high bits are kept once
per (term, segment of 2**16 rows) pair, in small in-memory tables (`term_segments`: each term's
first pair; `segment_ids`, `segment_starts`: each pair's segment and first posting). The two
posting arrays are memory-mapped: resident memory is the vocabulary and those tables plus the
pages of the postings that queries touch.

Building does not hold every block's token list in memory (bm25s's own `BM25.index` does, as
Python objects): the index is written in one streaming pass: texts are tokenised `CHUNK_DOCS` at
a time (by worker processes when there are many) into runs of term-sorted postings spilled to
disk, and the runs are merged term range by term range into the final arrays once N, the
document frequencies and avgdl are known. Memory while building is the vocabulary, 12 bytes per
block (its length, then its length norm), the runs' term tables, the (term, segment) pairs and
fixed-size buffers.

Used by pre-training's held-out evaluation (question recall beside the dense retriever's), by the
warm-up's evidence choice, and by open-QA evaluation (`--retriever=bm25`).
"""
import collections
import contextlib
from concurrent import futures
import dataclasses
import itertools
import json
import multiprocessing
import os
import re
import shutil
import tempfile
import weakref
from typing import Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from absl import logging

from realm_tf.io import publish
from realm_tf.io.memory import return_free_memory
from realm_tf.retrieval.topk import top_k
from realm_tf.utils.progress import ItemProgress

_WORD = re.compile(r"\w+", re.UNICODE)
_WORD_OR_SEP = re.compile(r"\w+|\x00", re.UNICODE)  # "\x00" separates the texts of a chunk
# Words without running the regex over every character: in UTF-8 bytes, each ASCII byte that is
# not [0-9A-Za-z_] (what `\w` matches in ASCII) becomes a space and A-Z become a-z, bytes of
# non-ASCII characters and the separator stay, and bytes.split cuts the rest into raw tokens. An
# ASCII raw token is a word; a non-ASCII one is lower-cased and cut by the regex, once per chunk.
_BYTE_WORDS = bytes((c + 32 if 65 <= c <= 90 else c) if c >= 128 or c == 0 or chr(c).isalnum()
                    or c == 95 else 32 for c in range(256))
_SIGMA = "\u03a3"  # lower-cased by context (final sigma): such chunks take the regex whole
K1, B, EPSILON = 1.5, 0.75, 0.25
CHUNK_DOCS = 2048             # texts tokenised at once
RUN_DOCS = 1 << 14            # blocks per spilled run (local rows fit uint16)
RUN_POSTINGS = 1 << 23        # or fewer, if the run's postings reach this many first
MERGE_POSTINGS = 1 << 20      # postings per merge step, unless one term has more
SCORE_POSTINGS = 1 << 18      # postings scored at once (bounds the float64 temporaries)
SEGMENT_BITS = 16             # rows per segment: 2**16, so a row within its segment is a uint16
DATA, LOW_ROWS = "data.index.npy", "low_rows.index.npy"
TERM_SEGMENTS, SEGMENT_IDS, SEGMENT_STARTS = (
    "term_segments.index.npy", "segment_ids.index.npy", "segment_starts.index.npy")
VOCAB, META = "vocab.index.json", "realm_bm25.json"
FILES = (DATA, LOW_ROWS, TERM_SEGMENTS, SEGMENT_IDS, SEGMENT_STARTS, VOCAB, META)
FORMAT = 2


def bm25_tokens(text: str) -> List[str]:
  """Lower-cased word tokens (letters, digits, underscore runs)."""
  return _WORD.findall(text.lower())


class _Vocab(dict):
  """token -> id, adding unseen tokens with the next id (id 0 is the chunk separator)."""

  def __missing__(self, token):
    self[token] = len(self)
    return len(self) - 1


@dataclasses.dataclass
class _Run:
  """Postings of `RUN_DOCS` blocks on disk, term-major: uint16 local rows, then uint16 tf."""
  first_row: int
  offset: int            # byte offset of the rows in the spill file
  size: int              # postings
  terms: np.ndarray      # distinct term ids, ascending (int32)
  starts: np.ndarray     # posting offset of each term's postings, plus the end (int32)


class _Builder:
  """Streaming construction of an index directory (see the module docstring)."""

  def __init__(self, directory: str):
    self.directory = directory
    self.vocab = _Vocab({"\x00": 0})
    self.lengths: List[np.ndarray] = []         # int32 per chunk
    self.runs: List[_Run] = []
    self.run_parts: List[Tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    self.run_docs = self.run_postings = 0
    self.num_docs = 0
    self.spill_path = os.path.join(directory, "postings.spill")
    self.spill = open(self.spill_path, "wb")  # pylint: disable=consider-using-with

  def add(self, chunk: "_Chunk") -> None:
    """Adds one tokenised chunk to the current run."""
    terms = np.fromiter(map(self.vocab.__getitem__, chunk.tokens), np.int32,
                        count=len(chunk.tokens)) - 1
    self.run_parts.append((np.repeat(terms, chunk.postings_per_token),
                           chunk.rows + np.uint16(self.run_docs), chunk.tf))
    self.lengths.append(chunk.lengths)
    self.run_docs += len(chunk.lengths)
    self.run_postings += len(chunk.rows)
    self.num_docs += len(chunk.lengths)
    if self.run_docs + CHUNK_DOCS > RUN_DOCS or self.run_postings >= RUN_POSTINGS:
      self._spill_run()

  def _spill_run(self) -> None:
    """Writes the current run term-major (rows ascending within a term) to the spill file."""
    if not self.run_parts:
      return
    import scipy.sparse  # pylint: disable=g-import-not-at-top
    terms, rows, tf = (np.concatenate(x) for x in zip(*self.run_parts))
    self.run_parts = []
    csc = scipy.sparse.coo_matrix((tf, (rows, terms)),
                                  shape=(self.run_docs, len(self.vocab) - 1)).tocsc()
    del terms, rows, tf
    per_term = np.diff(csc.indptr)
    distinct = np.flatnonzero(per_term).astype(np.int32)
    offset = self.spill.tell()
    csc.indices.astype(np.uint16).tofile(self.spill)
    csc.data.astype(np.uint16).tofile(self.spill)
    self.runs.append(_Run(self.num_docs - self.run_docs, offset, int(csc.nnz), distinct,
                          np.concatenate([[0], np.cumsum(per_term[distinct])]).astype(np.int32)))
    self.run_docs = self.run_postings = 0

  def finish(self) -> dict:
    """Merges the runs into the posting arrays and segment tables; writes the vocabulary."""
    self._spill_run()
    self.spill.close()
    if not self.num_docs:
      raise ValueError("BM25Index needs at least one document.")
    lengths = np.concatenate(self.lengths)
    self.lengths = []
    n, vocab_size = self.num_docs, len(self.vocab) - 1
    avgdl = float(lengths.sum(dtype=np.int64)) / n
    df = np.zeros(vocab_size, np.int64)
    for run in self.runs:
      df[run.terms] += np.diff(run.starts)
    idf = np.log(n - df + 0.5) - np.log(df + 0.5)
    idf[idf < 0] = EPSILON * idf.mean()
    norm = K1 * (1 - B + B * lengths / avgdl)    # float64 [N]
    del lengths
    indptr = np.concatenate([[0], np.cumsum(df)]).astype(np.int64)
    progress = ItemProgress(int(indptr[-1]), "bm25 merge", "postings")
    pair_terms, pair_ids, pair_starts = [], [], []   # one (term, segment) pair per run of rows
    with open(self.spill_path, "rb") as spill, \
        _NpyWriter(os.path.join(self.directory, DATA), np.float32, indptr[-1]) as data, \
        _NpyWriter(os.path.join(self.directory, LOW_ROWS), np.uint16, indptr[-1]) as low_out:
      t0 = 0
      while t0 < vocab_size:
        t1 = max(t0 + 1, int(np.searchsorted(indptr, indptr[t0] + MERGE_POSTINGS, "right")) - 1)
        t1 = min(t1, vocab_size)
        rows, tf = self._merge_range(spill, indptr, t0, t1)
        terms = np.repeat(np.arange(t0, t1, dtype=np.int32), df[t0:t1])
        for s in range(0, len(rows), SCORE_POSTINGS):
          r, f = rows[s:s + SCORE_POSTINGS], tf[s:s + SCORE_POSTINGS].astype(np.float64)
          w = idf[terms[s:s + SCORE_POSTINGS]]
          data.write((w * f * (K1 + 1) / (f + norm[r])).astype(np.float32))
          low_out.write((r & ((1 << SEGMENT_BITS) - 1)).astype(np.uint16))
        seg = rows >> SEGMENT_BITS
        first = np.flatnonzero(np.concatenate(
            [[True], (terms[1:] != terms[:-1]) | (seg[1:] != seg[:-1])]))
        pair_terms.append(terms[first])
        pair_ids.append(seg[first].astype(np.uint32))
        pair_starts.append(first + indptr[t0])
        progress.add(int(indptr[t1] - indptr[t0]))
        t0 = t1
    os.remove(self.spill_path)
    pair_terms = np.concatenate(pair_terms)
    np.save(os.path.join(self.directory, TERM_SEGMENTS), np.concatenate(
        [[0], np.cumsum(np.bincount(pair_terms, minlength=vocab_size))]).astype(np.int64))
    np.save(os.path.join(self.directory, SEGMENT_IDS), np.concatenate(pair_ids))
    np.save(os.path.join(self.directory, SEGMENT_STARTS),
            np.concatenate(pair_starts + [indptr[-1:]]).astype(np.int64))
    vocab = {token: i - 1 for token, i in self.vocab.items() if i}
    with open(os.path.join(self.directory, VOCAB), "w", encoding="utf-8") as f:
      json.dump(vocab, f, ensure_ascii=False)
    return {"format": FORMAT, "num_docs": n, "vocab_size": vocab_size,
            "num_postings": int(indptr[-1]), "num_segment_pairs": len(pair_terms),
            "segment_bits": SEGMENT_BITS, "avgdl": avgdl, "k1": K1, "b": B,
            "epsilon": EPSILON,
            "scoring": "rank_bm25 BM25Okapi: atire tf-component x robertson idf floored at "
                       "epsilon x mean idf", "tokens": "lower-cased \\w+ of each text"}

  def _merge_range(self, spill, indptr: np.ndarray, t0: int, t1: int):
    """(rows int32, tf uint16) of terms [t0, t1) in index order: by term, then row."""
    base = indptr[t0]
    rows = np.empty(indptr[t1] - base, np.int32)
    tf = np.empty(len(rows), np.uint16)
    heads = indptr[t0:t1] - base                      # next free slot of each term
    for run in self.runs:
      a, b = np.searchsorted(run.terms, [t0, t1])
      if a == b:
        continue
      first, last = int(run.starts[a]), int(run.starts[b])
      spill.seek(run.offset + 2 * first)
      local = np.fromfile(spill, np.uint16, last - first)
      spill.seek(run.offset + 2 * (run.size + first))
      freq = np.fromfile(spill, np.uint16, last - first)
      group = run.terms[a:b] - t0
      sizes = np.diff(run.starts[a:b + 1])
      dest = np.repeat(heads[group] - (run.starts[a:b] - first), sizes) + np.arange(last - first)
      heads[group] += sizes
      rows[dest] = local.astype(np.int32) + run.first_row
      tf[dest] = freq
    return rows, tf


class _NpyWriter:
  """Writes a 1-D .npy file of known length sequentially (no array of that length in memory)."""

  def __init__(self, path: str, dtype, length: int):
    self.path, self.dtype, self.length, self.written = path, np.dtype(dtype), int(length), 0

  def __enter__(self):
    self.f = open(self.path, "wb")  # pylint: disable=consider-using-with
    np.lib.format.write_array_header_1_0(self.f, {
        "descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
        "shape": (self.length,)})
    return self

  def write(self, values: np.ndarray) -> None:
    self.f.write(np.ascontiguousarray(values, self.dtype).tobytes())
    self.written += len(values)

  def __exit__(self, *exc):
    self.f.close()
    if exc[0] is None and self.written != self.length:
      raise RuntimeError(f"{self.path}: wrote {self.written} values, expected {self.length}.")


class _Chunk(NamedTuple):
  """Postings of a chunk of texts, grouped by the chunk's own tokens (rows ascending in a group)."""
  tokens: List[str]                 # distinct tokens
  postings_per_token: np.ndarray    # int32 [len(tokens)]
  rows: np.ndarray                  # uint16: the text (within the chunk) of each posting
  tf: np.ndarray                    # uint16: its term frequency (capped at 65535)
  lengths: np.ndarray               # int32: tokens per text (1 for a text without words)


def _word_ids(joined: str) -> Tuple[List[str], np.ndarray]:
  """The words of `_WORD_OR_SEP.findall(joined.lower())` as (its distinct words, "\x00" first;
  each occurrence's index in them), in about half the regex's time: only distinct non-ASCII raw
  tokens (a few hundred a chunk) go through the regex."""
  raw = joined.encode("utf-8", "surrogatepass").translate(_BYTE_WORDS) \
      .replace(b"\x00", b" \x00 ").split()
  local = _Vocab({b"\x00": 0})
  raw_ids = np.fromiter(map(local.__getitem__, raw), np.int32, count=len(raw))
  del raw
  # Raw tokens hold no space, and UTF-8 is cut at ASCII bytes only: decoded at once, then split.
  strings = b" ".join(local).decode("utf-8", "surrogatepass").split(" ")
  special = [i for i, token in enumerate(strings) if not token.isascii()]
  if not special:  # every raw token is a word
    return strings, raw_ids
  if any(_SIGMA in strings[i] for i in special):
    found = _WORD_OR_SEP.findall(joined.lower())
    words = _Vocab({"\x00": 0})
    ids = np.fromiter(map(words.__getitem__, found), np.int32, count=len(found))
    return list(words), ids
  is_word = np.ones(len(strings), bool)
  is_word[special] = False
  words = _Vocab(zip(itertools.compress(strings, is_word), itertools.count()))
  # Raw token -> its words: ASCII ones are one word each, in raw order; the others, cut here.
  word_of = np.cumsum(is_word, dtype=np.int64) - 1
  sizes = is_word.astype(np.int64)
  pieces = []
  for i in special:
    found = _WORD.findall(strings[i].lower())
    sizes[i] = len(found)
    pieces.append(np.fromiter(map(words.__getitem__, found), np.int64, count=len(found)))
  offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
  flat = np.empty(int(sizes.sum()), np.int64)
  flat[offsets[is_word]] = word_of[is_word]
  for i, piece in zip(special, pieces):
    flat[offsets[i]:offsets[i] + len(piece)] = piece
  counts = sizes[raw_ids]
  ends = np.cumsum(counts)
  picks = np.repeat(offsets[raw_ids] - (ends - counts), counts) + np.arange(ends[-1])
  return list(words), flat[picks].astype(np.int32)


def _tokenize(texts: List[str]) -> _Chunk:
  """Tokenises and counts one chunk of texts (runs in a worker process when there are many)."""
  import scipy.sparse  # pylint: disable=g-import-not-at-top
  joined = "\x00".join(texts)
  if joined.count("\x00") != len(texts) - 1:  # a text holds the separator (it is no word)
    joined = "\x00".join(t.replace("\x00", " ") for t in texts)
  tokens, ids = _word_ids(joined)
  tokens = tokens[1:]
  sep = ids == 0
  docs = np.cumsum(sep, dtype=np.int32)[~sep]
  terms = ids[~sep] - 1
  lengths = np.bincount(docs, minlength=len(texts)).astype(np.int32)
  empty = np.flatnonzero(lengths == 0)
  if empty.size:  # rank_bm25 was given [""] for a text without words
    tokens.append("")
    docs = np.concatenate([docs, empty.astype(np.int32)])
    terms = np.concatenate([terms, np.full(empty.size, len(tokens) - 1, np.int32)])
    lengths[empty] = 1
  # Counting sort by token, rows ascending, duplicates summed into the term frequency.
  counts = scipy.sparse.coo_matrix((np.ones(len(terms), np.int32), (docs, terms)),
                                   shape=(len(texts), len(tokens))).tocsc()
  return _Chunk(tokens, np.diff(counts.indptr).astype(np.int32), counts.indices.astype(np.uint16),
                np.minimum(counts.data, 65535).astype(np.uint16), lengths)


def _tokenized_chunks(texts: Iterable[str], workers: int) -> Iterator[_Chunk]:
  """`_tokenize` of each `CHUNK_DOCS` texts, in order; with `workers`, run by that many forked
  processes, at most 2 chunks per worker in flight (a chunk whose process died is tokenized
  here)."""
  def chunks():
    it = iter(texts)
    while True:
      chunk = list(itertools.islice(it, CHUNK_DOCS))
      if not chunk:
        return
      yield chunk

  if workers <= 0:
    yield from map(_tokenize, chunks())
    return
  # A process pool that loses a worker mid-task (multiprocessing.Pool) waits for its result
  # forever; this one reports it (BrokenProcessPool), and the chunks still out are tokenized
  # here instead, so the index is the same either way.
  pool = futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
  pending = collections.deque()

  def done(chunk, future):
    try:
      if future is not None:
        return future.result()
    except futures.process.BrokenProcessPool as e:
      logging.warning("A BM25 tokenizer process died (%s); tokenizing in this process.", e)
    return _tokenize(chunk)

  try:
    for chunk in chunks():
      try:
        future = pool.submit(_tokenize, chunk)
      except futures.process.BrokenProcessPool:
        future = None
      pending.append((chunk, future))
      if len(pending) >= 2 * workers:
        yield done(*pending.popleft())
    while pending:
      yield done(*pending.popleft())
  finally:
    pool.shutdown(wait=True, cancel_futures=True)


class BM25Index:
  """BM25 over a stream of texts; `search` returns rows (positions in the stream), best first.

  `BM25Index(texts)` is `BM25Index.from_texts(texts)`. The index lives in `directory` (a private
  temporary one, removed with the index, when none is given); `load` opens a saved one.
  """

  def __init__(self, texts: Iterable[str], num_docs: Optional[int] = None,
               directory: Optional[str] = None, workers: Optional[int] = None):
    self._build(texts, num_docs, directory, workers, {})

  @classmethod
  def from_texts(cls, texts: Iterable[str], num_docs: Optional[int] = None,
                 directory: Optional[str] = None, workers: Optional[int] = None) -> "BM25Index":
    """Index of `texts` (any iterable, e.g. a generator over corpus batches), read once in
    `CHUNK_DOCS` pieces; `num_docs`, when given, is checked (and sizes the progress line).

    `workers` processes tokenise (default: one per CPU, up to 8, unless `num_docs` says the
    input is small; 0: in this process). The index does not depend on it.
    """
    return cls(texts, num_docs, directory, workers)

  @classmethod
  def from_corpus(cls, corpus_dir: str, directory: Optional[str] = None,
                  workers: Optional[int] = None) -> "BM25Index":
    """Index of a block corpus: row r is the r-th block in manifest order (title + " " + body).

    With `directory`, an index there built from the same corpus (its manifest fingerprint) is
    opened instead of rebuilt; otherwise one is built there.
    """
    from realm_tf.data import corpus  # pylint: disable=g-import-not-at-top
    manifest = corpus.load_manifest(corpus_dir)
    fingerprint = manifest.get("fingerprint")
    found = _meta(directory) if directory else {}
    if found.get("corpus_fingerprint") == fingerprint and found.get("format") == FORMAT:
      return cls.load(directory)

    def texts():
      for batch in corpus.read_blocks(corpus_dir).ragged_batch(4096):
        for title, body in zip(batch["title"].numpy().tolist(), batch["body"].numpy().tolist()):
          yield title.decode("utf-8") + " " + body.decode("utf-8")

    index = cls.__new__(cls)
    index._build(texts(), int(manifest["num_blocks"]), directory, workers,
                 {"corpus_fingerprint": fingerprint, "corpus_dir": corpus_dir})
    return index

  @classmethod
  def load(cls, directory: str) -> "BM25Index":
    """Opens an index directory written by this class (memory-mapped)."""
    index = cls.__new__(cls)
    index._open(directory)
    return index

  def _build(self, texts: Iterable[str], num_docs: Optional[int], directory: Optional[str],
             workers: Optional[int], extra_meta: dict) -> None:
    if workers is None:
      small = num_docs is not None and num_docs <= 4 * CHUNK_DOCS
      workers = 0 if small else min(8, os.cpu_count() or 1)
    owned = directory is None
    if owned:
      directory = tempfile.mkdtemp(prefix="realm-bm25-")
      self._cleanup = weakref.finalize(self, shutil.rmtree, directory, True)
    target = contextlib.nullcontext(directory) if owned else \
        publish.publish_dir(directory, replace=True)
    with target as work:
      builder = _Builder(work)
      try:
        reading = ItemProgress(num_docs, "bm25 tokenise", "blocks")
        for chunk in _tokenized_chunks(texts, workers):
          builder.add(chunk)
          reading.add(len(chunk.lengths))
        reading.finish()
        if num_docs is not None and builder.num_docs != num_docs:
          raise ValueError(f"BM25Index: read {builder.num_docs} texts, expected num_docs="
                           f"{num_docs}.")
        meta = dict(builder.finish(), workers=workers)
      finally:
        builder.spill.close()
      with open(os.path.join(work, META), "w", encoding="utf-8") as f:
        json.dump(dict(meta, **extra_meta), f, indent=2, sort_keys=True)
    del builder
    return_free_memory()  # the build's freed buffers go back to the system, not kept in the heap
    self._open(directory)

  def _open(self, directory: str) -> None:
    meta = _meta(directory)
    if meta.get("format") != FORMAT:
      raise ValueError(f"{os.path.join(directory, META)}: missing or not a BM25 index of format "
                       f"{FORMAT}.")
    self.size = int(meta["num_docs"])
    self.directory, self.meta = directory, meta
    self._bits = int(meta["segment_bits"])
    load = lambda name, mmap=None: np.load(os.path.join(directory, name), mmap_mode=mmap)  # pylint: disable=unnecessary-lambda-assignment
    # The postings stay on disk, memory-mapped; the (term, segment) tables are small: in memory.
    self._data, self._low = load(DATA, "r"), load(LOW_ROWS, "r")
    self._term_segments, self._segment_ids = load(TERM_SEGMENTS), load(SEGMENT_IDS)
    self._segment_starts = load(SEGMENT_STARTS)
    with open(os.path.join(directory, VOCAB), encoding="utf-8") as f:
      self._vocab = json.load(f)

  def save(self, directory: str) -> None:
    """Copies the index files to `directory` (published atomically; replaces an old one)."""
    with publish.publish_dir(directory, replace=True) as work:
      for name in FILES:
        shutil.copyfile(os.path.join(self.directory, name), os.path.join(work, name))

  def _term_ids(self, query: str) -> np.ndarray:
    return np.asarray([self._vocab[t] for t in bm25_tokens(query) if t in self._vocab], np.int32)

  def _segments(self, term: int) -> Iterator[Tuple[int, int, int]]:
    """(first row of the segment, first posting, end posting) of each segment `term` occurs in."""
    starts = self._segment_starts
    for p in range(int(self._term_segments[term]), int(self._term_segments[term + 1])):
      yield int(self._segment_ids[p]) << self._bits, int(starts[p]), int(starts[p + 1])

  def scores(self, query: str, rows: Optional[Sequence[int]] = None) -> np.ndarray:
    """BM25 scores (float32) of `query`: of every block [N], or of `rows` only [len(rows)]
    (cheap for a few hundred rows; equal to `scores(query)[rows]`).

    A block's score is the float32 sum of its postings' scores, term by term in query order
    (one unbuffered add per segment of each term, as bm25s's `np.add.at` over a term's rows)."""
    ids = self._term_ids(query)
    if rows is None:
      out = np.zeros(self.size, np.float32)
      for t in ids:
        for base, lo, hi in self._segments(t):
          np.add.at(out[base:base + (1 << self._bits)], self._low[lo:hi], self._data[lo:hi])
      return out
    rows = np.asarray(rows, np.int64).reshape(-1)
    bad = rows[(rows < 0) | (rows >= self.size)]
    if bad.size:
      raise ValueError(f"BM25Index.scores: row {int(bad[0])} is outside 0..{self.size - 1}.")
    out = np.zeros(len(rows), np.float32)
    segment_of, low = rows >> self._bits, rows & ((1 << self._bits) - 1)
    for t in ids:  # the same float32 additions in the same order as the full scores
      for base, lo, hi in self._segments(t):
        sel = np.flatnonzero(segment_of == base >> self._bits)
        if not sel.size:
          continue
        postings = self._low[lo:hi]
        at = np.minimum(np.searchsorted(postings, low[sel]), hi - lo - 1)
        hit = postings[at] == low[sel]
        out[sel[hit]] += self._data[lo + at[hit]]
    return out

  def search(self, queries: Sequence[str], k: int) -> Tuple[np.ndarray, np.ndarray]:
    """(scores float32 [Q, k], rows int64 [Q, k]) of the top-k blocks per query, best first,
    equal scores in row order (deterministic); k is capped at the index size."""
    k = min(int(k), self.size)
    scores = np.zeros([len(queries), k], np.float32)
    rows = np.zeros([len(queries), k], np.int64)
    for i, query in enumerate(queries):
      s, r = top_k(self.scores(query)[None, :], k)
      scores[i], rows[i] = s[0], r[0]
    return scores, rows

  def close(self) -> None:
    """Drops the arrays; removes the index directory if it is a private temporary one."""
    self._data = self._low = None
    cleanup = getattr(self, "_cleanup", None)
    if cleanup is not None:
      cleanup()


def _meta(directory: str) -> dict:
  path = os.path.join(directory, META)
  if not os.path.exists(path):
    return {}
  with open(path, encoding="utf-8") as f:
    return json.load(f)
