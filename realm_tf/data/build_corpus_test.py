"""Tests of the Beam block-corpus pipeline (in-process runner) and its bad-input handling."""
import json
import logging
import os
import shutil
import tempfile
from unittest import mock

import tensorflow as tf

from realm_tf.data import build_corpus
from realm_tf.data import corpus
from realm_tf.text import RealmTokenizer
from realm_tf.training import progress

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


class BuildCorpusTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.inputs = write_inputs(cls.tmp)
    cls.results = []

    class Collect(logging.Handler):
      def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

      def emit(self, record):
        self.messages.append(record.getMessage())

    cls.beam_log = Collect()
    beam_logger = logging.getLogger("apache_beam")
    old_level = beam_logger.level
    beam_logger.setLevel(logging.INFO)
    beam_logger.addHandler(cls.beam_log)
    cls.progress_lines = []
    try:
      with mock.patch.object(progress.logging, "info",
                             lambda msg, *a: cls.progress_lines.append(msg % a if a else msg)):
        for run in ("a", "b"):
          config = build_corpus.BuildCorpusConfig(
              inputs=cls.inputs, output_dir=os.path.join(cls.tmp, run), num_shards=3)
          cls.results.append(build_corpus.build_corpus(config))
    finally:
      beam_logger.removeHandler(cls.beam_log)
      beam_logger.setLevel(old_level)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp, ignore_errors=True)
    super().tearDownClass()

  def _blocks(self, run):
    return list(corpus.read_blocks(os.path.join(self.tmp, run)).as_numpy_iterator())

  def test_blocks_read_back_with_tf_data(self):
    manifest = corpus.load_manifest(os.path.join(self.tmp, "a"))
    corpus.verify_shards(os.path.join(self.tmp, "a"), manifest)
    blocks = self._blocks("a")
    self.assertLen(blocks, manifest["num_blocks"])
    self.assertLen(manifest["shards"], 3)
    self.assertEqual(manifest["num_documents"], 4)  # rome, Paris, Tab here, Berlin
    docs = {b["doc_id"].decode() for b in blocks}
    self.assertEqual(docs, {"rome", "docs.jsonl:3", "docs.jsonl:7", "Berlin"})
    rome = [b for b in blocks if b["doc_id"] == b"rome"]
    self.assertGreater(len(rome), 1)  # a long document is split
    tok = RealmTokenizer()
    self.assertEqual(manifest["vocab_fingerprint"], tok.fingerprint)
    for i, b in enumerate(rome):
      self.assertEqual(b["block_id"], corpus.block_id_for("rome", i))  # doc order kept
      self.assertLessEqual(len(b["title_ids"]) + len(b["body_ids"]) + 3, 288)
      self.assertEqual(b["body_ids"].tolist(), tok.tokenize([b["body"]])[0].numpy().tolist())
      self.assertTrue(b["body"].endswith(b"cities."))
    titles = {b["title"] for b in blocks}
    self.assertIn(b"Tab here", titles)

  def test_blocking_shows_progress(self):
    lines = [line for line in self.progress_lines if line.startswith("[build_corpus]")]
    self.assertTrue(lines, self.progress_lines)
    # The closing line counts every document read (4 good + the empty one), with a rate.
    self.assertRegex(lines[-1], r"^\[build_corpus\] \d+ documents [0-9.]+ documents/s$")

  def test_default_runner_stays_offline_and_in_process(self):
    # Beam's DirectRunner would first try to download its Prism runner binary.
    self.assertNotEmpty(self.beam_log.messages)
    self.assertEmpty([m for m in self.beam_log.messages
                      if "prism" in m.lower() or "download" in m.lower()])

  def test_block_ids_and_order_are_deterministic(self):
    a, b = self._blocks("a"), self._blocks("b")
    self.assertEqual([x["block_id"] for x in a], [x["block_id"] for x in b])
    self.assertEqual(self.results[0]["manifest"]["fingerprint"],
                     self.results[1]["manifest"]["fingerprint"])
    self.assertEqual([s["sha256"] for s in self.results[0]["manifest"]["shards"]],
                     [s["sha256"] for s in self.results[1]["manifest"]["shards"]])

  def test_bad_inputs_are_counted_and_reported(self):
    result = self.results[0]
    expected = {"malformed_json": 1, "non_utf8": 1, "empty_document": 1,
                "oversized_document": 1, "bad_title": 1, "duplicate_doc_id": 1}
    self.assertEqual(result["manifest"]["bad_records"], expected)
    for kind, count in expected.items():
      self.assertEqual(result["counters"][f"bad_{kind}"], count, kind)  # Beam Metrics
    self.assertEqual(result["counters"]["blocks"], result["manifest"]["num_blocks"] + 1)
    with open(os.path.join(self.tmp, "a", build_corpus.BAD_RECORDS)) as f:
      report = sorted((r["line"], r["kind"]) for r in map(json.loads, f))
    self.assertEqual(report, [(2, "malformed_json"), (4, "non_utf8"), (5, "empty_document"),
                              (6, "oversized_document"), (7, "bad_title"),
                              (8, "duplicate_doc_id")])
    self.assertTrue(all(r["source"].endswith("docs.jsonl") for r in result["bad_records"]))

  def test_strict_stops_and_publishes_nothing(self):
    out = os.path.join(self.tmp, "strict")
    config = build_corpus.BuildCorpusConfig(inputs=self.inputs[:1], output_dir=out,
                                            num_shards=2, strict=True)
    with self.assertRaisesRegex(Exception, r"docs\.jsonl:2: malformed_json"):
      build_corpus.build_corpus(config)
    self.assertFalse(os.path.exists(os.path.join(out, corpus.MANIFEST)))
    leftovers = [n for n in os.listdir(self.tmp) if n.startswith("strict")]
    self.assertEqual(leftovers, [])  # neither shards nor the temp dir

  def test_existing_corpus_needs_overwrite(self):
    config = build_corpus.BuildCorpusConfig(inputs=self.inputs,
                                            output_dir=os.path.join(self.tmp, "a"))
    with self.assertRaisesRegex(FileExistsError, "overwrite"):
      build_corpus.build_corpus(config)
    with self.assertRaisesRegex(FileNotFoundError, "nothing-here"):
      build_corpus.build_corpus(build_corpus.BuildCorpusConfig(
          inputs=[os.path.join(self.tmp, "nothing-here*")], output_dir=self.tmp + "/x"))

  def test_shard_ranges(self):
    self.assertEqual(build_corpus.shard_of(0, 4), 0)
    self.assertEqual(build_corpus.shard_of(2**64 - 1, 4), 3)
    self.assertEqual(build_corpus.shard_of(2**63, 4), 2)


if __name__ == "__main__":
  tf.test.main()
