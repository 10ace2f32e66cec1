r"""Annotates salient spans (spaCy NER + date regex) with Apache Beam (in-process FnApiRunner by default).

    python -m realm_tf.launch.annotate_corpus --work_dir=runs/mine  # its corpus → annotations
    python -m realm_tf.launch.annotate_corpus --corpus_dir=/tmp/realm/blocks \
        --output_dir=/tmp/realm/annotations
    python -m realm_tf.launch.annotate_corpus --inputs='news/*.jsonl' --output_dir=...  # corpus X

--corpus_dir (default <work_dir>/corpus) annotates the block bodies of a block corpus (the block
ids are kept, so pre-training can remove a query's own block); --inputs annotates ≤288-wordpiece
passages of other documents (block id -1). The annotations go to <work_dir>/annotations unless
--output_dir says otherwise. Flags this program does not define are passed to Beam as pipeline options
(e.g. --direct_num_workers=2 --direct_running_mode=multi_processing to use two cores here).
"""
import json
import sys
import time

from absl import app
from absl import flags

from realm_tf.utils import command_line

FLAGS = flags.FLAGS

HELP = {
    "corpus_dir": "Block corpus to annotate (block bodies; default <work_dir>/corpus unless "
                  "--inputs).",
    "num_shards": "Number of output shards (at least: see --max_records_per_shard).",
    "max_records_per_shard": "Annotating a block corpus, write more than --num_shards shards "
                             "when needed to keep each shard to this many records (a "
                             "pre-training restore decompresses its window's shard up to the "
                             "window: about one shuffle window per shard keeps restores fast).",
    "strict": "Stop at the first bad input record instead of counting it.",
    "spacy_model": "spaCy model package.",
    "batch_size": "Passages per spaCy batch.",
    "keep_unannotated": "Keep passages without salient spans.",
    "max_document_bytes": "Reject --input documents of this many UTF-8 bytes or more.",
    "overwrite": "Replace existing annotations in --output_dir.",
    "inputs": "Document globs of a pre-training corpus X (instead of --corpus_dir).",
    "format": "Document format of --input.",
    "sentence_splitter": "rule: the fast rule-based splitter; spacy: the dependency parser's "
                         "sentences.",
    "output_dir": "Annotation directory to write (default <work_dir>/annotations).",
    "work_dir": "Work directory whose corpus/ this annotates into annotations/ (see "
                "realm_tf/io/work_dir.py).",
}
# AnnotateConfig fields whose flags differ from a plain field: --format and --sentence_splitter
# (enums) and --output_dir (defaulting to <work_dir>/annotations). verify_corpus is not a
# command-line setting.
_FLAG_NAMES = {"fmt": "format"}
_SKIP = ("verify_corpus",)
# Flags renamed: {old name: new name}; the old names still work and print a deprecation notice.
RENAMED = {"input": "inputs"}


def define_flags(flag_values=flags.FLAGS):
  """Defines this program's flags: one per AnnotateConfig setting, plus --runner (Beam's).

  Called from `__main__` only (and by tests on a fresh FlagValues), so importing this module
  defines no flag.
  """
  from realm_tf.data import annotate  # pylint: disable=g-import-not-at-top
  from realm_tf.data import documents  # pylint: disable=g-import-not-at-top
  from realm_tf.io import work_dir  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.define_config_flags(
      annotate.AnnotateConfig, HELP, skip=_SKIP, flag_values=flag_values, names=_FLAG_NAMES,
      defaults={"output_dir": None},
      choices={"fmt": documents.FORMAT_CHOICES,
               "sentence_splitter": annotate.SENTENCE_SPLITTERS})
  flags.DEFINE_string("work_dir", work_dir.DEFAULT_ROOT, HELP["work_dir"],
                      flag_values=flag_values)
  config_flags.define_deprecated_aliases(RENAMED, flag_values)
  flags.DEFINE_string("runner", "FnApiRunner", "Beam runner (FnApiRunner: in-process; Beam's "
                      "DirectRunner first tries to download its Prism runner).",
                      flag_values=flag_values)
  from realm_tf.launch import validators  # pylint: disable=g-import-not-at-top
  validators.register_ranges(flag_values)


def parse_flags(argv):
  """Parses this program's flags; returns the rest (Beam pipeline options) after argv[0]."""
  return FLAGS(argv, known_only=True)


def config_from_flags(flag_values=flags.FLAGS):
  """The AnnotateConfig the parsed flags describe: --corpus_dir (default <work_dir>/corpus) or
  --inputs, into --output_dir (default <work_dir>/annotations)."""
  from realm_tf.data import annotate  # pylint: disable=g-import-not-at-top
  from realm_tf.io import work_dir  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  fv = flag_values
  if fv.corpus_dir and fv.inputs:
    raise app.UsageError("Give one of --corpus_dir or --inputs.")
  layout = work_dir.WorkDir(fv.work_dir)
  return config_flags.config_from_flags(
      annotate.AnnotateConfig, fv, skip=_SKIP, names=_FLAG_NAMES,
      corpus_dir=None if fv.inputs else fv.corpus_dir or layout.corpus,
      output_dir=fv.output_dir or layout.annotations)


def main(argv):
  """Annotates what the flags name; `argv[1:]` are Beam pipeline options."""
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import annotate_corpus  # pylint: disable=g-import-not-at-top
  beam_args = [f"--runner={FLAGS.runner}"] + list(argv[1:])
  config = config_from_flags()
  start = time.time()
  result = annotate_corpus.run(config, beam_args,
                               config_flags.lock_dir(FLAGS, "output_dir", None))
  m = result["manifest"]
  if result.get("finished_before"):
    print(f"{config.output_dir} already holds these annotations ({m['num_records']} "
          "passages); nothing to do.")
    return
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
                    "output_dir": config.output_dir}, sort_keys=True))
  sys.stdout.flush()


if __name__ == "__main__":
  # define_flags imports Beam: quiet first.
  command_line.quiet_logging(command_line.verbosity_in_argv(sys.argv[1:]))
  define_flags()
  command_line.run(main, flags_parser=parse_flags)
