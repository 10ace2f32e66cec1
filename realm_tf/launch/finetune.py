r"""Open-QA fine-tuning (ORQA recipe on REALM's retriever): query tower + reader, frozen index.

  python -m realm_tf.launch.finetune --work_dir=runs/mine --dataset=jsonl:my_qa.jsonl
  python -m realm_tf.launch.finetune --work_dir=runs/mine --dataset=squad_open \
      --flagfile=launch/configs/finetune_cpu.flags   # the defaults, written out

  # TPU, the paper's reader size (a converted BERT-base/REALM checkpoint):
  python -m realm_tf.launch.finetune --tpu=my-tpu --work_dir=gs://b/realm \
      --dataset=web_questions_orqa --init=gs://b/realm/realm --reader_init= \
      --batch_size=32 --num_train_steps=5000

Everything comes from the pre-training work dir: the newest index bundle in <work_dir>/index (used
frozen), the corpus in <work_dir>/corpus, and the run goes to <work_dir>/finetune (--index_dir,
--corpus_dir and --model_dir override each). Re-running resumes from the run's checkpoints.

The defaults are the recipe measured on 2 CPU cores (the demo's): a MiniLM reader (--reader_init)
that reads one block per training question, the gold document's block when retrieval misses it,
400 steps of 16 questions at 3e-4, the query tower at a third of that rate, 256 blocks in the
retriever's loss. launch/configs/finetune_cpu.flags writes them out. Behind BM25 the reader reads
--reader_beam_size blocks per training question instead (below).

--dataset (required): nq_open_orqa (train/dev need NQ-open.train.jsonl in --manual_dir, or use
nq_open_orqa/dpr), web_questions_orqa, curated_trec_orqa (regex answers), squad_open (the shipped
SQuAD v1.1 dev set split by article), jsonl:<path> (your own questions, one JSON object a line:
{"question": ..., "answers": [...]}, optional "answer_regex", "id", "doc_id" (the document the
answer is in: the `id` of a JSONL document); NQ-open's "answer" reads as "answers"), dpr_qa:<path>
(DPR's *.qa.csv: question \t ['answer', ...]) or beir:<dir>[:<split>] (BEIR queries.jsonl and
qrels/<split>.tsv: no answers, for retrieval-only evaluation); malformed lines are skipped with a
warning naming file:line, or stop the run with --strict). TFDS datasets are built offline from the
files shipped in tfds_builders/ unless --manual_dir points elsewhere. A bad name is a one-line
error before any work (exit status 2).

--reader_positives: what the reader reads when none of its blocks bears an answer: `beam` (the
retriever beam's best answer-bearing block, in the last slot), `gold` (the gold document's block
where the dataset knows it, as squad_open and a jsonl "doc_id" do; else beam) or `none` (ORQA:
zero reader loss).

--retriever=bm25: fine-tune the reader behind BM25 instead (the BM25 + reader baseline): it reads
BM25's top k blocks of each question over the same corpus blocks (k = --train_reader_beam_size,
by default --reader_beam_size: the blocks evaluation reads), with ONE softmax over the spans of
all k blocks (the marginal over the gold spans across them), no retrieval logit and no retriever
loss; `evaluate --retriever=bm25` then reads it the same way. Without a retrieval logit the reader
itself must choose among the blocks, so it is trained on the k it is scored on; with one block
(the dense recipe's default) and gold positives it would only ever see answer-bearing blocks.

--init: the whole model's initial weights: a REALM pre-training model_dir (query tower ← retriever,
reader BERT ← the knowledge-augmented encoder), an embedder export (query tower only), a converted
checkpoint (realm_tf.launch.convert_checkpoint), or another fine-tuning model_dir. Without it the
query tower starts from the index bundle's own query embedder (REALM's last, after pre-training).
--reader_init then sets the reader's start ('minilm' by default; empty: --init's reader).

--retrieval_score_scale: the retrieval scores' scale (a softmax temperature of 1/scale). By default
the index bundle's own: REALM's pre-training records in its exports the scale it applied (0.05 for
the main job's MiniLM retriever), so it is never applied twice. A value is the total scale.
"""
import dataclasses
import json
import os
import time

from absl import flags, logging

from realm_tf.utils import command_line

FLAGS = flags.FLAGS

HELP = {
    # FinetuneConfig
    "dataset": "Questions to train on (required): nq_open_orqa | nq_open_orqa/dpr | "
               "web_questions_orqa | curated_trec_orqa | squad_open (or nq, nq_dpr, wq, ct) | "
               "jsonl:<path> | dpr_qa:<path> (DPR's *.qa.csv); not beir:<dir> (no answers "
               "to train on).",
    "split": "Training split (not used by jsonl:<path> or dpr_qa:<path>).",
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
    "retrieval_score_scale": "Scale of every retrieval score (a softmax temperature of 1/scale), "
                             "in total. Default: the index bundle's own (what REALM pre-training "
                             "applied, recorded in its exports: 0.05 for the main job's MiniLM "
                             "retriever; 1 after ICT alone), so it is never applied twice. "
                             "~20/d suits an index of a sentence encoder of width d.",
    "retriever": "Where the blocks the reader reads in training come from: dense (the query "
                 "tower's beam, ORQA) or bm25 (BM25's top rows over the same blocks: the BM25 + "
                 "reader baseline; no retrieval logit, no retriever loss).",
    # OpenQAConfig
    "reader_beam_size": "Blocks read per question.",
    "train_reader_beam_size": "Blocks read per question in training, in one softmax over their "
                              "spans (default: 1 behind the dense retriever, the 2-core recipe; "
                              "--reader_beam_size behind BM25, the blocks evaluation reads); "
                              "fewer trains faster.",
    "retriever_beam_size": "Blocks in the retriever loss (capped at the corpus size).",
    # ReaderConfig
    "reader_preset": "Reader encoder preset when neither --reader_init nor --init says.",
    "span_hidden_size": "Span MLP width (ORQA: 256).",
    "max_span_width": "Longest answer span in wordpieces.",
    "reader_seq_length": "[CLS] question [SEP] block [SEP] length.",
    "reader_query_length": "[CLS] question [SEP] part of the reader input.",
    # FinetuneJobConfig
    "work_dir": "The pre-training work directory: its index/ and corpus/ are read, the run "
                "goes to its finetune/.",
    "index_dir": "Index bundles; the newest is used, frozen (default <work_dir>/index).",
    "corpus_dir": "Block corpus the index was built from (default <work_dir>/corpus).",
    "model_dir": "Checkpoints, config.json, summaries (default <work_dir>/finetune).",
    "init": "The model's initial weights: a REALM model_dir, embedder export, converted "
            "checkpoint or fine-tuning model_dir (default: the query tower of the index "
            "bundle).",
    "reader_init": "Where the reader BERT comes from instead of --init: 'minilm', an HF BERT "
                   "dir, a REALM model_dir or a converted checkpoint (empty: --init's).",
    "data_dir": "TFDS data_dir.",
    "manual_dir": "Folder with the dataset source files (default: shipped).",
    "strict": "Stop on a malformed line of a jsonl:<path> dataset instead of skipping it.",
}
# Config fields with no flag: the nested configs (their own flags), settings the command line
# does not expose, and FinetuneJobConfig.jit_compile (a distribution flag, defined there).
_FINETUNE_SKIP = ("model", "clip_norm", "regex_search_blocks")
_MODEL_SKIP = ("retriever", "reader", "max_answers", "max_answer_length",
               "featurization")  # the released ORQA models' setting: from their config
_JOB_SKIP = ("finetune", "jit_compile", "lock_dir")
# Flags named otherwise than their fields: the reader's under a reader_ prefix (beside the
# retriever's), the split as in evaluate, the warm starts as in every CLI (--init, --*_init).
_FINETUNE_NAMES = {"train_split": "split"}
_READER_NAMES = {"encoder": "reader_preset", "seq_length": "reader_seq_length",
                 "query_length": "reader_query_length"}
_JOB_NAMES = {"init_checkpoint": "init", "reader_init_checkpoint": "reader_init"}
# The command line's defaults: the recipe measured on 2 CPU cores (launch/configs/
# finetune_cpu.flags writes it out; the library's configs keep ORQA's). --dataset has none, so a
# forgotten --dataset never trains on a default set; the score scale is the index bundle's.
CPU_RECIPE = {
    "finetune": {"batch_size": 16, "num_train_steps": 400, "learning_rate": 3e-4,
                 "retriever_lr_multiplier": 0.3333, "reader_positives": "gold",
                 "checkpoint_every": 100, "log_every": 25},
    # train_reader_beam_size: None, resolved by `config_from_flags` (DENSE_TRAIN_READER_BEAM_SIZE
    # behind the dense retriever, --reader_beam_size behind BM25).
    "model": {"retriever_beam_size": 256, "train_reader_beam_size": None},
    "reader": {"encoder": "minilm", "seq_length": 160, "query_length": 32},
    "job": {"reader_init_checkpoint": "minilm"},
}
# Blocks read per training question by the dense recipe when --train_reader_beam_size is not
# given (the gold positive substitutes for a block without an answer; the query tower's logit
# ranks the blocks at evaluation). Behind BM25 the default is --reader_beam_size: with no
# retrieval logit the reader must learn to choose among the k blocks it is scored on.
DENSE_TRAIN_READER_BEAM_SIZE = 1
# The path flags that default to the work dir's folders: {flag: layout stage}.
_PATHS = {"index_dir": "index", "corpus_dir": "corpus", "model_dir": "finetune"}
# Flags renamed: {old name: new name}; the old names still work and print a deprecation notice.
RENAMED = {"reader_encoder": "reader_preset", "init_checkpoint": "init",
           "reader_init_checkpoint": "reader_init"}


def define_flags(flag_values=flags.FLAGS):
  """Defines the fine-tuning flags: one per FinetuneConfig / OpenQAConfig / ReaderConfig setting,
  one per FinetuneJobConfig field (the run's inputs and outputs), and the distribution flags.

  Called from `__main__` only (and by tests on a fresh FlagValues), so importing this module
  defines no flag.
  """
  from realm_tf.io import work_dir  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import distribution_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import validators  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.encoder_config import PRESETS  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.reader import ReaderConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import finetune  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling import openqa_model as model  # pylint: disable=g-import-not-at-top
  fv = flag_values
  config_flags.define_config_flags(
      finetune.FinetuneConfig, HELP, skip=_FINETUNE_SKIP, names=_FINETUNE_NAMES,
      defaults=CPU_RECIPE["finetune"], required=("dataset",),
      choices={"reader_positives": model.READER_POSITIVES,
               "retriever": finetune.RETRIEVERS}, flag_values=fv)
  config_flags.define_config_flags(model.OpenQAConfig, HELP, skip=_MODEL_SKIP,
                                   defaults=CPU_RECIPE["model"], flag_values=fv)
  config_flags.define_config_flags(ReaderConfig, HELP, names=_READER_NAMES,
                                   defaults=CPU_RECIPE["reader"],
                                   choices={"encoder": sorted(PRESETS)}, flag_values=fv)
  flags.DEFINE_string("work_dir", work_dir.DEFAULT_ROOT, HELP["work_dir"], flag_values=fv)
  config_flags.define_config_flags(
      finetune.FinetuneJobConfig, HELP, skip=_JOB_SKIP, names=_JOB_NAMES,
      defaults=dict(CPU_RECIPE["job"], **{name: None for name in _PATHS}), flag_values=fv)
  distribution_flags.define_flags(fv, batch_flags=("batch_size",))
  config_flags.define_deprecated_aliases(RENAMED, fv)
  validators.register(fv, dataset=validators.dataset(need_answers=True),
                      init=validators.warm_start("--init"),
                      reader_init=validators.warm_start("--reader_init"))
  validators.register_ranges(fv)
  validators.register_fits_encoder(fv, ["reader_seq_length"], "reader_preset", "reader_init")
  validators.register_multi(fv, ["reader_query_length", "reader_seq_length"],
                            validators.at_most("reader_query_length", "reader_seq_length",
                                               strict=True))
  for beam in ("reader_beam_size", "train_reader_beam_size"):  # the reader reads the beam's best
    validators.register_multi(fv, [beam, "retriever_beam_size"],
                              validators.at_most(beam, "retriever_beam_size"))


def paths_from_flags(flag_values=flags.FLAGS):
  """{index_dir, corpus_dir, model_dir}: each flag's value, else its <work_dir> folder."""
  from realm_tf.io import work_dir  # pylint: disable=g-import-not-at-top
  return work_dir.derive(flag_values.work_dir,
                         {name: (stage, flag_values[name].value) for name, stage in _PATHS.items()})


def config_from_flags(flag_values=flags.FLAGS):
  """The FinetuneConfig (with its OpenQAConfig and ReaderConfig) the parsed flags describe;
  --train_reader_beam_size, when not given, is DENSE_TRAIN_READER_BEAM_SIZE behind the dense
  retriever and --reader_beam_size behind BM25."""
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.reader import ReaderConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import finetune  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling import openqa_model as model  # pylint: disable=g-import-not-at-top
  fv = flag_values
  reader = config_flags.config_from_flags(ReaderConfig, fv, names=_READER_NAMES)
  openqa = config_flags.config_from_flags(model.OpenQAConfig, fv, skip=_MODEL_SKIP, reader=reader)
  if openqa.train_reader_beam_size is None:  # the default: see DENSE_TRAIN_READER_BEAM_SIZE
    k = openqa.reader_beam_size if fv.retriever == "bm25" else DENSE_TRAIN_READER_BEAM_SIZE
    openqa = dataclasses.replace(openqa, train_reader_beam_size=k)
  return config_flags.config_from_flags(finetune.FinetuneConfig, fv, skip=_FINETUNE_SKIP,
                                        names=_FINETUNE_NAMES, model=openqa)


def job_from_flags(flag_values=flags.FLAGS):
  """The FinetuneJobConfig the parsed flags describe: `config_from_flags` and where to run it."""
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import finetune  # pylint: disable=g-import-not-at-top
  return config_flags.config_from_flags(
      finetune.FinetuneJobConfig, flag_values, names=_JOB_NAMES,
      finetune=config_from_flags(flag_values), jit_compile=flag_values.jit_compile,
      lock_dir=None, **paths_from_flags(flag_values))


def main(argv):
  """Fine-tunes as the flags say; prints the last step's scalars and where the checkpoints are."""
  del argv
  from realm_tf.launch import distribution_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import finetune  # pylint: disable=g-import-not-at-top

  t0 = time.time()
  strategy = distribution_flags.strategy_from_flags(batch_flags=("batch_size",))
  job = job_from_flags()
  result = finetune.run(job, strategy)  # one run per model dir: the stage holds its lock
  result["wall_seconds"] = round(time.time() - t0, 1)
  logging.info("Fine-tuning done in %.0f s.", result["wall_seconds"])
  print(json.dumps({k: v for k, v in result.items() if k != "progress_line"}, indent=2,
                   default=str))
  print(f"Checkpoints in {os.path.join(job.model_dir, 'checkpoints')}")


if __name__ == "__main__":
  define_flags()
  command_line.run(main)
