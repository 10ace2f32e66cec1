"""The block corpus Z on disk: GZIP TFRecord shards of blocks plus a manifest.

A block is at most 288 wordpieces once packed as `[CLS] title [SEP] body [SEP]`. Each record
holds `block_id` (int64, deterministic across runs), `doc_id`, `title`, `body` (UTF-8 bytes) and
the `title_ids` / `body_ids` wordpieces. `manifest.json` lists the shards with their block counts
and sha256, the vocabulary fingerprint and a corpus fingerprint that index bundles record, so a
bundle built from another corpus is detected.
"""
import hashlib
import json
import os
import time
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf

from realm_tf.io import atomic
from realm_tf.text import packing

MANIFEST = "manifest.json"
SHARD_PATTERN = "blocks-{:05d}-of-{:05d}.tfrecord.gz"
COMPRESSION = "GZIP"

BLOCK_FEATURES = {
    "block_id": tf.io.FixedLenFeature([], tf.int64),
    "doc_id": tf.io.FixedLenFeature([], tf.string),
    "title": tf.io.FixedLenFeature([], tf.string),
    "body": tf.io.FixedLenFeature([], tf.string),
    "title_ids": tf.io.RaggedFeature(tf.int64),
    "body_ids": tf.io.RaggedFeature(tf.int64),
}


class CorpusError(ValueError):
  """A corpus directory, manifest or shard is missing or inconsistent."""


def block_id_for(doc_id: str, block_index: int) -> int:
  """Deterministic non-negative int64 id of the `block_index`-th block of document `doc_id`."""
  digest = hashlib.sha256(f"{doc_id}\x00{block_index}".encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") & 0x7FFFFFFFFFFFFFFF


def block_example(block_id: int, doc_id: str, title: str, body: str,
                  title_ids: Iterable[int], body_ids: Iterable[int]) -> bytes:
  """Serialises one block record as a tf.train.Example."""
  def _bytes(v):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode("utf-8")]))

  def _ints(v):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(v)))

  return tf.train.Example(features=tf.train.Features(feature={
      "block_id": _ints([block_id]), "doc_id": _bytes(doc_id), "title": _bytes(title),
      "body": _bytes(body), "title_ids": _ints(title_ids), "body_ids": _ints(body_ids),
  })).SerializeToString(deterministic=True)


def file_sha256(path: str) -> str:
  """sha256 of a file's bytes (any tf.io.gfile path)."""
  h = hashlib.sha256()
  with tf.io.gfile.GFile(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def write_manifest(corpus_dir: str, shards: List[Dict], vocab_fingerprint: str,
                   max_block_length: int = packing.BLOCK_LENGTH, extra: Optional[Dict] = None) -> Dict:
  """Writes manifest.json atomically. `shards`: [{"file", "num_blocks", "sha256"}], in order."""
  manifest = {
      "num_blocks": int(sum(s["num_blocks"] for s in shards)),
      "shards": shards,
      "vocab_fingerprint": vocab_fingerprint,
      "max_block_length": max_block_length,
      "created": time.time(),
  }
  manifest.update(extra or {})
  manifest["fingerprint"] = corpus_fingerprint(manifest)
  atomic.write_json(os.path.join(corpus_dir, MANIFEST), manifest)
  return manifest


def corpus_fingerprint(manifest: Dict) -> str:
  """Identity of a corpus: its shard hashes and vocabulary, not its creation time."""
  key = json.dumps({"shards": [(s["file"], s["sha256"]) for s in manifest["shards"]],
                    "vocab": manifest["vocab_fingerprint"]}, sort_keys=True)
  return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def _load_sharded_manifest(directory: str, name: str, what: str, required, hint: str) -> Dict:
  """Reads `<directory>/<name>`, checks `required` fields and that every listed shard exists."""
  path = os.path.join(directory, name)
  if not tf.io.gfile.exists(path):
    raise CorpusError(f"No {what} manifest at {path}: {hint}.")
  try:
    with tf.io.gfile.GFile(path, "r") as f:
      manifest = json.load(f)
  except json.JSONDecodeError as e:
    raise CorpusError(f"{what.capitalize()} manifest {path} is not valid JSON: {e}") from e
  for key in required:
    if key not in manifest:
      raise CorpusError(f"{what.capitalize()} manifest {path} lacks the field {key!r}.")
  for shard in manifest["shards"]:
    if not tf.io.gfile.exists(os.path.join(directory, shard["file"])):
      raise CorpusError(f"{what.capitalize()} shard {shard['file']} listed in {path} is missing.")
  return manifest


def load_manifest(corpus_dir: str) -> Dict:
  """Reads and checks `<corpus_dir>/manifest.json`; raises CorpusError naming what is wrong."""
  return _load_sharded_manifest(corpus_dir, MANIFEST, "corpus",
                                ("num_blocks", "shards", "vocab_fingerprint"),
                                "build the corpus first (python -m realm_tf.launch.build_corpus)")


def shard_paths(corpus_dir: str, manifest: Optional[Dict] = None) -> List[str]:
  """Shard paths in manifest order (the order of index rows)."""
  manifest = manifest or load_manifest(corpus_dir)
  return [os.path.join(corpus_dir, s["file"]) for s in manifest["shards"]]


def verify_shards(corpus_dir: str, manifest: Optional[Dict] = None) -> None:
  """Checks every shard's sha256 against the manifest; raises CorpusError naming a corrupt shard."""
  manifest = manifest or load_manifest(corpus_dir)
  for shard in manifest["shards"]:
    path = os.path.join(corpus_dir, shard["file"])
    if file_sha256(path) != shard["sha256"]:
      raise CorpusError(f"Corpus shard {path} does not match the sha256 in its manifest "
                        "(corrupt or replaced).")


def parse_block(serialized):
  """Parses one serialized block record (title_ids / body_ids as int32 ragged)."""
  ex = tf.io.parse_single_example(serialized, BLOCK_FEATURES)
  ex["title_ids"] = tf.cast(ex["title_ids"], tf.int32)
  ex["body_ids"] = tf.cast(ex["body_ids"], tf.int32)
  return ex


def read_blocks(corpus_dir: str, paths: Optional[List[str]] = None) -> tf.data.Dataset:
  """All blocks of the corpus (or of `paths`), in manifest order, as a tf.data.Dataset of dicts."""
  paths = paths if paths is not None else shard_paths(corpus_dir)
  ds = tf.data.TFRecordDataset(paths, compression_type=COMPRESSION)
  return ds.map(parse_block, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def write_shard(path: str, records: Iterable[bytes]) -> Dict:
  """Writes serialized records to a GZIP shard via a temp file + rename; returns its manifest entry."""
  n = 0
  with atomic.atomic_path(path) as tmp, tf.io.TFRecordWriter(tmp, options=COMPRESSION) as w:
    for r in records:
      w.write(r)
      n += 1
  return {"file": os.path.basename(path), "num_blocks": n, "sha256": file_sha256(path)}


# ---------------------------------------------------------------------------------------------
# Annotated text (salient spans): the records written by realm_tf.data.annotate. They live here,
# beside the block format, so that tf.data consumers (masking) need neither Beam nor spaCy.

ANNOTATION_MANIFEST = "manifest.json"
ANNOTATION_SHARD_PATTERN = "annotations-{:05d}-of-{:05d}.tfrecord.gz"

ANNOTATION_FEATURES = {
    "title": tf.io.FixedLenFeature([], tf.string),
    "text": tf.io.FixedLenFeature([], tf.string),
    "sentence_starts": tf.io.RaggedFeature(tf.int64),
    "sentence_limits": tf.io.RaggedFeature(tf.int64),
    "span_starts": tf.io.RaggedFeature(tf.int64),
    "span_limits": tf.io.RaggedFeature(tf.int64),
    "span_types": tf.io.RaggedFeature(tf.string),
    "block_id": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
}


def annotation_example(title: str, text: str, sentences, spans, span_types,
                       block_id: int = -1) -> bytes:
  """Serialises one annotated text: `sentences`/`spans` are (start, limit) UTF-8 byte offsets."""
  def _ints(v):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(x) for x in v]))

  def _bytes(v):
    return tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[x.encode("utf-8") if isinstance(x, str) else x for x in v]))

  return tf.train.Example(features=tf.train.Features(feature={
      "title": _bytes([title]), "text": _bytes([text]),
      "sentence_starts": _ints([s for s, _ in sentences]),
      "sentence_limits": _ints([e for _, e in sentences]),
      "span_starts": _ints([s for s, _ in spans]),
      "span_limits": _ints([e for _, e in spans]),
      "span_types": _bytes(span_types), "block_id": _ints([block_id]),
  })).SerializeToString(deterministic=True)


def parse_annotation(serialized):
  """Parses one serialized annotation record (lists as 1-D tensors)."""
  return tf.io.parse_single_example(serialized, ANNOTATION_FEATURES)


def load_annotation_manifest(annotation_dir: str) -> Dict:
  """Reads `<annotation_dir>/manifest.json`; raises CorpusError naming what is wrong."""
  return _load_sharded_manifest(annotation_dir, ANNOTATION_MANIFEST, "annotation",
                                ("num_records", "shards"),
                                "annotate first (python -m realm_tf.launch.annotate_corpus)")


def read_annotations(annotation_dir: str, paths: Optional[List[str]] = None) -> tf.data.Dataset:
  """All annotation records (manifest order) as a tf.data.Dataset of dicts (ANNOTATION_FEATURES)."""
  if paths is None:
    manifest = load_annotation_manifest(annotation_dir)
    paths = [os.path.join(annotation_dir, s["file"]) for s in manifest["shards"]]
  ds = tf.data.TFRecordDataset(paths, compression_type=COMPRESSION)
  return ds.map(parse_annotation, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def numbered_examples(records: tf.data.Dataset, build, start_index: Optional[int] = 0,
                      keep_index: bool = False,
                      num_parallel_calls: Optional[int] = tf.data.AUTOTUNE,
                      deterministic: bool = True, keep=None) -> tf.data.Dataset:
  """`build(index, record)` over `records` numbered from `start_index`, invalid results dropped.

  The index is the record's raw position in its (repeated, skipped) stream: the masking and ICT
  examples are stateless functions of it, and it is what a checkpoint stores to resume exactly.
  `start_index=None`: `records` already are `(position, record)` pairs (`positioned_stream`, whose
  shards skip other input pipelines' positions).
  `build` returns a dict with a boolean `valid`; `keep_index` adds `index` to each example.
  `keep(record)` (a boolean tensor) drops records without changing anyone's position (e.g. the
  held-out blocks).
  """
  def _build(index, record):
    example = dict(build(index, record))
    if keep is not None:
      example["valid"] = tf.logical_and(example["valid"], keep(record))
    if keep_index:
      example["index"] = index
    return example

  ds = records if start_index is None else records.enumerate(start=start_index)
  if num_parallel_calls is None:
    ds = ds.map(_build)
  else:
    ds = ds.map(_build, num_parallel_calls=num_parallel_calls, deterministic=deterministic)
  ds = ds.filter(lambda ex: ex["valid"])
  return ds.map(lambda ex: {k: v for k, v in ex.items() if k != "valid"})


def shuffled_stream(paths: Sequence[str], counts: Sequence[int], seed: int, window: int,
                    start_position: int = 0,
                    compression: str = COMPRESSION) -> tf.data.Dataset:
  """The records of the shard files `paths` (`counts[i]` records in `paths[i]`, as the manifest
  says) repeated forever in a seeded order that resumes exactly at `start_position`.

  Each run of `window` consecutive records of the repeated stream is permuted by a permutation
  keyed by (seed, window number), so element j of the output depends only on j: a trainer that
  stores how many elements it consumed restarts on the same stream. Shuffling matters because
  corpora come in article order: unshuffled, an ICT batch's in-batch negatives are blocks of
  the same article, and a REALM batch holds sentences of one passage. The window holds
  serialized records (scalar strings), not parsed tensors.

  Element j of the repeated stream is record j mod N, so resuming (and every index switch, which
  rebuilds the stream) opens the shard holding the first record of the resumed window and skips
  inside that shard only: the work is at most one shard and one window, whatever the position.
  GZIP shards cannot seek, so that skip decompresses up to one shard: shards of about a window's
  records (build_corpus's num_shards >= N / window) make a late restore as quick as a first start.
  """
  return positioned_stream(paths, counts, seed, window, start_position,
                           compression=compression).map(lambda _, record: record)


class StreamOrigin(NamedTuple):
  """Where `positioned_stream` opens the records to resume at a position.

  `first_window`: the number of the window the position falls in (for a sharded pipeline, its
  own next window); `first_record`: that window's first record (its stream element mod N);
  `shard`: the shard file holding that record, the first file the stream opens; `skip_in_shard`:
  the records of that shard before it, decompressed and dropped (GZIP cannot seek). No record of
  an earlier shard is read unless the window itself wraps round past the end of the records.
  """
  first_window: int
  first_record: int
  shard: int
  skip_in_shard: int
  num_records: int


def stream_origin(counts: Sequence[int], window: int, start_position: int = 0,
                  num_shards: int = 1, shard_index: int = 0) -> StreamOrigin:
  """The `StreamOrigin` of the stream over shards of `counts` records resumed at
  `start_position` (see `positioned_stream`); a function of the manifest's counts alone, so
  readers that must not touch earlier shards (e.g. a check for a record to train on) can start
  where the stream does."""
  if window < 1:
    raise ValueError(f"window must be >= 1, got {window}.")
  if num_shards < 1 or not 0 <= shard_index < num_shards:
    raise ValueError(f"Need 0 <= shard_index < num_shards; got {shard_index}, {num_shards}.")
  offsets = np.concatenate([[0], np.cumsum(np.asarray(counts, np.int64))])
  total = int(offsets[-1])
  first = start_position // window
  first += (shard_index - first) % num_shards  # this shard's first window at or after it
  start = (first * window) % total if total else 0
  # The last shard that starts at or before `start` (empty shards start where the next one does).
  shard = min(int(np.searchsorted(offsets, start, side="right")) - 1, len(counts) - 1)
  return StreamOrigin(first, start, shard, start - int(offsets[shard]), total)


def positioned_stream(paths: Sequence[str], counts: Sequence[int], seed: int, window: int,
                      start_position: int = 0, num_shards: int = 1, shard_index: int = 0,
                      compression: str = COMPRESSION) -> tf.data.Dataset:
  """`shuffled_stream` as `(position, record)` pairs, optionally one input pipeline's share.

  With `num_shards` > 1 (several hosts, each with its own input pipeline), shard `shard_index`
  reads the windows whose number is `shard_index` mod `num_shards`: the shards are disjoint and
  together are the whole stream, element for element, each element keeping its position in it.
  `start_position` is then this shard's own position (one past the last element it consumed;
  0 at the start), so each pipeline resumes from its own, in the same O(1) as the whole stream.
  Every shard still decompresses every record (GZIP cannot seek) but parses, masks and embeds
  only its own.
  """
  if len(paths) != len(counts):
    raise ValueError(f"{len(paths)} shard paths but {len(counts)} record counts.")
  origin = stream_origin(counts, window, start_position, num_shards, shard_index)
  if origin.num_records < 1:
    raise ValueError(f"No record to stream in {list(paths)}.")
  first, shard = origin.first_window, origin.shard
  head = tf.data.TFRecordDataset(list(paths[shard:]), compression_type=compression)
  ds = head.skip(origin.skip_in_shard).concatenate(
      tf.data.TFRecordDataset(list(paths), compression_type=compression).repeat())

  def permute(number, batch):
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(number, tf.int64)])
    order = tf.argsort(tf.random.stateless_uniform(tf.shape(batch)[:1], seed=key))
    positions = tf.cast(number, tf.int64) * window + tf.range(window, dtype=tf.int64)
    return positions, tf.gather(batch, order)

  ds = ds.batch(window, drop_remainder=True).enumerate(start=first)
  if num_shards > 1:
    ds = ds.filter(lambda number, _: tf.equal(number % num_shards, shard_index))
  ds = ds.map(permute).unbatch()
  return ds.skip(max(0, start_position - first * window))


def is_heldout(block_id, fraction: float):
  """Whether a block is held out of training (as ICT query, MLM text or REALM query).

  Block ids are hashes, so `block_id mod 10000 < fraction * 10000` picks a fixed, uniform subset
  that every stage agrees on; held-out blocks stay in the index as documents.
  """
  return _bucket(block_id) < _cut(fraction)


# Which training blocks a stage reads its queries (or MLM text) from; see `in_query_split`.
QUERY_ROLES = ("any", "realm", "warmup")


def in_query_split(bucket, heldout_fraction: float, realm_query_fraction: float = 0.0,
                   role: str = "any"):
  """Whether a training stage in `role` reads queries from blocks of this hash `bucket`
  (`block_id mod 10000`, or `record_bucket`).

  Held-out blocks (`is_heldout`) are never read. With `realm_query_fraction` > 0, the next
  share of buckets holds REALM's queries alone ("realm") and the reader warm-up reads only the
  rest ("warmup"), so REALM never trains on a masked sentence the warm-up has already answered:
  a reader that has seen a sentence's answer predicts it without reading, and REALM's gradient
  on such queries teaches it to ignore its documents. "any" (ICT) reads every training block.
  """
  if role not in QUERY_ROLES:
    raise ValueError(f"Unknown query role {role!r}; expected one of {QUERY_ROLES}.")
  if realm_query_fraction > 0 and heldout_fraction + realm_query_fraction >= 1.0:
    raise ValueError(f"Held-out fraction {heldout_fraction} + REALM query fraction "
                     f"{realm_query_fraction} leave the reader warm-up no block.")
  lo, hi = _cut(heldout_fraction), 10000
  if realm_query_fraction > 0 and role == "realm":
    hi = lo + _cut(realm_query_fraction)
  elif realm_query_fraction > 0 and role == "warmup":
    lo += _cut(realm_query_fraction)
  return tf.logical_and(bucket >= lo, bucket < hi)


def _cut(fraction: float) -> int:
  return int(round(fraction * 10000))


def _bucket(block_id):
  return tf.math.floormod(tf.cast(block_id, tf.int64), 10000)


def training_blocks(corpus_dir: str, seed: int, shuffle_window: int, start_position: int,
                    heldout_fraction: float, realm_query_fraction: float = 0.0,
                    role: str = "any", num_shards: int = 1, shard_index: int = 0):
  """The block stream a training stage reads (ICT, reader warm-up): `(position, parsed block)`
  pairs of `corpus_dir` in the seeded, repeated order of `positioned_stream` from
  `start_position` on (shard `shard_index` of `num_shards`), and the `keep` predicate that leaves
  out held-out blocks and those of other roles (`in_query_split`; None when every block is
  kept). The shards are checked against their manifest's sha256 first: a truncated GZIP shard
  reads as fewer records without an error, and training must not go on over what is left."""
  manifest = load_manifest(corpus_dir)
  verify_shards(corpus_dir, manifest)
  window = max(1, min(shuffle_window, int(manifest["num_blocks"])))
  blocks = positioned_stream(
      shard_paths(corpus_dir, manifest), [s["num_blocks"] for s in manifest["shards"]], seed,
      window, start_position, num_shards, shard_index).map(
          lambda position, record: (position, parse_block(record)),
          num_parallel_calls=tf.data.AUTOTUNE)
  keep = None
  if heldout_fraction > 0 or (realm_query_fraction > 0 and role != "any"):
    keep = lambda b: in_query_split(_bucket(b["block_id"]), heldout_fraction,
                                    realm_query_fraction, role)
  return blocks, keep


def batch_with_data_position(examples: tf.data.Dataset, batch_size: int,
                             drop: Iterable[str] = ()) -> tf.data.Dataset:
  """Batches a training stream whose examples carry their stream `index`; each batch gets
  `data_position` (one past its last example) in place of `index`, which the trainer checkpoints
  for exact resume. Keys in `drop` are removed."""
  drop = tuple(drop)

  def _finish(batch):
    batch = dict(batch)
    batch["data_position"] = tf.fill([batch_size], tf.reduce_max(batch.pop("index")) + 1)
    for key in drop:
      batch.pop(key)
    return batch

  return examples.batch(batch_size, drop_remainder=True).map(_finish).prefetch(tf.data.AUTOTUNE)


def record_bucket(record):
  """An annotation record's hash bucket (`in_query_split`): by its block id, or for passages of a
  separate pre-training corpus X (block id -1) by a hash of their text."""
  by_text = tf.strings.to_hash_bucket_fast(record["text"], 10000)
  return tf.where(record["block_id"] >= 0, _bucket(record["block_id"]), by_text)


def record_is_heldout(record, fraction: float):
  """`is_heldout` for an annotation record (by `record_bucket`)."""
  return record_bucket(record) < _cut(fraction)


def record_paths(directory: str, manifest: Dict) -> List[str]:
  """Shard paths of a corpus or annotation manifest, in manifest order."""
  return [os.path.join(directory, s["file"]) for s in manifest["shards"]]


def doc_blocks(corpus_dir: str, doc_ids: Iterable[str]) -> Dict[str, set]:
  """doc_id → set of its block ids for the documents `doc_ids` (those the corpus lacks map to
  nothing), in one streaming pass over the corpus shards: only the wanted documents are held."""
  wanted = np.array(sorted({d.encode("utf-8") for d in doc_ids if d}), dtype=object)
  out: Dict[str, set] = {}
  if not len(wanted):
    return out
  for b in read_blocks(corpus_dir).ragged_batch(4096):
    docs, ids = b["doc_id"].numpy(), b["block_id"].numpy()
    for row in np.flatnonzero(np.isin(docs, wanted)):
      out.setdefault(docs[row].decode("utf-8"), set()).add(int(ids[row]))
  return out
