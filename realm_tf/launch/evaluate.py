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
import os
import time

from absl import flags, logging

from realm_tf.launch import cli

FLAGS = flags.FLAGS


def define_flags(flag_values=flags.FLAGS):
  """Defines the evaluation flags: the model_dir, the questions, the retriever and the outputs
  (`openqa.evaluate` takes no config dataclass, so they are written by hand).

  Called from `__main__` only (and by tests on a fresh FlagValues), so importing this module
  defines no flag.
  """
  fv = flag_values
  flags.DEFINE_string("model_dir", None, "Fine-tuning model_dir (config.json + checkpoints/).",
                      flag_values=fv)
  flags.DEFINE_string("dataset", "squad_open", "nq_open_orqa | web_questions_orqa | "
                      "curated_trec_orqa | squad_open (or nq, nq_dpr, wq, ct) | jsonl:<path>.",
                      flag_values=fv)
  flags.DEFINE_string("split", "test", "Split to evaluate (train | dev | test; not used by "
                      "jsonl:<path>).", flag_values=fv)
  flags.DEFINE_bool("strict", False, "Stop on a malformed line of a jsonl:<path> dataset instead "
                    "of skipping it.", flag_values=fv)
  flags.DEFINE_enum("retriever", "dense", ["dense", "bm25"], "Blocks the reader reads: the "
                    "fine-tuned query tower's (dense) or BM25's over the same corpus blocks.",
                    flag_values=fv)
  flags.DEFINE_string("index_dir", None, "Index bundles (default: the bundle fine-tuning used).",
                      flag_values=fv)
  flags.DEFINE_string("corpus_dir", None, "Block corpus (default: the one fine-tuning used).",
                      flag_values=fv)
  flags.DEFINE_string("data_dir", None, "TFDS data_dir.", flag_values=fv)
  flags.DEFINE_string("manual_dir", None, "Folder with the dataset source files (default: "
                      "shipped).", flag_values=fv)
  flags.DEFINE_integer("batch_size", 8, "Questions per model call.", flag_values=fv)
  flags.DEFINE_list("recall_ks", ["1", "5", "10", "20"], "k of retrieval recall@k.",
                    flag_values=fv)
  flags.DEFINE_integer("max_examples", None, "Evaluate only the first N questions.",
                       flag_values=fv)
  flags.DEFINE_string("output_prefix", None, "Path prefix of the .json/.jsonl outputs.",
                      flag_values=fv)
  flags.mark_flags_as_required(["model_dir"], flag_values=fv)


def main(argv):
  """Evaluates the model_dir on the flags' questions; writes and prints the metrics."""
  del argv
  from realm_tf.openqa import datasets  # pylint: disable=g-import-not-at-top
  from realm_tf.openqa import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.openqa import finetune  # pylint: disable=g-import-not-at-top
  from realm_tf.data.corpus import write_json_atomic  # pylint: disable=g-import-not-at-top

  t0 = time.time()
  datasets.check_dataset(FLAGS.dataset)
  model, _, bundle = finetune.load_finetuned(FLAGS.model_dir, FLAGS.index_dir, FLAGS.corpus_dir)
  examples = datasets.load_examples(FLAGS.dataset, FLAGS.split, FLAGS.data_dir,
                                    FLAGS.manual_dir, FLAGS.max_examples, strict=FLAGS.strict)
  suffix = "-bm25" if FLAGS.retriever == "bm25" else ""
  prefix = FLAGS.output_prefix or os.path.join(
      FLAGS.model_dir, "eval", f"{datasets.dataset_tag(FLAGS.dataset)}-{FLAGS.split}{suffix}")
  result = evaluate_lib.evaluate(model, examples, FLAGS.batch_size,
                                 [int(k) for k in FLAGS.recall_ks],
                                 predictions_path=prefix + ".jsonl", retriever=FLAGS.retriever)
  result.update({"dataset": FLAGS.dataset, "split": FLAGS.split, "model_dir": FLAGS.model_dir,
                 "index_bundle": bundle.path, "predictions": prefix + ".jsonl",
                 "wall_seconds": round(time.time() - t0, 1)})
  os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
  write_json_atomic(prefix + ".json", result)
  logging.info("Evaluation written to %s.json (%d examples, %.0f s).", prefix,
               result.get("num_examples", 0), result["wall_seconds"])
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
