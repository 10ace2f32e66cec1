"""Tests of the Beam block-corpus pipeline (in-process runner) and its bad-input handling."""
import json
import logging
import os
import pickle
import pickletools
import random
import re
import struct
import types
import typing
from unittest import mock

import apache_beam as beam
import pytest

from realm_tf.io import memory
from realm_tf.data import corpus_pipeline
from realm_tf.data import corpus
from realm_tf.text import RealmTokenizer
from realm_tf.utils import progress

LONG = " ".join(f"Sentence {i} is about the history of the Roman Empire and its cities."
                for i in range(40))


def write_inputs(directory):
  """A JSONL file with good documents and every kind of bad record, plus a WikiText file."""
  lines = [
      json.dumps({"id": "rome", "title": "Rome", "text": LONG}).encode(),          # 1
      b'{"title": "Broken", "text": "missing brace"',                               # 2
      json.dumps({"title": "Paris", "text": "Paris is in France. It is big."}).encode(),  # 3
      b'{"title": "Bytes", "text": "caf\xe9"}',                                     # 4
      json.dumps({"title": "Empty", "text": ""}).encode(),                          # 5
      json.dumps({"title": "Huge", "text": "word " * 200_000}).encode(),            # 6
      json.dumps({"title": "Tab\there", "text": "Titles are cleaned. Kept."}).encode(),  # 7
      json.dumps({"id": "rome", "title": "Rome again", "text": "Duplicate id."}).encode(),  # 8
  ]
  jsonl = os.path.join(directory, "docs.jsonl")
  with open(jsonl, "wb") as f:
    f.write(b"\n".join(lines) + b"\n")
  wiki = os.path.join(directory, "wiki.raw")
  with open(wiki, "w") as f:
    f.write(" = Berlin = \n Berlin is the capital of Germany . It has museums . \n")
  return [jsonl, wiki]


class _Collect(logging.Handler):
  """Keeps the messages of the records it sees."""

  def __init__(self):
    super().__init__(logging.INFO)
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """Builds the corpus twice ("a" and "b") from the same inputs, recording Beam's log and the
  progress lines."""
  tmp = str(tmp_path_factory.mktemp("build_corpus"))
  inputs = write_inputs(tmp)
  results = []
  beam_log = _Collect()
  beam_logger = logging.getLogger("apache_beam")
  old_level = beam_logger.level
  beam_logger.setLevel(logging.INFO)
  beam_logger.addHandler(beam_log)
  progress_lines = []
  try:
    with mock.patch.object(progress.logging, "info",
                           lambda msg, *a: progress_lines.append(msg % a if a else msg)):
      for run in ("a", "b"):
        config = corpus_pipeline.BuildCorpusConfig(
            inputs=inputs, output_dir=os.path.join(tmp, run), num_shards=3)
        results.append(corpus_pipeline.build_corpus(config))
  finally:
    beam_logger.removeHandler(beam_log)
    beam_logger.setLevel(old_level)
  return types.SimpleNamespace(tmp=tmp, inputs=inputs, results=results,
                               beam_messages=beam_log.messages, progress_lines=progress_lines)


def _blocks(built, run):
  return list(corpus.read_blocks(os.path.join(built.tmp, run)).as_numpy_iterator())


def test_blocks_read_back_with_tf_data(built):
  manifest = corpus.load_manifest(os.path.join(built.tmp, "a"))
  corpus.verify_shards(os.path.join(built.tmp, "a"), manifest)
  blocks = _blocks(built, "a")
  assert len(blocks) == manifest["num_blocks"]
  assert len(manifest["shards"]) == 3
  assert manifest["num_documents"] == 4  # rome, Paris, Tab here, Berlin
  docs = {b["doc_id"].decode() for b in blocks}
  assert docs == {"rome", "docs.jsonl:3", "docs.jsonl:7", "Berlin"}
  rome = [b for b in blocks if b["doc_id"] == b"rome"]
  assert len(rome) > 1  # a long document is split
  tok = RealmTokenizer()
  assert manifest["vocab_fingerprint"] == tok.fingerprint
  for i, b in enumerate(rome):
    assert b["block_id"] == corpus.block_id_for("rome", i)  # doc order kept
    assert len(b["title_ids"]) + len(b["body_ids"]) + 3 <= 288
    assert b["body_ids"].tolist() == tok.tokenize([b["body"]])[0].numpy().tolist()
    assert b["body"].endswith(b"cities.")
  titles = {b["title"] for b in blocks}
  assert b"Tab here" in titles


def test_blocking_shows_progress(built):
  lines = [line for line in built.progress_lines if line.startswith("[build_corpus]")]
  assert lines, built.progress_lines
  # The closing line counts every document read (4 good + the empty one), with a rate.
  assert re.search(r"^\[build_corpus\] \d+ documents [0-9.]+ documents/s$", lines[-1])


def test_default_runner_stays_offline_and_in_process(built):
  # Beam's DirectRunner would first try to download its Prism runner binary.
  assert built.beam_messages
  assert not [m for m in built.beam_messages
              if "prism" in m.lower() or "download" in m.lower()]


def test_block_ids_and_order_are_deterministic(built):
  a, b = _blocks(built, "a"), _blocks(built, "b")
  assert [x["block_id"] for x in a] == [x["block_id"] for x in b]
  assert (built.results[0]["manifest"]["fingerprint"]
          == built.results[1]["manifest"]["fingerprint"])
  assert ([s["sha256"] for s in built.results[0]["manifest"]["shards"]]
          == [s["sha256"] for s in built.results[1]["manifest"]["shards"]])


def test_bad_inputs_are_counted_and_reported(built):
  result = built.results[0]
  expected = {"malformed_json": 1, "non_utf8": 1, "empty_document": 1,
              "oversized_document": 1, "bad_title": 1, "duplicate_doc_id": 1}
  assert result["manifest"]["bad_records"] == expected
  for kind, count in expected.items():
    assert result["counters"][f"bad_{kind}"] == count, kind  # Beam Metrics
  assert result["counters"]["blocks"] == result["manifest"]["num_blocks"] + 1
  with open(os.path.join(built.tmp, "a", corpus_pipeline.BAD_RECORDS)) as f:
    report = sorted((r["line"], r["kind"]) for r in map(json.loads, f))
  assert report == [(2, "malformed_json"), (4, "non_utf8"), (5, "empty_document"),
                    (6, "oversized_document"), (7, "bad_title"), (8, "duplicate_doc_id")]
  assert all(r["source"].endswith("docs.jsonl") for r in result["bad_records"])


def test_strict_stops_and_publishes_nothing(built):
  out = os.path.join(built.tmp, "strict")
  config = corpus_pipeline.BuildCorpusConfig(inputs=built.inputs[:1], output_dir=out,
                                             num_shards=2, strict=True)
  with pytest.raises(Exception, match=r"docs\.jsonl:2: malformed_json"):
    corpus_pipeline.build_corpus(config)
  assert not os.path.exists(os.path.join(out, corpus.MANIFEST))
  leftovers = [n for n in os.listdir(built.tmp) if n.startswith("strict")]
  assert leftovers == []  # neither shards nor the temp dir


def test_a_run_removes_the_temporaries_a_killed_run_left(built):
  import json  # pylint: disable=g-import-not-at-top
  import socket  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from realm_tf.io import publish  # pylint: disable=g-import-not-at-top
  out = os.path.join(built.tmp, "rerun")
  dead_pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                capture_output=True, text=True, check=True).stdout)
  orphan = publish.claim_temp_dir(out + ".tmp-0123456789ab")
  with open(orphan + publish.OWNER_SUFFIX, "w", encoding="utf-8") as f:
    json.dump({"host": socket.gethostname(), "pid": dead_pid}, f)
  with open(os.path.join(orphan, "blocks-00000-of-00002.tfrecord.gz"), "wb") as f:
    f.write(b"half a shard")
  corpus_pipeline.build_corpus(corpus_pipeline.BuildCorpusConfig(inputs=built.inputs,
                                                                 output_dir=out,
                                                                 num_shards=2))
  assert sorted(n for n in os.listdir(built.tmp) if n.startswith("rerun")) == ["rerun"]
  assert corpus.load_manifest(out)["num_blocks"] > 0


def test_existing_corpus_needs_overwrite(built):
  config = corpus_pipeline.BuildCorpusConfig(inputs=built.inputs,
                                             output_dir=os.path.join(built.tmp, "a"))
  with pytest.raises(FileExistsError, match="overwrite"):
    corpus_pipeline.build_corpus(config)
  with pytest.raises(FileNotFoundError, match="nothing-here"):
    corpus_pipeline.build_corpus(corpus_pipeline.BuildCorpusConfig(
        inputs=[os.path.join(built.tmp, "nothing-here*")], output_dir=built.tmp + "/x"))


def test_shard_ranges():
  assert corpus_pipeline.shard_of(0, 4) == 0
  assert corpus_pipeline.shard_of(2**64 - 1, 4) == 3
  assert corpus_pipeline.shard_of(2**63, 4) == 2


def _keyed_blocks(num_docs=300, num_ids=250, num_shards=3):
  """Shuffled (shard, (sort key, record)) items as BlockDocumentsFn yields them; documents past
  `num_ids` reuse an earlier document's id from another source line (duplicates)."""
  rng = random.Random(0)
  items = []
  for d in range(num_docs):
    doc_id, source = f"doc{d % num_ids}", f"file{d % 3}.jsonl"
    h = corpus_pipeline.doc_hash(doc_id)
    for i in range(rng.randrange(1, 4)):
      record = corpus.block_example(corpus.block_id_for(doc_id, i), doc_id, f"T{d}",
                                    f"Body {d} {i}.", [1, d], [2, 3, i])
      items.append((corpus_pipeline.shard_of(h, num_shards), ((h, doc_id, source, d, i), record)))
  rng.shuffle(items)
  return items


def _write_shards(items, out, spill, buffer_bytes=20_000):
  """Runs WriteSortedShards over `items` into `out`; returns (per-shard stats, bad records,
  Beam counters)."""
  def build(p):
    # Hashes exceed Create's int64 coder: the items are made by a step, as a DoFn's outputs are.
    keyed = (p | beam.Create(range(len(items)))
             | beam.Map(lambda i: items[i]).with_output_types(typing.Any))
    written = keyed | corpus_pipeline.WriteSortedShards(
        out, corpus.SHARD_PATTERN, 3, dedupe_docs=True, spill=spill, buffer_bytes=buffer_bytes)
    corpus_pipeline.write_bad_records([written.bad], out)

  os.makedirs(out)
  result = corpus_pipeline.run_pipeline(build, None, out)
  stats = []
  for k in range(3):
    with open(os.path.join(out, corpus.SHARD_PATTERN.format(k, 3)) + ".stats.json") as f:
      stats.append(json.load(f))
  bad = corpus_pipeline.read_bad_records(os.path.join(out, corpus_pipeline.BAD_RECORDS))
  return stats, bad, corpus_pipeline.metric_counters(result)


def test_sorting_in_spilled_runs_writes_the_same_shards_as_grouping(tmp_path):
  """In process, shards are merged from sorted runs of bounded size; a distributed runner groups
  each shard's blocks. Both give the same bytes, counts and duplicate reports."""
  items = _keyed_blocks()
  grouped = _write_shards(items, str(tmp_path / "grouped"), spill=False)
  spilled = _write_shards(items, str(tmp_path / "spilled"), spill=True)
  assert spilled[:2] == grouped[:2]  # stats (sha256, blocks, documents) and bad records
  stats, bad, counters = spilled
  assert sum(s["num_documents"] for s in stats) == 250
  assert [b["kind"] for b in bad] == ["duplicate_doc_id"] * 50
  # ~600 records of ~400 buffered bytes in runs of 20 kB: each of 12+ spills writes 3 runs.
  assert counters["sort_runs"] >= 36 and "sort_runs" not in grouped[2]
  assert os.listdir(tmp_path / "spilled" / "sort-runs") == []  # merged runs are removed


def test_only_distributed_runners_reshuffle_and_group_every_block():
  assert corpus_pipeline.in_process(None)
  assert corpus_pipeline.in_process(["--runner=FnApiRunner", "--direct_num_workers=2"])
  assert corpus_pipeline.in_process(["--runner", "apache_beam.runners.direct.DirectRunner"])
  assert not corpus_pipeline.in_process(["--runner=DataflowRunner", "--project=p"])
  assert not corpus_pipeline.in_process(["--runner=FlinkRunner"])


def _parse_run(data: bytes) -> list:
  """A run file parsed by its documented framing, independently of `_read_run`: per item,
  key length and record length (little-endian u64 each), the key, the record; a key is its part
  count (u32), then per part a tag (b"i" an int in ASCII decimal, b"s" a UTF-8 string), the
  part's length (u32) and its bytes. Every byte must belong to an item."""
  items, at = [], 0
  while at < len(data):
    key_size, record_size = struct.unpack_from("<QQ", data, at)
    key_end = at + 16 + key_size
    key_blob, record = data[at + 16:key_end], data[key_end:key_end + record_size]
    assert len(key_blob) == key_size and len(record) == record_size, "truncated item"
    (count,), pos, key = struct.unpack_from("<I", key_blob), 4, []
    for _ in range(count):
      tag, (size,) = key_blob[pos:pos + 1], struct.unpack_from("<I", key_blob, pos + 1)
      part = key_blob[pos + 5:pos + 5 + size].decode("ascii" if tag == b"i" else "utf-8")
      assert tag in (b"i", b"s") and len(part.encode()) == size, (tag, part)
      key.append(int(part) if tag == b"i" else part)
      pos += 5 + size
    assert pos == key_size, "key bytes left over"
    items.append((tuple(key), record))
    at = key_end + record_size
  return items


def test_spilled_run_files_are_length_prefixed_bytes_not_pickles(tmp_path):
  """A sort run holds (key, record) items as plain length-prefixed bytes, exactly as documented
  (parsed here on its own), and nothing that unpickles; hashes up to 2**64 - 1, negative ids and
  non-ASCII doc ids come back equal and in order."""
  items = sorted([((2**64 - 1, "Zürich", "a.jsonl", 3, 0), b"\x00rec"),
                  ((5, "doc", "b.jsonl", -1, 2), b""), ((-7,), b"x" * 300)])
  path = str(tmp_path / "run")
  corpus_pipeline._write_run(path, items)
  with open(path, "rb") as f:
    data = f.read()
  assert _parse_run(data) == items
  assert list(corpus_pipeline._read_run(path)) == items
  # No pickle stream: a pickle of protocol 2 or later opens with PROTO (b"\x80") and its
  # protocol number, and its opcodes do not parse (read, never executed) from this file's start.
  assert data[:1] != pickle.PROTO
  with pytest.raises(ValueError):
    list(pickletools.genops(data))


def test_a_merge_holds_little_memory_for_each_open_run(tmp_path):
  """A shard's merge opens every spilled run at once (one per spill: more as the corpus grows),
  so each open run may hold only a small read-ahead (TF's GFile buffers 512 KB of each)."""
  items = [((i, "doc", "a.jsonl", i, 0), bytes(1000)) for i in range(600)]  # ~620 KB a run
  runs = []
  for r in range(40):
    path = str(tmp_path / f"run-{r}")
    corpus_pipeline._write_run(path, items)
    runs.append(path)
  readers = [corpus_pipeline._read_run(path) for path in runs]
  before = memory.rss_bytes()
  assert all(next(reader) == items[0] for reader in readers)
  held = memory.rss_bytes() - before
  assert held < 40 * 200_000, f"{held / 1e6:.1f} MB held by 40 open runs"
  assert [next(readers[0]) for _ in range(599)] == items[1:]

