r"""Open-QA evaluation of a fine-tuned model: EM (regex match for CuratedTREC), recall@k, JSONL.

  python -m realm_tf.launch.evaluate --model_dir=runs/nq --dataset=nq_open_orqa --split=test
  # the same reader behind BM25 over the same blocks; your own questions:
  python -m realm_tf.launch.evaluate --model_dir=runs/nq --dataset=jsonl:my_questions.jsonl \
      --retriever=bm25

Writes `<model_dir>/eval/<dataset>-<split>.json` (`-bm25` appended for --retriever=bm25; a
jsonl:<path> dataset is named `jsonl_<file name>`) with the metrics, and `.jsonl` (one line per
question: prediction, probability, correctness, evidence blocks with id, title, text, retrieval
score and whether they contain an answer), unless --output_prefix says otherwise. The index and
corpus default to the ones fine-tuning used (recorded in <model_dir>/config.json). A bad
--dataset, a missing model_dir, or a malformed question line with --strict, ends the run with a
one-line `error: ...`, exit status 2 (realm_tf/launch/cli.py).
"""
import json

from absl import flags

from realm_tf.launch import cli

FLAGS = flags.FLAGS

HELP = {
    "model_dir": "Fine-tuning model_dir (config.json + checkpoints/).",
    "dataset": "nq_open_orqa | web_questions_orqa | curated_trec_orqa | squad_open (or nq, "
               "nq_dpr, wq, ct) | jsonl:<path>.",
    "split": "Split to evaluate (train | dev | test; not used by jsonl:<path>).",
    "strict": "Stop on a malformed line of a jsonl:<path> dataset instead of skipping it.",
    "retriever": "Blocks the reader reads: the fine-tuned query tower's (dense) or BM25's over "
                 "the same corpus blocks.",
    "index_dir": "Index bundles (default: the bundle fine-tuning used).",
    "corpus_dir": "Block corpus (default: the one fine-tuning used).",
    "data_dir": "TFDS data_dir.",
    "manual_dir": "Folder with the dataset source files (default: shipped).",
    "batch_size": "Questions per model call.",
    "recall_ks": "k of retrieval recall@k.",
    "max_examples": "Evaluate only the first N questions.",
    "output_prefix": "Path prefix of the .json/.jsonl outputs.",
}


def define_flags(flag_values=flags.FLAGS):
  """Defines one flag per field of `stages.evaluate.EvaluateConfig` (--retriever an enum,
  --model_dir required).

  Called from `__main__` only (and by tests on a fresh FlagValues), so importing this module
  defines no flag.
  """
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import evaluate  # pylint: disable=g-import-not-at-top
  config_flags.define_config_flags(evaluate.EvaluateConfig, HELP, flag_values=flag_values,
                                   required=("model_dir",),
                                   choices={"retriever": evaluate.RETRIEVERS})


def config_from_flags(flag_values=flags.FLAGS):
  """The EvaluateConfig the parsed flags describe."""
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import evaluate  # pylint: disable=g-import-not-at-top
  return config_flags.config_from_flags(evaluate.EvaluateConfig, flag_values)


def main(argv):
  """Evaluates the model_dir on the flags' questions; writes and prints the metrics."""
  del argv
  from realm_tf.stages import evaluate  # pylint: disable=g-import-not-at-top
  print(json.dumps(evaluate.run(config_from_flags()), indent=2))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
