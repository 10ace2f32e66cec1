r"""Exports a fine-tuned open-QA model as TF Serving SavedModels (`<base>/<model>/<version>/`).

Examples:
  # <work_dir>/finetune → <work_dir>/serving: everything, both open-QA variants, next version:
  python -m realm_tf.launch.export --work_dir=runs/mine
  # A model_dir fine-tuned on another index version, served with the newest bundle:
  python -m realm_tf.launch.export --model_dir=... --index_dir=/tmp/realm/index \
      --corpus_dir=/tmp/realm/corpus --export_base=... --version=7
  # Warm-start weights instead of a fine-tuning run (a REALM pre-training model_dir, an embedder
  # export or a converted checkpoint) over <work_dir>'s index and corpus, only the stock open-QA
  # model and the searcher:
  python -m realm_tf.launch.export --work_dir=runs/mine --init=runs/mine/realm \
      --components=openqa,searcher

Without --model_dir and --init the fine-tuning run is <work_dir>/finetune (its index and corpus
the ones it recorded); with --init, the index and corpus are <work_dir>/index and corpus. The
exports go to <work_dir>/serving unless --export_base says otherwise.

Models written (see docs/SERVING_SIGNATURES.md): realm_openqa (stock ops; servable by an
unmodified tensorflow_model_server), realm_openqa_scann (ScaNN ops; `python -m serving.server`),
realm_query_embedder, realm_doc_embedder, realm_searcher[_scann], realm_reader. Each version is
published by an atomic rename, so a running server picks it up whole. The ScaNN models of an
index imported from Google's release serve the import's own searcher (ORQA's settings); see
--scann_source. Prints a JSON summary of the exported paths and the ScaNN searcher; bad input
ends the run with a one-line `error: ...` naming the cause, exit status 2
(realm_tf/utils/command_line.py). The job itself is realm_tf.stages.export_job
(`run(ExportConfig)`).
"""
import json

from absl import flags

from realm_tf.utils import command_line

FLAGS = flags.FLAGS

HELP = {
    "work_dir": "The work directory: its finetune/ run is exported to its serving/.",
    "model_dir": "Fine-tuning model_dir (config.json + checkpoints/; default "
                 "<work_dir>/finetune unless --init).",
    "init": "Instead of --model_dir: weights for the query tower / reader (a fine-tuning "
            "model_dir, REALM pre-training model_dir, embedder export or converted checkpoint); "
            "the query tower's shape follows the index bundle.",
    "reader_init": "With --init: where the reader encoder comes from, if elsewhere.",
    "index_dir": "Index bundle directory (newest version used). Default: the bundle the "
                 "model_dir was fine-tuned with; with --init, <work_dir>/index.",
    "corpus_dir": "Block corpus of the index. Default: the one recorded in the model_dir; with "
                  "--init, <work_dir>/corpus.",
    "export_base": "TF Serving base directory for <model>/<version>/ (default "
                   "<work_dir>/serving).",
    "version": "Version number (default: one more than the newest version of any exported "
               "model; nothing is exported when the last export read the same checkpoint and "
               "index bundle with the same settings).",
    "variant": "MIPS variant of realm_openqa / realm_searcher.",
    "components": "Which models: {names}, or all.",  # names: components.COMPONENTS
    "num_answers": "Answers returned per question (A).",
    "max_candidates": "Best spans considered before dropping repeated answer strings "
                      "(>= num_answers).",
    "reader_beam_size": "Blocks read per question (default: the model's).",
    "searcher_k": "Neighbours returned by realm_searcher's serving_default.",
    "scann_mode": "ScaNN configuration of the ScaNN variants when their searcher is built "
                  "(auto: by corpus size).",
    "scann_source": "The ScaNN variants' searcher: bundle (the index bundle's own ScaNN "
                    "searcher, as it is), build (a new one by --scann_mode) or auto (an index "
                    "imported by import_release: its own searcher, ORQA's settings, or with an "
                    "exact import one built with the import's ScaNN settings; any other index, "
                    "or --scann_mode other than auto: build).",
    "warmup_questions": "Questions for the warm-up requests (repeatable; default: a few generic "
                        "questions).",
}
# ExportConfig fields whose flags differ from a plain field: two enums, a repeatable string
# named in the singular, and the warm starts named as in every CLI (--init, --*_init).
_FLAG_NAMES = {"warmup_questions": "warmup_question", "init_checkpoint": "init",
               "reader_init_checkpoint": "reader_init"}
# Flags renamed: {old name: new name}; the old names still work and print a deprecation notice.
RENAMED = {"init_checkpoint": "init", "reader_init_checkpoint": "reader_init"}


def define_flags(flag_values=flags.FLAGS):
  """The export flags: one per ExportConfig field and --work_dir; --variant and --scann_mode are
  enums, --warmup_question is repeatable.

  Called from `__main__` only (and by tests on a fresh FlagValues), so importing this module
  defines no flag.
  """
  from realm_tf.export import components  # pylint: disable=g-import-not-at-top
  from realm_tf.export import mips  # pylint: disable=g-import-not-at-top
  from realm_tf.io import work_dir  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import export_job  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import validators  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import scann_searcher  # pylint: disable=g-import-not-at-top
  help_texts = dict(HELP, components=HELP["components"].format(names=", ".join(
      components.COMPONENTS)))
  help_texts["warmup_question"] = help_texts.pop("warmup_questions")
  flags.DEFINE_string("work_dir", work_dir.DEFAULT_ROOT, HELP["work_dir"],
                      flag_values=flag_values)
  config_flags.define_config_flags(
      export_job.ExportConfig, help_texts, flag_values=flag_values, names=_FLAG_NAMES,
      multi=("warmup_questions",),
      choices={"variant": export_job.VARIANT_CHOICES, "scann_mode": scann_searcher.MODES,
               "scann_source": mips.SCANN_SOURCES})
  config_flags.define_deprecated_aliases(RENAMED, flag_values)
  validators.register(flag_values, init=validators.warm_start("--init"),
                      reader_init=validators.warm_start("--reader_init"))
  validators.register_ranges(flag_values)
  validators.register_multi(flag_values, ["num_answers", "max_candidates"],
                            validators.at_most("num_answers", "max_candidates"))


def config_from_flags(flag_values=flags.FLAGS):
  """The ExportConfig the parsed flags describe, the paths not given from --work_dir."""
  from realm_tf.io import work_dir  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import export_job  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  fv = flag_values
  layout = work_dir.WorkDir(fv.work_dir)
  paths = {"export_base": fv.export_base or layout.serving}
  if fv.init:  # warm-start weights over the work dir's index and corpus
    paths.update(index_dir=fv.index_dir or layout.index, corpus_dir=fv.corpus_dir or layout.corpus)
  elif not fv.model_dir:
    paths["model_dir"] = layout.finetune
  return config_flags.config_from_flags(export_job.ExportConfig, fv, names=_FLAG_NAMES,
                                        **paths)


def main(argv):
  """Exports the models the flags name and prints their paths (JSON); raises on bad input."""
  del argv
  from realm_tf.stages import export_job  # pylint: disable=g-import-not-at-top
  # One exporter per serving base: the stage holds its lock (readers, such as the model server,
  # take none).
  print(json.dumps(export_job.run(config_from_flags()), indent=2, sort_keys=True))


def user_errors():
  """Export's bad-input errors beyond command_line.USER_ERRORS: its own ValueErrors (flag
  combinations, --components, --max_candidates) and checkpoints whose shapes do not fit the
  model."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return (ValueError, tf.errors.InvalidArgumentError)


if __name__ == "__main__":
  define_flags()
  command_line.run(main, user_errors=user_errors())
