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

FLAGS = flags.FLAGS

HELP = {
    # FinetuneConfig
    "dataset": "nq_open_orqa | nq_open_orqa/dpr | web_questions_orqa | curated_trec_orqa | "
               "squad_open (or nq, nq_dpr, wq, ct) | jsonl:<path>.",
    "split": "Training split (not used by jsonl:<path>).",
    "batch_size": "Global batch size (questions).",
    "num_train_steps": "Training steps.",
    "learning_rate": "Peak learning rate.",
    "retriever_lr_multiplier": "The query tower's learning rate as a multiple of "
                               "--learning_rate (1.0 = ORQA: one rate for reader and retriever).",
    "warmup_steps": "Warm-up steps (default 10% of the run).",
    "seed": "Seed of shuffling, model initialisation and dropout.",
    "checkpoint_every": "Steps between checkpoints.",
    "log_every": "Steps between progress lines.",
    "max_train_examples": "Use only the first N training questions.",
    "reader_positives": "What the reader reads when none of its blocks bears an answer: the "
                        "beam's best answer-bearing block, the gold document's (else the beam's), "
                        "or nothing (ORQA's zero loss).",
    "retrieval_score_scale": "Multiplies the warm-started query tower's output (every retrieval "
                             "logit). 1.0 = ORQA; ~20/d for an index built by a sentence encoder "
                             "of width d (0.05 for MiniLM).",
    # OpenQAConfig
    "reader_beam_size": "Blocks read per question.",
    "train_reader_beam_size": "Blocks read per question in training (default "
                              "--reader_beam_size); fewer trains faster.",
    "retriever_beam_size": "Blocks in the retriever loss (capped at the corpus size).",
    # ReaderConfig
    "reader_encoder": "Reader encoder preset when the init checkpoint has no reader "
                      "(tiny|mini|minilm|base).",
    "span_hidden_size": "Span MLP width (ORQA: 256).",
    "max_span_width": "Longest answer span in wordpieces.",
    "reader_seq_length": "[CLS] question [SEP] block [SEP] length.",
    "reader_query_length": "[CLS] question [SEP] part of the reader input.",
    # FinetuneJobConfig
    "index_dir": "Index bundles; the newest is used, frozen.",
    "corpus_dir": "Block corpus the index was built from.",
    "model_dir": "Checkpoints, config.json, summaries.",
    "init_checkpoint": "REALM model_dir, embedder export, converted checkpoint or fine-tuning "
                       "model_dir to warm-start from.",
    "reader_init_checkpoint": "Where the reader BERT comes from instead (REALM model_dir or "
                              "converted checkpoint).",
    "data_dir": "TFDS data_dir.",
    "manual_dir": "Folder with the dataset source files (default: shipped).",
    "strict": "Stop on a malformed line of a jsonl:<path> dataset instead of skipping it.",
}
# Config fields with no flag: the nested configs (their own flags), settings the command line
# does not expose, and FinetuneJobConfig.jit_compile (a distribution flag, defined there).
_FINETUNE_SKIP = ("model", "clip_norm", "regex_search_blocks")
_MODEL_SKIP = ("retriever", "reader", "max_answers", "max_answer_length")
_JOB_SKIP = ("finetune", "jit_compile")
# Flags named otherwise than their fields: the reader's under a reader_ prefix (beside the
# retriever's), the split as in evaluate.
_FINETUNE_NAMES = {"train_split": "split"}
_READER_NAMES = {"encoder": "reader_encoder", "seq_length": "reader_seq_length",
                 "query_length": "reader_query_length"}
# The command line's default dataset is the shipped SQuAD set, so that a first run needs no other
# files.
_FINETUNE_DEFAULTS = {"dataset": "squad_open"}


def define_flags(flag_values=flags.FLAGS):
  """Defines the fine-tuning flags: one per FinetuneConfig / OpenQAConfig / ReaderConfig setting,
  one per FinetuneJobConfig field (the run's inputs and outputs), and the distribution flags.

  Called from `__main__` only (and by tests on a fresh FlagValues), so importing this module
  defines no flag.
  """
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import distribution_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.reader import ReaderConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import finetune  # pylint: disable=g-import-not-at-top
  from realm_tf.openqa import model  # pylint: disable=g-import-not-at-top
  fv = flag_values
  config_flags.define_config_flags(
      finetune.FinetuneConfig, HELP, skip=_FINETUNE_SKIP, names=_FINETUNE_NAMES,
      defaults=_FINETUNE_DEFAULTS, choices={"reader_positives": model.READER_POSITIVES},
      flag_values=fv)
  config_flags.define_config_flags(model.OpenQAConfig, HELP, skip=_MODEL_SKIP, flag_values=fv)
  config_flags.define_config_flags(ReaderConfig, HELP, names=_READER_NAMES, flag_values=fv)
  config_flags.define_config_flags(finetune.FinetuneJobConfig, HELP, skip=_JOB_SKIP,
                                   required=("index_dir", "corpus_dir", "model_dir"),
                                   flag_values=fv)
  distribution_flags.define_flags(fv)


def config_from_flags(flag_values=flags.FLAGS):
  """The FinetuneConfig (with its OpenQAConfig and ReaderConfig) the parsed flags describe."""
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.reader import ReaderConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import finetune  # pylint: disable=g-import-not-at-top
  from realm_tf.openqa import model  # pylint: disable=g-import-not-at-top
  fv = flag_values
  reader = config_flags.config_from_flags(ReaderConfig, fv, names=_READER_NAMES)
  openqa = config_flags.config_from_flags(model.OpenQAConfig, fv, skip=_MODEL_SKIP, reader=reader)
  return config_flags.config_from_flags(finetune.FinetuneConfig, fv, skip=_FINETUNE_SKIP,
                                        names=_FINETUNE_NAMES, model=openqa)


def job_from_flags(flag_values=flags.FLAGS):
  """The FinetuneJobConfig the parsed flags describe: `config_from_flags` and where to run it."""
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import finetune  # pylint: disable=g-import-not-at-top
  return config_flags.config_from_flags(
      finetune.FinetuneJobConfig, flag_values, finetune=config_from_flags(flag_values),
      jit_compile=flag_values.jit_compile)


def main(argv):
  """Fine-tunes as the flags say; prints the last step's scalars and where the checkpoints are."""
  del argv
  from realm_tf.launch import distribution_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.openqa import datasets  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import finetune  # pylint: disable=g-import-not-at-top

  t0 = time.time()
  datasets.check_dataset(FLAGS.dataset)  # a DatasetError: one line, exit status 2 (cli.run)
  strategy = distribution_flags.strategy_from_flags()
  job = job_from_flags()
  result = finetune.run(job, strategy)
  result["wall_seconds"] = round(time.time() - t0, 1)
  logging.info("Fine-tuning done in %.0f s.", result["wall_seconds"])
  print(json.dumps({k: v for k, v in result.items() if k != "progress_line"}, indent=2,
                   default=str))
  print(f"Checkpoints in {os.path.join(job.model_dir, 'checkpoints')}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
