"""Tests of salient-span annotation: dates, span merging, spaCy NER, and the Beam pipeline."""
import json
import os
import shutil
import tempfile
from unittest import mock

import tensorflow as tf

from realm_tf.data import annotate
from realm_tf.data import corpus
from realm_tf.training import progress

BODIES = {
    "obama": ("Barack Obama", "Barack Obama was born in Honolulu on August 4, 1961. He became "
              "president in 2009."),
    "zoe": ("Zoë", "Zoë Müller moved to Zürich in 1999. The weather was nice."),
    "none": ("Nothing", "it was fine and good."),
}


def _spans(text: bytes, ex):
  return [(text[s:e].decode(), t.decode()) for s, e, t in
          zip(ex["span_starts"], ex["span_limits"], ex["span_types"])]


class DatesAndMergingTest(tf.test.TestCase):

  def test_find_dates(self):
    text = ("Born on August 4, 1961 and 4 July 1776, in May 2001, on 2020-02-29, since the "
            "1990s, during 1815. He may come; 1500 soldiers; Mar. 3 was cold.")
    got = [text[s:e] for s, e in annotate.find_dates(text)]
    self.assertEqual(got, ["August 4, 1961", "4 July 1776", "May 2001", "2020-02-29", "1990s",
                           "1815", "Mar. 3"])

  def test_merge_spans_keeps_longest(self):
    merged = annotate.merge_spans([(0, 5, "A"), (0, 10, "B"), (8, 12, "C"), (12, 14, "D"),
                                   (20, 20, "E")])
    self.assertEqual(merged, [(0, 10, "B"), (12, 14, "D")])


class SpanAnnotatorTest(tf.test.TestCase):

  def test_entities_dates_and_byte_offsets(self):
    annotator = annotate.SpanAnnotator()
    texts = [BODIES["obama"][1], BODIES["zoe"][1]]
    anns = annotator.annotate(texts)
    for text, ann in zip(texts, anns):
      data = text.encode()
      sentences = [data[s:e].decode() for s, e in ann.sentences]
      self.assertLen(sentences, 2)
      for s, e in ann.spans:  # every span lies inside one sentence
        self.assertTrue(any(a <= s and e <= b for a, b in ann.sentences))
    got = {(texts[0].encode()[s:e].decode(), t) for (s, e), t in
           zip(anns[0].spans, anns[0].span_types)}
    self.assertIn(("Barack Obama", "PERSON"), got)
    self.assertIn(("Honolulu", "GPE"), got)
    self.assertIn(("August 4, 1961", "DATE"), got)
    self.assertIn(("2009", "DATE"), got)
    zoe = {texts[1].encode()[s:e].decode() for s, e in anns[1].spans}
    self.assertIn("Zürich", zoe)  # byte offsets of non-ASCII text
    self.assertIn("1999", zoe)

  def test_types_are_salient(self):
    annotator = annotate.SpanAnnotator()
    ann = annotator.annotate(["He paid 300 dollars for 5 apples at 3 pm last year, 40% off."])[0]
    self.assertEmpty(ann.spans)  # MONEY, CARDINAL, TIME, PERCENT, relative DATE


class AnnotatePipelineTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.corpus_dir = os.path.join(cls.tmp, "blocks")
    os.makedirs(cls.corpus_dir)
    records = [corpus.block_example(corpus.block_id_for(d, 0), d, title, body, [1], [2])
               for d, (title, body) in sorted(BODIES.items())]
    shard = corpus.write_shard(os.path.join(cls.corpus_dir, corpus.SHARD_PATTERN.format(0, 1)),
                               records)
    corpus.write_manifest(cls.corpus_dir, [shard], "vocab")

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp, ignore_errors=True)
    super().tearDownClass()

  def test_annotates_corpus_blocks(self):
    out = os.path.join(self.tmp, "ann")
    lines = []
    with mock.patch.object(progress.logging, "info",
                           lambda msg, *a: lines.append(msg % a if a else msg)):
      result = annotate.annotate_corpus(annotate.AnnotateConfig(
          output_dir=out, corpus_dir=self.corpus_dir, num_shards=2))
    # A progress line against the corpus's block count; the last one says all are done.
    progress_lines = [line for line in lines if line.startswith("[annotate]")]
    self.assertTrue(progress_lines, lines)
    self.assertRegex(progress_lines[-1], r"^\[annotate\] 3/3 passages [0-9.]+ passages/s ETA 0s$")
    manifest = corpus.load_annotation_manifest(out)
    records = list(corpus.read_annotations(out).as_numpy_iterator())
    self.assertLen(records, 2)  # "none" has no salient span: dropped
    self.assertEqual(manifest["num_records"], 2)
    self.assertEqual(manifest["records_without_spans_dropped"], 1)
    self.assertEqual(result["counters"]["records"], 3)
    self.assertEqual(manifest["source"]["corpus_fingerprint"],
                     corpus.load_manifest(self.corpus_dir)["fingerprint"])
    self.assertEqual(sorted(r["block_id"] for r in records),
                     sorted(corpus.block_id_for(d, 0) for d in ("obama", "zoe")))
    self.assertEqual([r["block_id"] for r in records], sorted(r["block_id"] for r in records))
    by_title = {r["title"].decode(): r for r in records}
    spans = _spans(by_title["Barack Obama"]["text"], by_title["Barack Obama"])
    self.assertIn(("Barack Obama", "PERSON"), spans)
    self.assertIn(("August 4, 1961", "DATE"), spans)
    self.assertEqual(manifest["num_spans"], sum(len(r["span_starts"]) for r in records))
    self.assertEqual(sum(manifest["span_types"].values()), manifest["num_spans"])
    self.assertEqual(manifest["num_sentences"], 4)

  def test_annotates_documents_and_reports_bad_lines(self):
    path = os.path.join(self.tmp, "x.jsonl")
    with open(path, "wb") as f:
      f.write(json.dumps({"title": "Obama", "text": BODIES["obama"][1]}).encode() + b"\n")
      f.write(b"{not json\n")
    out = os.path.join(self.tmp, "ann_x")
    result = annotate.annotate_corpus(annotate.AnnotateConfig(
        output_dir=out, inputs=[path], num_shards=1, sentence_splitter="spacy"))
    records = list(corpus.read_annotations(out).as_numpy_iterator())
    self.assertLen(records, 1)
    self.assertEqual(records[0]["block_id"], -1)
    self.assertIn(("Honolulu", "GPE"), _spans(records[0]["text"], records[0]))
    self.assertEqual(result["manifest"]["bad_records"], {"malformed_json": 1})
    self.assertEqual(result["counters"]["bad_malformed_json"], 1)
    self.assertEqual(result["manifest"]["sentence_splitter"], "spacy")
    with self.assertRaisesRegex(Exception, r"x\.jsonl:2: malformed_json"):
      annotate.annotate_corpus(annotate.AnnotateConfig(
          output_dir=os.path.join(self.tmp, "strict"), inputs=[path], strict=True))
    self.assertFalse(os.path.exists(os.path.join(self.tmp, "strict", "manifest.json")))


if __name__ == "__main__":
  tf.test.main()
