r"""The evaluator of the local launcher: measures zero-shot recall@5 of every new index bundle.

  python -m realm_tf.launch.watch_recall --work_dir=runs/local
  python -m realm_tf.launch.watch_recall --work_dir=runs/local --wait_pid=12345  # the refresher

Polls `<index_dir>` with back-off, evaluates each new bundle once (SQuAD-open dev questions
against their gold paragraphs when the corpus is the default one; and own-block recall of masked
sentences, ICT's task, which is not REALM's progress: the trainer itself logs the held-out
retrieval utility at every bundle it switches to),
appends a line to `<work_dir>/recall.jsonl`, and writes TensorBoard scalars. Bundles already
recorded in `recall.jsonl` are not measured again, so a restarted evaluator resumes. The loop is
realm_tf.evaluation.recall_watcher (`watch(WatchConfig)`); its flags are WatchConfig's fields.

It exits (status 0) once the trainer's `<model_dir>/TRAINING_DONE` exists and either
  * the newest bundle was built from the trainer's final embedder export (and is evaluated), or
  * the process `--wait_pid` (the index-refresh job) has exited, so no bundle can follow, or
  * `--final_wait_seconds` have passed since TRAINING_DONE appeared without the final bundle.
"""
from absl import flags

from realm_tf.utils import command_line

HELP = {
    "work_dir": "The pretrain job's work directory.",
    "model_dir": "Trainer directory (default <work_dir>/realm).",
    "index_dir": "Index bundles (default <work_dir>/index).",
    "corpus_dir": "Block corpus (default <work_dir>/corpus).",
    "annotations_dir": "Annotations (default <work_dir>/annotations).",
    "eval_queries": "Queries per measurement.",
    "squad": "Also measure SQuAD-question recall (default corpus only).",
    "min_poll_seconds": "Shortest sleep between polls.",
    "max_poll_seconds": "Longest sleep between polls.",
    "wait_pid": "Process id of the index-refresh job: once training is done and it has exited, "
                "no new bundle can appear and the evaluator stops.",
    "final_wait_seconds": "After TRAINING_DONE, stop waiting for the bundle of the final export "
                          "after this long.",
}


def define_flags(flag_values=flags.FLAGS):
  """Defines the evaluator's flags: one per WatchConfig field.

  Called from `__main__` only (and by tests on a fresh FlagValues), so importing this module
  defines no flag.
  """
  from realm_tf.evaluation import recall_watcher  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.define_config_flags(recall_watcher.WatchConfig, HELP, flag_values=flag_values)
  from realm_tf.launch import validators  # pylint: disable=g-import-not-at-top
  validators.register_ranges(flag_values)
  validators.register_multi(flag_values, ["min_poll_seconds", "max_poll_seconds"],
                            validators.at_most("min_poll_seconds", "max_poll_seconds"))


def main(argv):
  """Runs the evaluator the flags describe until training is done."""
  del argv
  from realm_tf.evaluation import recall_watcher  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  recall_watcher.watch(config_flags.config_from_flags(recall_watcher.WatchConfig))


if __name__ == "__main__":
  define_flags()
  command_line.run(main)
