r"""Builds the block corpus Z with Apache Beam (in-process FnApiRunner by default).

    python -m realm_tf.launch.build_corpus --inputs=my_docs.jsonl --work_dir=runs/mine
    python -m realm_tf.launch.build_corpus --inputs='gs://b/wiki/*.jsonl.gz' \
        --output_dir=gs://b/realm/blocks --num_shards=256 --block_length=288 \
        --runner=DataflowRunner --project=p --region=r --temp_location=gs://b/tmp

The corpus goes to <work_dir>/corpus unless --output_dir says otherwise; its manifest records the
block length, which every later stage reads. Without --inputs the shipped SQuAD v1.1 dev
paragraphs are used. Flags this program does not define (--project, --direct_num_workers=2, ...)
are passed to Beam as pipeline options.
Prints the counts (documents, blocks, bad records by kind) and the manifest fingerprint.
"""
import json
import sys
import time

from absl import flags

from realm_tf.utils import command_line

FLAGS = flags.FLAGS

HELP = {
    "num_shards": "Number of output shards.",
    "strict": "Stop at the first bad input record instead of counting it.",
    "max_document_bytes": "Reject documents of this many UTF-8 bytes or more.",
    "block_length": "Wordpieces per block incl. [CLS] title [SEP] body [SEP] (REALM: 288; the "
                    "main job's default: 128).",
    "max_title_length": "Title wordpieces kept.",
    "overwrite": "Replace an existing corpus in --output_dir.",
    "inputs": "Document file globs (comma-separated); default: the shipped SQuAD v1.1 dev set.",
    "format": "Document format; auto detects it per file by its content (dpr_tsv: DPR's "
              "psgs_w100.tsv; beir: BEIR's corpus.jsonl; pyserini: {id, contents}, "
              "pyserini_title: contents = title\\ntext; see docs/CORPUS.md).",
    "output_dir": "Corpus directory to write (default <work_dir>/corpus).",
    "work_dir": "Work directory whose corpus/ this builds (see realm_tf/io/work_dir.py).",
}
# BuildCorpusConfig fields whose flags differ from a plain field: --inputs (defaulting to the
# shipped set), --format (an enum), --block_length (the name every CLI gives the block length,
# defaulting to the main job's) and --output_dir (defaulting to <work_dir>/corpus); batch_size
# and vocab_path are not command-line settings.
_FLAG_NAMES = {"fmt": "format", "max_block_length": "block_length"}
_SKIP = ("batch_size", "vocab_path")
# Flags renamed: {old name: new name}; the old names still work and print a deprecation notice.
RENAMED = {"input": "inputs", "max_block_length": "block_length"}


def define_flags(flag_values=flags.FLAGS):
  """Defines this program's flags: one per BuildCorpusConfig setting, plus --runner (Beam's).

  Called from `__main__` only (and by tests on a fresh FlagValues), so importing this module
  defines no flag.
  """
  from realm_tf.data import corpus_pipeline  # pylint: disable=g-import-not-at-top
  from realm_tf.data import documents  # pylint: disable=g-import-not-at-top
  from realm_tf.io import work_dir  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.define_config_flags(
      corpus_pipeline.BuildCorpusConfig, HELP, skip=_SKIP, flag_values=flag_values,
      names=_FLAG_NAMES, defaults={"inputs": None, "output_dir": None,
                                   "max_block_length": work_dir.DEFAULT_BLOCK_LENGTH},
      choices={"fmt": documents.FORMAT_CHOICES})
  flags.DEFINE_string("work_dir", work_dir.DEFAULT_ROOT, HELP["work_dir"],
                      flag_values=flag_values)
  config_flags.define_deprecated_aliases(RENAMED, flag_values)
  flags.DEFINE_string("runner", "FnApiRunner", "Beam runner (FnApiRunner: in-process, "
                      "DataflowRunner, FlinkRunner, SparkRunner, ...).", flag_values=flag_values)
  from realm_tf.launch import validators  # pylint: disable=g-import-not-at-top
  validators.register_ranges(flag_values)
  # [CLS] title [SEP] body [SEP]: the longest title leaves room for the specials and some body.
  validators.register_multi(flag_values, ["max_title_length", "block_length"], lambda v: (
      f"--block_length={v['block_length']} leaves no body after a title of up to "
      f"--max_title_length={v['max_title_length']} wordpieces (need at least title + 4)."
      if v["max_title_length"] and v["block_length"]
      and v["block_length"] < v["max_title_length"] + 4 else None))


def parse_flags(argv):
  """Parses this program's flags; returns the rest (Beam pipeline options) after argv[0]."""
  return FLAGS(argv, known_only=True)


def config_from_flags(flag_values=flags.FLAGS):
  """The BuildCorpusConfig the parsed flags describe (no --inputs: the shipped SQuAD dev set; no
  --output_dir: <work_dir>/corpus)."""
  from realm_tf.data import corpus_pipeline  # pylint: disable=g-import-not-at-top
  from realm_tf.data import documents  # pylint: disable=g-import-not-at-top
  from realm_tf.io import work_dir  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  return config_flags.config_from_flags(
      corpus_pipeline.BuildCorpusConfig, flag_values, skip=_SKIP, names=_FLAG_NAMES,
      inputs=flag_values.inputs or [documents.default_corpus_path()],
      output_dir=flag_values.output_dir or work_dir.WorkDir(flag_values.work_dir).corpus)


def main(argv):
  """Builds the corpus the flags describe; `argv[1:]` are Beam pipeline options."""
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import build_corpus  # pylint: disable=g-import-not-at-top
  beam_args = [f"--runner={FLAGS.runner}"] + list(argv[1:])
  config = config_from_flags()
  start = time.time()
  result = build_corpus.run(config, beam_args, config_flags.lock_dir(FLAGS, "output_dir", None))
  m = result["manifest"]
  if result.get("finished_before"):
    print(f"{config.output_dir} already holds this build ({m['num_blocks']} blocks, "
          f"fingerprint {m['fingerprint']}); nothing to do.")
    return
  summary = {"documents": m["num_documents"], "blocks": m["num_blocks"],
             "shards": len(m["shards"]), "bad_records": m["bad_records"],
             "fingerprint": m["fingerprint"], "seconds": round(time.time() - start, 1),
             "output_dir": config.output_dir}
  for r in result["bad_records"][:20]:
    print(f"bad input: {r['source']}:{r['line']}: {r['kind']}: {r['message']}")
  print(f"Built {m['num_blocks']} blocks from {m['num_documents']} documents in "
        f"{len(m['shards'])} shards ({summary['seconds']} s); bad records: "
        f"{sum(m['bad_records'].values())} {m['bad_records']}; fingerprint {m['fingerprint']}")
  print(json.dumps(summary, sort_keys=True))
  sys.stdout.flush()


if __name__ == "__main__":
  # define_flags imports Beam: quiet first.
  command_line.quiet_logging(command_line.verbosity_in_argv(sys.argv[1:]))
  define_flags()
  command_line.run(main, flags_parser=parse_flags)
