"""Apache Beam pipeline: raw documents → the block corpus Z (sharded GZIP TFRecords + manifest).

    files ─ReadDocuments─▶ documents ─Reshuffle, BatchElements─▶ BlockDocuments (Blocker, wordpieces)
          ─key by doc-hash range─▶ GroupByKey per shard ─sort, drop duplicate ids─▶ shard files in a
          temp dir ─(after the pipeline) verify sha256, rename into place, write manifest last.

Runs on any Beam runner (in-process FnApiRunner here; Dataflow, Flink or Spark unchanged). A
distributed runner shuffles and groups on its workers. An in-process runner would hold every
element of a Reshuffle or GroupByKey in memory (~11 KB per block), so in process (`in_process`)
there is no Reshuffle and blocks are sorted on disk instead: sorted runs of at most
`SORT_BUFFER_BYTES` are spilled to the temp dir and each shard is a merge of its runs; memory
stays bounded whatever the corpus size, and the shards are the same bytes. The order of blocks
is total and deterministic — shards are ranges of sha256(doc_id), and inside a shard blocks are
sorted by (doc hash, doc id, block index) — so `read_blocks` (manifest order) and index rows agree
across runs, as do block ids (`corpus.block_id_for`). A killed run leaves its shards in a sibling
`<output_dir>.tmp-*` directory that no manifest points to; readers never see half-written shards.

Bad input (see documents.py) is counted with Beam Metrics counters (namespace `realm_tf.data`,
`bad_<kind>`), logged with file and line, written to `bad_records.jsonl` beside the manifest and
counted in the manifest; `strict=True` turns the first bad record into a `BadInputError`.
"""
import dataclasses
import hashlib
import heapq
import json
import os
import struct
import uuid
from typing import Dict, List, Optional, Sequence

from absl import logging
import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.transforms import window as beam_window
import tensorflow as tf

from realm_tf.config_base import ConfigBase
from realm_tf.data import corpus
from realm_tf.data import documents as documents_lib
from realm_tf.io import atomic
from realm_tf.io import paths
from realm_tf.io import publish as publish_lib
from realm_tf.text import packing

NAMESPACE = "realm_tf.data"
BAD_RECORDS = "bad_records.jsonl"
_STATS_SUFFIX = ".stats.json"
# In process: records held before a sorted run is spilled to disk (the build's memory bound).
SORT_BUFFER_BYTES = 128 << 20
_ITEM_OVERHEAD = 300  # bytes a buffered (shard, (sort key, record)) takes beside its record
# Read-ahead of each spilled run while a shard merges them all at once: a shard has one run per
# spill, so more runs the larger the corpus (TF's GFile would buffer 512 KB of each).
RUN_READ_BUFFER = 64 << 10
_RUNS_DIR = "sort-runs"


@dataclasses.dataclass
class BuildCorpusConfig(ConfigBase):
  """What `build_corpus` reads and writes.

  Attributes:
    inputs: file globs (any Beam filesystem: local, gs://, ...); `*.gz` is decompressed.
    output_dir: corpus directory (shards, manifest.json, bad_records.jsonl).
    fmt: "jsonl", "squad", "wikitext", "text", or "auto" (or None) to detect it per file.
    num_shards: output shards; on a distributed runner each shard's blocks are sorted in one
      worker's memory. Training restores its input at a data position by decompressing up to one
      shard, so shards of about a shuffle window's blocks (16384) keep that quick.
    strict: stop at the first bad record instead of counting and skipping it.
    max_document_bytes: documents of this many UTF-8 bytes or more are rejected.
    max_block_length: `[CLS] title [SEP] body [SEP]` wordpieces (288 in REALM).
    max_title_length: title wordpieces kept.
    batch_size: documents per tokenizer call.
    overwrite: replace an existing corpus in `output_dir`.
    vocab_path: wordpiece vocabulary (the shipped uncased BERT vocabulary when None).
  """
  inputs: Sequence[str]
  output_dir: str
  fmt: Optional[str] = "auto"
  num_shards: int = 4
  strict: bool = False
  max_document_bytes: int = documents_lib.MAX_DOCUMENT_BYTES
  max_block_length: int = packing.BLOCK_LENGTH
  max_title_length: int = 32
  batch_size: int = 64
  overwrite: bool = False
  vocab_path: Optional[str] = None


def doc_hash(doc_id: str) -> int:
  """Unsigned 64-bit hash of a document id: orders documents and picks their shard."""
  return int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big")


def shard_of(hash64: int, num_shards: int) -> int:
  """Range partition of the unsigned 64-bit hash space into `num_shards` shards."""
  return (hash64 * num_shards) >> 64


def report_bad(record: documents_lib.BadRecord, strict: bool):
  """Counts, logs and (strict) raises a bad record; returns it as a tagged 'bad' output."""
  Metrics.counter(NAMESPACE, "bad_records").inc()
  Metrics.counter(NAMESPACE, f"bad_{record.kind}").inc()
  logging.warning("Bad input: %s", record)
  if strict:
    raise documents_lib.BadInputError(record)
  return beam.pvalue.TaggedOutput("bad", record.to_json())


class ReadDocumentsFn(beam.DoFn):
  """ReadableFile → Documents (main output) and BadRecord JSON lines (output 'bad')."""

  def __init__(self, fmt: Optional[str], max_document_bytes: int, strict: bool):
    super().__init__()
    self._fmt, self._max_bytes, self._strict = fmt, max_document_bytes, strict

  def process(self, readable_file):
    path = readable_file.metadata.path
    with readable_file.open() as stream:
      for item in documents_lib.parse_stream(stream, path, self._fmt, self._max_bytes):
        if isinstance(item, documents_lib.BadRecord):
          yield report_bad(item, self._strict)
        else:
          Metrics.counter(NAMESPACE, "documents_read").inc()
          yield item


class BlockDocumentsFn(beam.DoFn):
  """Batches of Documents → (shard, (sort key, serialized block)); the tokenizer loads in setup()."""

  def __init__(self, num_shards: int, max_block_length: int, max_title_length: int,
               strict: bool, vocab_path: Optional[str] = None):
    super().__init__()
    self._num_shards, self._strict, self._vocab_path = num_shards, strict, vocab_path
    self._max_block_length, self._max_title_length = max_block_length, max_title_length
    self._blocker = None
    self._progress = None

  def setup(self):
    from realm_tf.data import blocking  # pylint: disable=g-import-not-at-top
    from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
    from realm_tf.utils.progress import ItemProgress  # pylint: disable=g-import-not-at-top
    self._blocker = blocking.Blocker(RealmTokenizer(self._vocab_path), self._max_block_length,
                                     self._max_title_length)
    # Documents are counted as they are read, so there is no total: count and rate, per worker.
    self._progress = ItemProgress(None, "build_corpus", "documents")

  def process(self, batch: List[documents_lib.Document]):
    batch = sorted(batch, key=lambda d: (d.doc_id, d.source, d.line))
    for doc, blocks in zip(batch, self._blocker.split_batch([(d.title, d.text) for d in batch])):
      if not blocks:
        yield report_bad(documents_lib.BadRecord(doc.source, doc.line, "empty_document",
                                                 f"document {doc.doc_id!r} has no wordpieces"),
                         self._strict)
        continue
      h = doc_hash(doc.doc_id)
      Metrics.counter(NAMESPACE, "documents").inc()
      for b in blocks:
        Metrics.counter(NAMESPACE, "blocks").inc()
        record = corpus.block_example(corpus.block_id_for(doc.doc_id, b.block_index), doc.doc_id,
                                      b.title, b.body, b.title_ids, b.body_ids)
        yield shard_of(h, self._num_shards), ((h, doc.doc_id, doc.source, doc.line,
                                               b.block_index), record)
    self._progress.add(len(batch))

  def teardown(self):
    if self._progress is not None and self._progress.done:
      self._progress.finish()


def _encode_key(key: tuple) -> bytes:
  """A sort key (a tuple of ints and strings) as bytes: each part tagged i/s, length-prefixed."""
  out = [struct.pack("<I", len(key))]
  for part in key:
    tag, data = (b"s", part.encode("utf-8")) if isinstance(part, str) else \
        (b"i", str(int(part)).encode("ascii"))
    out.append(tag + struct.pack("<I", len(data)) + data)
  return b"".join(out)


def _decode_key(blob: bytes) -> tuple:
  """The tuple `_encode_key` encoded."""
  (count,), at, parts = struct.unpack_from("<I", blob), 4, []
  for _ in range(count):
    tag, (size,) = blob[at:at + 1], struct.unpack_from("<I", blob, at + 1)
    data, at = blob[at + 5:at + 5 + size], at + 5 + size
    parts.append(data.decode("utf-8") if tag == b"s" else int(data))
  return tuple(parts)


def _write_run(path: str, items) -> None:
  """Writes sorted (sort key, serialized record) items as length-prefixed key and record bytes
  (a spilled sort run; no pickle: a run file is data, never code)."""
  with tf.io.gfile.GFile(path, "wb") as f:
    for key, record in items:
      key_blob = _encode_key(key)
      f.write(struct.pack("<QQ", len(key_blob), len(record)) + key_blob + record)


def _read_run(path: str):
  """The items of a run `_write_run` wrote, in order, one at a time (a local run is read with
  `RUN_READ_BUFFER` bytes of read-ahead, a remote one through GFile)."""
  with (tf.io.gfile.GFile(path, "rb") if paths.is_remote(path)
        else open(path, "rb", buffering=RUN_READ_BUFFER)) as f:
    while True:
      header = f.read(16)
      if not header:
        return
      key_size, record_size = struct.unpack("<QQ", header)
      yield _decode_key(f.read(key_size)), f.read(record_size)


class _SpillRunsFn(beam.DoFn):
  """(shard, (sort key, record)) → sorted run files, emitted as (shard, run path).

  Holds at most `buffer_bytes` of records: then (and at the end of a bundle) each shard's buffered
  items are sorted and written as one run under `run_dir`.
  """

  def __init__(self, run_dir: str, buffer_bytes: int):
    super().__init__()
    self._run_dir, self._buffer_bytes = run_dir, buffer_bytes
    self._buffers, self._bytes = {}, 0

  def start_bundle(self):
    self._buffers, self._bytes = {}, 0

  def process(self, element):
    shard, item = element
    self._buffers.setdefault(shard, []).append(item)
    self._bytes += len(item[1]) + _ITEM_OVERHEAD
    if self._bytes >= self._buffer_bytes:
      yield from self._spill()

  def finish_bundle(self):
    for run in self._spill():
      yield beam_window.GlobalWindows.windowed_value(run)

  def _spill(self):
    buffers, self._buffers, self._bytes = self._buffers, {}, 0
    for shard in sorted(buffers):
      items = buffers.pop(shard)
      items.sort()
      path = os.path.join(self._run_dir, f"run-{shard:05d}-{uuid.uuid4().hex}")
      _write_run(path, items)
      del items
      Metrics.counter(NAMESPACE, "sort_runs").inc()
      yield shard, path


class _WriteShardFn(beam.DoFn):
  """(shard, [(sort key, record)] or [run paths]) → one sorted shard file in the temp dir + its
  stats sidecar. Spilled runs are merged (and removed), grouped items sorted in memory.

  With `dedupe_docs`, sort keys are (hash, doc_id, source, line, ...): when two sources share a
  doc id, the first source (by file, line) is kept and the others are reported.
  """

  def __init__(self, temp_dir: str, pattern: str, num_shards: int, dedupe_docs: bool,
               strict: bool, stats_fn=None, spilled: bool = False):
    super().__init__()
    self._temp_dir, self._pattern, self._num_shards = temp_dir, pattern, num_shards
    self._dedupe, self._strict, self._stats_fn = dedupe_docs, strict, stats_fn
    self._spilled = spilled

  def process(self, element):
    shard, values = element
    values = [v for v in values if v is not None]
    if self._spilled:
      items = heapq.merge(*[_read_run(run) for run in sorted(values)])
    else:
      items = sorted(values)
    bad, extra = [], {"num_documents": 0}
    path = os.path.join(self._temp_dir, self._pattern.format(shard, self._num_shards))
    stats = corpus.write_shard(path, self._kept(items, bad, extra))
    stats.update(extra)
    atomic.write_json(path + _STATS_SUFFIX, stats)
    for run in values if self._spilled else ():
      tf.io.gfile.remove(run)
    logging.info("Wrote %s: %d records.", path, stats["num_blocks"])
    yield from bad
    yield stats

  def _kept(self, items, bad: List, stats: Dict):
    """The records of sorted `items` that are kept, counting documents and `stats_fn` into
    `stats` and reporting duplicate document ids into `bad` as they pass."""
    # Sorted by (hash, doc_id, ...): a doc id's items are adjacent, its first source first.
    doc_id, first = None, None
    for key, record in items:
      if self._dedupe:
        if key[1] != doc_id:
          doc_id, first = key[1], (key[2], key[3])
        source = (key[2], key[3])
        if first != source:
          if key[-1] == 0:
            bad.append(report_bad(documents_lib.BadRecord(
                source[0], source[1], "duplicate_doc_id",
                f"document id {doc_id!r} already used at {first[0]}:{first[1]}; skipped"),
                self._strict))
          continue
        stats["num_documents"] += key[-1] == 0
      if self._stats_fn is not None:
        for k, v in self._stats_fn(record).items():
          stats[k] = stats.get(k, 0) + v
      yield record


class WriteSortedShards(beam.PTransform):
  """(shard, (sort key, serialized record)) → `num_shards` sorted GZIP shards in `temp_dir`.

  Every shard index gets a file, even an empty one. Main output: per-shard stats dicts; output
  'bad': BadRecord JSON lines (duplicate document ids). `stats_fn(record) -> {name: count}` adds
  per-shard totals to the stats. `spill` (in process: `in_process`) sorts on disk in runs of at
  most `buffer_bytes` instead of grouping every record of a shard through the runner.
  """

  def __init__(self, temp_dir: str, pattern: str, num_shards: int, dedupe_docs: bool = False,
               strict: bool = False, stats_fn=None, spill: bool = False,
               buffer_bytes: int = SORT_BUFFER_BYTES):
    super().__init__()
    self._args = (temp_dir, pattern, num_shards, dedupe_docs, strict, stats_fn, spill)
    self._buffer_bytes = buffer_bytes

  def expand(self, keyed):
    temp_dir, num_shards, spill = self._args[0], self._args[2], self._args[-1]
    if spill:
      run_dir = os.path.join(temp_dir, _RUNS_DIR)
      tf.io.gfile.makedirs(run_dir)
      keyed = keyed | "SpillRuns" >> beam.ParDo(_SpillRunsFn(run_dir, self._buffer_bytes))
    markers = keyed.pipeline | "ShardMarkers" >> beam.Create([(k, None)
                                                              for k in range(num_shards)])
    return ((keyed, markers) | "WithMarkers" >> beam.Flatten()
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard" >> beam.ParDo(_WriteShardFn(*self._args)).with_outputs(
                "bad", main="stats"))


class _WriteLinesFn(beam.DoFn):
  """A list of text lines → one sorted file (written via temp + rename)."""

  def __init__(self, path: str):
    super().__init__()
    self._path = path

  def process(self, lines):
    # No lines still writes the (empty) file.
    atomic.write_text(self._path, "".join(line + "\n" for line in sorted(lines)))
    yield len(lines)


def write_bad_records(bad_pcolls: Sequence, temp_dir: str):
  """Flattens BadRecord JSON lines and writes them, sorted, to `<temp_dir>/bad_records.jsonl`."""
  return (tuple(bad_pcolls) | "FlattenBad" >> beam.Flatten()
          | "CollectBad" >> beam.combiners.ToList()
          | "WriteBad" >> beam.ParDo(_WriteLinesFn(os.path.join(temp_dir, BAD_RECORDS))))


def read_document_files(p, inputs: Sequence[str], fmt: Optional[str], max_document_bytes: int,
                        strict: bool):
  """Pipeline fragment: file globs → (documents, bad JSON lines)."""
  out = (p | "Patterns" >> beam.Create(list(inputs))
         | "Match" >> fileio.MatchAll()
         | "Open" >> fileio.ReadMatches()
         | "ReadDocuments" >> beam.ParDo(ReadDocumentsFn(fmt, max_document_bytes, strict))
         .with_outputs("bad", main="docs"))
  return out.docs, out.bad


def expand_inputs(inputs: Sequence[str]) -> List[str]:
  """The files matching `inputs` (globs, any Beam filesystem); raises naming a glob with none."""
  files = []
  for pattern in inputs:
    matched = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    if not matched:
      raise FileNotFoundError(f"No input file matches {pattern!r}.")
    files.extend(sorted(matched))
  return files


def temp_dir_for(output_dir: str) -> str:
  """A fresh sibling directory of `output_dir` for in-progress shards, created with its owner.

  Named `<output_dir>.tmp-<id>`, as docs/CORPUS.md describes; `publish` moves its files into
  `output_dir` one by one rather than renaming the directory (see there why). The siblings a
  killed run of this host left behind are removed first (`publish.remove_orphaned_temps`).
  """
  base = output_dir.rstrip("/")
  publish_lib.remove_orphaned_temps(f"{base}.tmp-*")
  return publish_lib.claim_temp_dir(f"{base}.tmp-{uuid.uuid4().hex[:12]}")


def check_output_dir(output_dir: str, manifest_name: str, overwrite: bool):
  """Refuses to replace an existing corpus/annotation set unless `overwrite`."""
  path = os.path.join(output_dir, manifest_name)
  if tf.io.gfile.exists(path) and not overwrite:
    raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it.")


def metric_counters(result) -> Dict[str, int]:
  """Beam Metrics counters of namespace `realm_tf.data` from a finished PipelineResult."""
  out = {}
  try:
    counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
  except (NotImplementedError, AttributeError, KeyError):
    return out
  for c in counters:
    value = c.committed if c.committed is not None else c.attempted
    out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(value or 0)
  return out


def read_bad_records(path: str) -> List[Dict]:
  """The bad-record report (JSON lines) as dicts; [] when there is none."""
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path, "r") as f:
    return [json.loads(line) for line in f if line.strip()]


def publish(temp_dir: str, output_dir: str, pattern: str, num_shards: int, manifest_name: str,
            write_manifest) -> Dict:
  """Verifies the shards in `temp_dir`, moves them into `output_dir` and writes the manifest last.

  `write_manifest(shards)` gets [{"file", "num_records"/"num_blocks", "sha256", ...}] in shard
  order and writes the manifest into `output_dir`. An existing manifest there is removed first,
  so a reader sees either the old corpus, no corpus, or the new one — never a mix
  (`publish_lib.publish_files`: corpora usually live on object stores, where a directory rename
  is not atomic, so the manifest is the commit marker on every filesystem).
  """
  shards = []
  for k in range(num_shards):
    name = pattern.format(k, num_shards)
    path = os.path.join(temp_dir, name)
    stats_path = path + _STATS_SUFFIX
    if not tf.io.gfile.exists(path) or not tf.io.gfile.exists(stats_path):
      raise corpus.CorpusError(f"Shard {path} was not written; the pipeline did not finish.")
    with tf.io.gfile.GFile(stats_path, "r") as f:
      stats = json.load(f)
    if corpus.file_sha256(path) != stats["sha256"]:
      raise corpus.CorpusError(f"Shard {path} does not match the sha256 its writer recorded.")
    shards.append(stats)
  files = [s["file"] for s in shards]
  if tf.io.gfile.exists(os.path.join(temp_dir, BAD_RECORDS)):
    files.append(BAD_RECORDS)
  return publish_lib.publish_files(temp_dir, output_dir, files, manifest_name,
                                   lambda: write_manifest(shards))


# Beam's in-process portable runner. Beam 2.77's DirectRunner first tries its Prism runner, which
# downloads a binary from GitHub at run time (and fails offline before falling back to this one).
DEFAULT_RUNNER = "FnApiRunner"


# Runners that run the pipeline on this machine and keep PCollections in its memory.
IN_PROCESS_RUNNERS = frozenset({"FnApiRunner", "DirectRunner", "SwitchingDirectRunner",
                                "BundleBasedDirectRunner", "PrismRunner", "InteractiveRunner"})


def in_process(beam_args: Optional[Sequence[str]]) -> bool:
  """Whether `beam_args` (no --runner: `DEFAULT_RUNNER`) run the pipeline in this process's
  memory: such a runner holds every element a Reshuffle or GroupByKey sees, so the pipelines
  skip Reshuffles and sort on disk there (`WriteSortedShards(spill=True)`)."""
  runner = PipelineOptions(list(beam_args or [])).view_as(StandardOptions).runner
  return str(runner or DEFAULT_RUNNER).rsplit(".", 1)[-1] in IN_PROCESS_RUNNERS


def reshuffle(pcoll, name: str, local: bool):
  """`pcoll` spread over the workers (a Reshuffle), or unchanged when the runner is `local`."""
  return pcoll if local else pcoll | name >> beam.Reshuffle()


def run_pipeline(build, beam_args: Optional[Sequence[str]], temp_dir: str):
  """Runs `build(pipeline)` with Beam options from `beam_args`; removes `temp_dir` on failure.

  Without `--runner` the pipeline runs in-process (`DEFAULT_RUNNER`), never downloading anything.
  """
  beam_args = list(beam_args or [])
  if not any(a.startswith("--runner") for a in beam_args):
    beam_args.insert(0, f"--runner={DEFAULT_RUNNER}")
  options = PipelineOptions(beam_args)
  try:
    p = beam.Pipeline(options=options)
    build(p)
    result = p.run()
    result.wait_until_finish()
    return result
  except BaseException:
    publish_lib.release_temp_dir(temp_dir)
    raise


def build_corpus(config: BuildCorpusConfig, beam_args: Optional[Sequence[str]] = None) -> Dict:
  """Builds the block corpus; returns {"manifest", "counters", "bad_records"}.

  `beam_args` are Beam pipeline options (`--runner=DataflowRunner --project=...`); the default
  runner is Beam's in-process FnApiRunner.
  """
  from realm_tf.text import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  if config.num_shards < 1:
    raise ValueError(f"num_shards must be >= 1, got {config.num_shards}.")
  files = expand_inputs(config.inputs)
  check_output_dir(config.output_dir, corpus.MANIFEST, config.overwrite)
  temp_dir = temp_dir_for(config.output_dir)

  local = in_process(beam_args)

  def build(p):
    docs, bad_read = read_document_files(p, files, config.fmt, config.max_document_bytes,
                                         config.strict)
    blocked = (reshuffle(docs, "Reshuffle", local)
               | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=config.batch_size)
               | "Block" >> beam.ParDo(BlockDocumentsFn(
                   config.num_shards, config.max_block_length, config.max_title_length,
                   config.strict, config.vocab_path)).with_outputs("bad", main="blocks"))
    written = blocked.blocks | "WriteShards" >> WriteSortedShards(
        temp_dir, corpus.SHARD_PATTERN, config.num_shards, dedupe_docs=True,
        strict=config.strict, spill=local)
    write_bad_records([bad_read, blocked.bad, written.bad], temp_dir)

  result = run_pipeline(build, beam_args, temp_dir)
  bad_records = read_bad_records(os.path.join(temp_dir, BAD_RECORDS))
  bad_counts = {}
  for r in bad_records:
    bad_counts[r["kind"]] = bad_counts.get(r["kind"], 0) + 1

  def write_manifest(shards):
    num_docs = sum(s.pop("num_documents") for s in shards)
    return corpus.write_manifest(
        config.output_dir, shards, tokenizer_lib.vocab_fingerprint(config.vocab_path),
        config.max_block_length,
        extra={"num_documents": num_docs, "bad_records": bad_counts,
               "inputs": list(config.inputs), "format": config.fmt or "auto",
               "max_title_length": config.max_title_length,
               "max_document_bytes": config.max_document_bytes,
               "builder": "realm_tf.data.corpus_pipeline"})

  manifest = publish(temp_dir, config.output_dir, corpus.SHARD_PATTERN, config.num_shards,
                     corpus.MANIFEST, write_manifest)
  return {"manifest": manifest, "counters": metric_counters(result), "bad_records": bad_records}
