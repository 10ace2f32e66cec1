r"""Builds the block corpus Z with Apache Beam (in-process FnApiRunner by default).

    python -m realm_tf.launch.build_corpus --output_dir=/tmp/realm/blocks
    python -m realm_tf.launch.build_corpus --input='gs://b/wiki/*.jsonl.gz' \
        --output_dir=gs://b/realm/blocks --num_shards=256 \
        --runner=DataflowRunner --project=p --region=r --temp_location=gs://b/tmp

Without --input the shipped SQuAD v1.1 dev paragraphs are used. Flags this program does not
define (--project, --direct_num_workers=2, ...) are passed to Beam as pipeline options.
Prints the counts (documents, blocks, bad records by kind) and the manifest fingerprint.
"""
import json
import sys
import time

from absl import flags
from absl import logging

from realm_tf.launch import cli

flags.DEFINE_list("input", None, "Document file globs (comma-separated); default: the shipped "
                  "SQuAD v1.1 dev set.")
flags.DEFINE_enum("format", "auto", ["auto", "jsonl", "squad", "wikitext", "text"],
                  "Document format; auto detects it per file.")
flags.DEFINE_string("output_dir", None, "Corpus directory to write.")
flags.DEFINE_integer("num_shards", 4, "Number of output shards.")
flags.DEFINE_string("runner", "FnApiRunner", "Beam runner (FnApiRunner: in-process, DataflowRunner, "
                    "FlinkRunner, SparkRunner, ...).")
flags.DEFINE_bool("strict", False, "Stop at the first bad input record instead of counting it.")
flags.DEFINE_integer("max_document_bytes", 1_000_000,
                     "Reject documents of this many UTF-8 bytes or more.")
flags.DEFINE_integer("max_block_length", 288, "Wordpieces per block incl. [CLS] title [SEP] "
                     "body [SEP].")
flags.DEFINE_integer("max_title_length", 32, "Title wordpieces kept.")
flags.DEFINE_bool("overwrite", False, "Replace an existing corpus in --output_dir.")
flags.mark_flag_as_required("output_dir")

FLAGS = flags.FLAGS


def parse_flags(argv):
  """Parses this program's flags; returns the rest (Beam pipeline options) after argv[0]."""
  return FLAGS(argv, known_only=True)


def main(argv):
  from realm_tf.data import build_corpus  # pylint: disable=g-import-not-at-top
  from realm_tf.data import documents  # pylint: disable=g-import-not-at-top
  beam_args = [f"--runner={FLAGS.runner}"] + list(argv[1:])
  inputs = FLAGS.input or [documents.default_corpus_path()]
  config = build_corpus.BuildCorpusConfig(
      inputs=inputs, output_dir=FLAGS.output_dir,
      fmt=None if FLAGS.format == "auto" else FLAGS.format, num_shards=FLAGS.num_shards,
      strict=FLAGS.strict, max_document_bytes=FLAGS.max_document_bytes,
      max_block_length=FLAGS.max_block_length, max_title_length=FLAGS.max_title_length,
      overwrite=FLAGS.overwrite)
  logging.info("Building the block corpus from %s into %s (Beam options: %s)", inputs,
               FLAGS.output_dir, beam_args)
  start = time.time()
  result = build_corpus.build_corpus(config, beam_args)
  m = result["manifest"]
  summary = {"documents": m["num_documents"], "blocks": m["num_blocks"],
             "shards": len(m["shards"]), "bad_records": m["bad_records"],
             "fingerprint": m["fingerprint"], "seconds": round(time.time() - start, 1),
             "output_dir": FLAGS.output_dir}
  for r in result["bad_records"][:20]:
    print(f"bad input: {r['source']}:{r['line']}: {r['kind']}: {r['message']}")
  print(f"Built {m['num_blocks']} blocks from {m['num_documents']} documents in "
        f"{len(m['shards'])} shards ({summary['seconds']} s); bad records: "
        f"{sum(m['bad_records'].values())} {m['bad_records']}; fingerprint {m['fingerprint']}")
  print(json.dumps(summary, sort_keys=True))
  sys.stdout.flush()


if __name__ == "__main__":
  cli.run(main, flags_parser=parse_flags)
