r"""Open-QA evaluation of a fine-tuned model: EM (regex match for CuratedTREC), recall@k, JSONL.

  python -m realm_tf.launch.evaluate --model_dir=runs/nq --dataset=nq_open_orqa --split=test

Writes `<model_dir>/eval/<dataset>-<split>.json` (metrics) and `.jsonl` (one line per question:
prediction, probability, correctness, evidence blocks with id, title, text, retrieval score and
whether they contain an answer), unless --output_prefix says otherwise. The index and corpus
default to the ones fine-tuning used (recorded in <model_dir>/config.json).
"""
import json
import os
import time

from absl import app, flags, logging

flags.DEFINE_string("model_dir", None, "Fine-tuning model_dir (config.json + checkpoints/).")
flags.DEFINE_string("dataset", "squad_open", "nq_open_orqa | web_questions_orqa | "
                    "curated_trec_orqa | squad_open (or nq, nq_dpr, wq, ct).")
flags.DEFINE_string("split", "test", "Split to evaluate (train | dev | test).")
flags.DEFINE_string("index_dir", None, "Index bundles (default: the bundle fine-tuning used).")
flags.DEFINE_string("corpus_dir", None, "Block corpus (default: the one fine-tuning used).")
flags.DEFINE_string("data_dir", None, "TFDS data_dir.")
flags.DEFINE_string("manual_dir", None, "Folder with the dataset source files (default: shipped).")
flags.DEFINE_integer("batch_size", 8, "Questions per model call.")
flags.DEFINE_list("recall_ks", ["1", "5", "10", "20"], "k of retrieval recall@k.")
flags.DEFINE_integer("max_examples", None, "Evaluate only the first N questions.")
flags.DEFINE_string("output_prefix", None, "Path prefix of the .json/.jsonl outputs.")
flags.mark_flags_as_required(["model_dir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from realm_tf.openqa import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.openqa import finetune  # pylint: disable=g-import-not-at-top
  from realm_tf.data.corpus import write_json_atomic  # pylint: disable=g-import-not-at-top

  t0 = time.time()
  model, _, bundle = finetune.load_finetuned(FLAGS.model_dir, FLAGS.index_dir, FLAGS.corpus_dir)
  examples = finetune.load_examples(FLAGS.dataset, FLAGS.split, FLAGS.data_dir, FLAGS.manual_dir,
                                    FLAGS.max_examples)
  prefix = FLAGS.output_prefix or os.path.join(
      FLAGS.model_dir, "eval", f"{FLAGS.dataset.replace('/', '_')}-{FLAGS.split}")
  result = evaluate_lib.evaluate(model, examples, FLAGS.batch_size,
                                 [int(k) for k in FLAGS.recall_ks],
                                 predictions_path=prefix + ".jsonl")
  result.update({"dataset": FLAGS.dataset, "split": FLAGS.split, "model_dir": FLAGS.model_dir,
                 "index_bundle": bundle.path, "predictions": prefix + ".jsonl",
                 "wall_seconds": round(time.time() - t0, 1)})
  os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
  write_json_atomic(prefix + ".json", result)
  logging.info("Evaluation: %s", result)
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  app.run(main)
