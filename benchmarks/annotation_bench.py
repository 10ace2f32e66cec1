r"""Annotation throughput: sentences/s per core, and the share of time spent in spaCy.

    python -m benchmarks.annotation_bench [--num_passages=400]

Passages are the first blocks of the shipped SQuAD dev corpus (what annotate_corpus sees), timed
in CPU seconds of one process (other load on a shared machine does not count): spaCy NER alone,
the rule sentence splitter, the rest of the annotator, record serialisation, and spaCy with its
dependency parser, whose sentence boundaries are compared with the rule splitter's.
Writes benchmarks/results/annotation.json. Settings: `AnnotationBenchConfig`; `run(config)`.
"""
import dataclasses
import time

from benchmarks import common
from realm_tf.config_base import ConfigBase


MEASURES = ("realm_tf/data/annotate.py", "realm_tf/data/blocking.py", "realm_tf/data/corpus.py",
            "realm_tf/data/documents.py", "realm_tf/text/")


@dataclasses.dataclass
class AnnotationBenchConfig(ConfigBase):
  """Corpus passages annotated, and the annotators' spaCy batch size."""
  num_passages: int = 400
  batch_size: int = 64
  allow_dirty: bool = False


HELP = {
    "allow_dirty": common.ALLOW_DIRTY_HELP,
    "num_passages": "Passages (blocks) to annotate.",
    "batch_size": "spaCy nlp.pipe batch size.",
}


def _timed(fn):
  """(fn(), wall seconds, CPU seconds of this process)."""
  wall, cpu = time.perf_counter(), time.process_time()
  out = fn()
  return out, time.perf_counter() - wall, time.process_time() - cpu


def run(config: AnnotationBenchConfig) -> dict:
  """Annotates the first `num_passages` corpus blocks, timing each part of the annotator and the
  parser-based splitter; writes benchmarks/results/annotation.json and returns it."""
  provenance = common.Provenance(config.allow_dirty)  # refuses a dirty checkout unless allowed
  from realm_tf.data import annotate, blocking, corpus, documents  # pylint: disable=g-import-not-at-top

  docs = [d for d in documents.read_documents(documents.default_corpus_path())
          if isinstance(d, documents.Document)]
  blocker = blocking.Blocker()
  texts = []
  for i in range(0, len(docs), 64):
    for blocks in blocker.split_batch([(d.title, d.text) for d in docs[i:i + 64]]):
      texts += [b.body for b in blocks]
    if len(texts) >= config.num_passages:
      break
  texts = texts[:config.num_passages]

  rule = annotate.SpanAnnotator(sentence_splitter="rule", batch_size=config.batch_size)
  parser = annotate.SpanAnnotator(sentence_splitter="spacy", batch_size=config.batch_size)
  list(rule.nlp.pipe(texts[:16]))  # warm up both pipelines
  list(parser.nlp.pipe(texts[:16]))

  spacy_docs, ner_wall, ner_cpu = _timed(lambda: list(rule.nlp.pipe(texts, batch_size=64)))
  sentences, split_wall, split_cpu = _timed(lambda: rule.sentences(texts))
  entities = rule.entities(spacy_docs)
  anns, rest_wall, rest_cpu = _timed(lambda: rule.assemble(texts, sentences, entities))
  _, ser_wall, ser_cpu = _timed(lambda: [corpus.annotation_example(
      "t", t, a.sentences, a.spans, a.span_types, 1) for t, a in zip(texts, anns)])
  parser_docs, parser_wall, parser_cpu = _timed(lambda: list(parser.nlp.pipe(texts,
                                                                              batch_size=64)))
  parser_sentences = parser.sentences(texts, parser_docs)

  num_sentences = sum(len(s) for s in sentences)
  num_spans = sum(len(a.spans) for a in anns)
  rule_total_cpu = ner_cpu + split_cpu + rest_cpu + ser_cpu
  parser_total_cpu = parser_cpu + rest_cpu + ser_cpu
  rule_set = {(i, s) for i, ss in enumerate(sentences) for s in ss}
  parser_set = {(i, s) for i, ss in enumerate(parser_sentences) for s in ss}
  agreement = len(rule_set & parser_set) / max(len(parser_set), 1)

  result = {
      "num_passages": len(texts), "num_sentences": num_sentences, "num_spans": num_spans,
      "spacy_model": annotate.SPACY_MODEL,
      "rule_splitter": {
          "sentences_per_second_per_core": num_sentences / rule_total_cpu,
          "cpu_seconds": {"spacy_ner": ner_cpu, "sentence_split": split_cpu,
                          "dates_merge_offsets": rest_cpu, "serialise": ser_cpu},
          "wall_seconds": {"spacy_ner": ner_wall, "sentence_split": split_wall,
                           "dates_merge_offsets": rest_wall, "serialise": ser_wall},
          "share_of_time_in_spacy": ner_cpu / rule_total_cpu,
      },
      "parser_splitter": {
          "sentences_per_second_per_core": num_sentences / parser_total_cpu,
          "spacy_cpu_seconds": parser_cpu,
          "num_sentences": len(parser_set),
          "share_of_time_in_spacy": parser_cpu / parser_total_cpu,
      },
      "rule_over_parser_speed": parser_total_cpu / rule_total_cpu,
      "rule_split_speed_over_parser_cost": (parser_cpu - ner_cpu) / max(split_cpu, 1e-9),
      "sentence_agreement_with_parser": agreement,
      "notes": "CPU seconds of one process (one core). Default annotate_corpus uses the rule "
               "splitter; 'agreement' is the fraction of parser sentences the rule splitter "
               "reproduces exactly.",
  }
  common.write_result("annotation", result, provenance)
  return result


if __name__ == "__main__":
  from realm_tf.launch import config_program  # pylint: disable=g-import-not-at-top
  config_program.main(AnnotationBenchConfig, HELP, run)
