"""Tests of salient-span annotation: dates, span merging, spaCy NER, and the Beam pipeline."""
import json
import os
import re
from unittest import mock

import pytest

from realm_tf.data import annotate
from realm_tf.data import corpus
from realm_tf.utils import progress

BODIES = {
    "obama": ("Barack Obama", "Barack Obama was born in Honolulu on August 4, 1961. He became "
              "president in 2009."),
    "zoe": ("Zoë", "Zoë Müller moved to Zürich in 1999. The weather was nice."),
    "none": ("Nothing", "it was fine and good."),
}


def _spans(text: bytes, ex):
  return [(text[s:e].decode(), t.decode()) for s, e, t in
          zip(ex["span_starts"], ex["span_limits"], ex["span_types"])]


# Dates and span merging.

def test_find_dates():
  text = ("Born on August 4, 1961 and 4 July 1776, in May 2001, on 2020-02-29, since the "
          "1990s, during 1815. He may come; 1500 soldiers; Mar. 3 was cold.")
  got = [text[s:e] for s, e in annotate.find_dates(text)]
  assert got == ["August 4, 1961", "4 July 1776", "May 2001", "2020-02-29", "1990s", "1815",
                 "Mar. 3"]


def test_merge_spans_keeps_longest():
  merged = annotate.merge_spans([(0, 5, "A"), (0, 10, "B"), (8, 12, "C"), (12, 14, "D"),
                                 (20, 20, "E")])
  assert merged == [(0, 10, "B"), (12, 14, "D")]


# The spaCy span annotator.

def test_entities_dates_and_byte_offsets():
  annotator = annotate.SpanAnnotator()
  texts = [BODIES["obama"][1], BODIES["zoe"][1]]
  anns = annotator.annotate(texts)
  for text, ann in zip(texts, anns):
    data = text.encode()
    sentences = [data[s:e].decode() for s, e in ann.sentences]
    assert len(sentences) == 2
    for s, e in ann.spans:  # every span lies inside one sentence
      assert any(a <= s and e <= b for a, b in ann.sentences)
  got = {(texts[0].encode()[s:e].decode(), t) for (s, e), t in
         zip(anns[0].spans, anns[0].span_types)}
  assert ("Barack Obama", "PERSON") in got
  assert ("Honolulu", "GPE") in got
  assert ("August 4, 1961", "DATE") in got
  assert ("2009", "DATE") in got
  zoe = {texts[1].encode()[s:e].decode() for s, e in anns[1].spans}
  assert "Zürich" in zoe  # byte offsets of non-ASCII text
  assert "1999" in zoe


def test_types_are_salient():
  annotator = annotate.SpanAnnotator()
  ann = annotator.annotate(["He paid 300 dollars for 5 apples at 3 pm last year, 40% off."])[0]
  assert not ann.spans  # MONEY, CARDINAL, TIME, PERCENT, relative DATE


# The Beam pipeline.

@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
  """A one-shard block corpus of BODIES."""
  path = str(tmp_path_factory.mktemp("annotate") / "blocks")
  os.makedirs(path)
  records = [corpus.block_example(corpus.block_id_for(d, 0), d, title, body, [1], [2])
             for d, (title, body) in sorted(BODIES.items())]
  shard = corpus.write_shard(os.path.join(path, corpus.SHARD_PATTERN.format(0, 1)), records)
  corpus.write_manifest(path, [shard], "vocab")
  return path


def test_annotates_corpus_blocks(tmp_path, corpus_dir):
  out = str(tmp_path / "ann")
  lines = []
  with mock.patch.object(progress.logging, "info",
                         lambda msg, *a: lines.append(msg % a if a else msg)):
    result = annotate.annotate_corpus(annotate.AnnotateConfig(
        output_dir=out, corpus_dir=corpus_dir, num_shards=2, max_records_per_shard=1))
  # A progress line against the corpus's block count; the last one says all are done.
  progress_lines = [line for line in lines if line.startswith("[annotate]")]
  assert progress_lines, lines
  assert re.search(r"^\[annotate\] 3/3 passages [0-9.]+ passages/s ETA 0s$", progress_lines[-1])
  manifest = corpus.load_annotation_manifest(out)
  records = list(corpus.read_annotations(out).as_numpy_iterator())
  assert len(records) == 2  # "none" has no salient span: dropped
  assert manifest["num_records"] == 2
  # 3 blocks at most 1 a shard: 3 shards, more than num_shards (one is empty after the drop).
  assert len(manifest["shards"]) == 3
  assert manifest["records_without_spans_dropped"] == 1
  assert result["counters"]["records"] == 3
  assert (manifest["source"]["corpus_fingerprint"]
          == corpus.load_manifest(corpus_dir)["fingerprint"])
  assert (sorted(r["block_id"] for r in records)
          == sorted(corpus.block_id_for(d, 0) for d in ("obama", "zoe")))
  assert [r["block_id"] for r in records] == sorted(r["block_id"] for r in records)
  by_title = {r["title"].decode(): r for r in records}
  spans = _spans(by_title["Barack Obama"]["text"], by_title["Barack Obama"])
  assert ("Barack Obama", "PERSON") in spans
  assert ("August 4, 1961", "DATE") in spans
  assert manifest["num_spans"] == sum(len(r["span_starts"]) for r in records)
  assert sum(manifest["span_types"].values()) == manifest["num_spans"]
  assert manifest["num_sentences"] == 4


def test_a_large_corpus_gets_shards_of_at_most_max_records_per_shard():
  config = annotate.AnnotateConfig(output_dir="unused", corpus_dir="unused", num_shards=4)
  assert annotate.annotation_shards(config, 13_353_718) == 816  # ceil(N / 16,384)
  assert annotate.annotation_shards(config, 16_384 * 4) == 4
  assert annotate.annotation_shards(config, 16_384 * 4 + 1) == 5
  assert annotate.annotation_shards(config, 100) == 4
  assert annotate.annotation_shards(config, None) == 4  # documents: the count is not known


def test_annotates_documents_and_reports_bad_lines(tmp_path):
  path = str(tmp_path / "x.jsonl")
  with open(path, "wb") as f:
    f.write(json.dumps({"title": "Obama", "text": BODIES["obama"][1]}).encode() + b"\n")
    f.write(b"{not json\n")
  out = str(tmp_path / "ann_x")
  result = annotate.annotate_corpus(annotate.AnnotateConfig(
      output_dir=out, inputs=[path], num_shards=1, sentence_splitter="spacy"))
  records = list(corpus.read_annotations(out).as_numpy_iterator())
  assert len(records) == 1
  assert records[0]["block_id"] == -1
  assert ("Honolulu", "GPE") in _spans(records[0]["text"], records[0])
  assert result["manifest"]["bad_records"] == {"malformed_json": 1}
  assert result["counters"]["bad_malformed_json"] == 1
  assert result["manifest"]["sentence_splitter"] == "spacy"
  with pytest.raises(Exception, match=r"x\.jsonl:2: malformed_json"):
    annotate.annotate_corpus(annotate.AnnotateConfig(
        output_dir=str(tmp_path / "strict"), inputs=[path], strict=True))
  assert not os.path.exists(os.path.join(str(tmp_path), "strict", "manifest.json"))
