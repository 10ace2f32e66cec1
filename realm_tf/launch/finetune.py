r"""Open-QA fine-tuning (ORQA recipe on a REALM checkpoint): query tower + reader, frozen index.

  python -m realm_tf.launch.finetune --dataset=nq_open_orqa \
      --index_dir=runs/default/index --corpus_dir=runs/default/corpus \
      --init_checkpoint=runs/default/realm --model_dir=runs/nq

  # TPU, the paper's reader size (a converted BERT-base/REALM checkpoint):
  python -m realm_tf.launch.finetune --tpu=my-tpu --dataset=web_questions_orqa ... \
      --batch_size=32 --num_train_steps=5000

Datasets: nq_open_orqa (train/dev need NQ-open.train.jsonl in --manual_dir, or use
nq_open_orqa/dpr), web_questions_orqa, curated_trec_orqa (regex answers), squad_open (the shipped
SQuAD v1.1 dev set split by article), or jsonl:<path> (your own questions, one JSON object a line:
{"question": ..., "answers": [...]}, optional "answer_regex", "id", "doc_id"; malformed lines are
skipped with a warning naming file:line, or stop the run with --strict). TFDS datasets are built
offline from the files shipped in tfds_builders/ unless --manual_dir points elsewhere.

--reader_positives: what the reader reads when none of its blocks bears an answer: `beam` (the
retriever beam's best answer-bearing block, in the last slot), `gold` (the gold document's block
where the dataset knows it, as squad_open does; else beam) or `none` (ORQA: zero reader loss).

--init_checkpoint: a REALM pre-training model_dir (query tower ← retriever, reader BERT ← the
knowledge-augmented encoder), an embedder export (query tower only), a converted checkpoint
(realm_tf.launch.convert_checkpoint), or another fine-tuning model_dir. Without it, the query
tower starts from the index bundle's own query embedder. Re-running resumes from --model_dir.
"""
import json
import os
import time

from absl import flags, logging

from realm_tf.launch import cli
from realm_tf.launch import distribution_flags

flags.DEFINE_string("dataset", "squad_open", "nq_open_orqa | nq_open_orqa/dpr | web_questions_orqa "
                    "| curated_trec_orqa | squad_open (or nq, nq_dpr, wq, ct) | jsonl:<path>.")
flags.DEFINE_string("split", "train", "Training split (not used by jsonl:<path>).")
flags.DEFINE_bool("strict", False, "Stop on a malformed line of a jsonl:<path> dataset instead of "
                  "skipping it.")
flags.DEFINE_enum("reader_positives", "beam", ["beam", "gold", "none"],
                  "What the reader reads when none of its blocks bears an answer: the beam's "
                  "best answer-bearing block, the gold document's (else the beam's), or nothing "
                  "(ORQA's zero loss).")
flags.DEFINE_string("index_dir", None, "Index bundles; the newest is used, frozen.")
flags.DEFINE_string("corpus_dir", None, "Block corpus the index was built from.")
flags.DEFINE_string("init_checkpoint", None, "REALM model_dir, embedder export, converted "
                    "checkpoint or fine-tuning model_dir to warm-start from.")
flags.DEFINE_string("reader_init_checkpoint", None, "Where the reader BERT comes from instead "
                    "(REALM model_dir or converted checkpoint).")
flags.DEFINE_string("model_dir", None, "Checkpoints, config.json, summaries.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir.")
flags.DEFINE_string("manual_dir", None, "Folder with the dataset source files (default: shipped).")
flags.DEFINE_string("reader_encoder", "tiny", "Reader encoder preset when the init checkpoint "
                    "has no reader (tiny|mini|minilm|base).")
flags.DEFINE_integer("span_hidden_size", 256, "Span MLP width (ORQA: 256).")
flags.DEFINE_integer("reader_seq_length", 320, "[CLS] question [SEP] block [SEP] length.")
flags.DEFINE_integer("reader_query_length", 64, "[CLS] question [SEP] part of the reader input.")
flags.DEFINE_integer("max_span_width", 10, "Longest answer span in wordpieces.")
flags.DEFINE_integer("reader_beam_size", 5, "Blocks read per question.")
flags.DEFINE_integer("train_reader_beam_size", None, "Blocks read per question in training "
                     "(default --reader_beam_size); fewer trains faster.")
flags.DEFINE_integer("retriever_beam_size", 5000, "Blocks in the retriever loss (capped at the "
                     "corpus size).")
flags.DEFINE_float("retrieval_score_scale", 1.0, "Multiplies the warm-started query tower's "
                   "output (every retrieval logit). 1.0 = ORQA; ~20/d for an index built by a "
                   "sentence encoder of width d (0.05 for MiniLM).")
flags.DEFINE_integer("batch_size", 8, "Global batch size (questions).")
flags.DEFINE_integer("num_train_steps", 1000, "Training steps.")
flags.DEFINE_float("learning_rate", 1e-5, "Peak learning rate.")
flags.DEFINE_integer("warmup_steps", None, "Warm-up steps (default 10% of the run).")
flags.DEFINE_integer("checkpoint_every", 200, "Steps between checkpoints.")
flags.DEFINE_integer("log_every", 10, "Steps between progress lines.")
flags.DEFINE_integer("max_train_examples", None, "Use only the first N training questions.")
flags.DEFINE_integer("seed", 0, "Shuffling seed.")
flags.mark_flags_as_required(["index_dir", "corpus_dir", "model_dir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from realm_tf.modeling.reader import ReaderConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.openqa import datasets  # pylint: disable=g-import-not-at-top
  from realm_tf.openqa import finetune  # pylint: disable=g-import-not-at-top
  from realm_tf.openqa.model import OpenQAConfig  # pylint: disable=g-import-not-at-top

  t0 = time.time()
  datasets.check_dataset(FLAGS.dataset)  # a DatasetError: one line, exit status 2 (cli.run)
  strategy = distribution_flags.strategy_from_flags()
  reader = ReaderConfig(encoder=FLAGS.reader_encoder, span_hidden_size=FLAGS.span_hidden_size,
                        max_span_width=FLAGS.max_span_width, seq_length=FLAGS.reader_seq_length,
                        query_length=FLAGS.reader_query_length)
  config = finetune.FinetuneConfig(
      model=OpenQAConfig(reader=reader, reader_beam_size=FLAGS.reader_beam_size,
                         train_reader_beam_size=FLAGS.train_reader_beam_size,
                         retriever_beam_size=FLAGS.retriever_beam_size),
      dataset=FLAGS.dataset, train_split=FLAGS.split, batch_size=FLAGS.batch_size,
      num_train_steps=FLAGS.num_train_steps, learning_rate=FLAGS.learning_rate,
      warmup_steps=FLAGS.warmup_steps, seed=FLAGS.seed, checkpoint_every=FLAGS.checkpoint_every,
      log_every=FLAGS.log_every, max_train_examples=FLAGS.max_train_examples,
      reader_positives=FLAGS.reader_positives,
      retrieval_score_scale=FLAGS.retrieval_score_scale)
  result = finetune.run_finetune(
      config, FLAGS.index_dir, FLAGS.corpus_dir, FLAGS.model_dir,
      init_checkpoint=FLAGS.init_checkpoint,
      reader_init_checkpoint=FLAGS.reader_init_checkpoint, strategy=strategy,
      data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir, jit_compile=FLAGS.jit_compile,
      strict=FLAGS.strict)
  result["wall_seconds"] = round(time.time() - t0, 1)
  logging.info("Fine-tuning done in %.0f s.", result["wall_seconds"])
  print(json.dumps({k: v for k, v in result.items() if k != "progress_line"}, indent=2,
                   default=str))
  print(f"Checkpoints in {os.path.join(FLAGS.model_dir, 'checkpoints')}")


if __name__ == "__main__":
  cli.run(main)
