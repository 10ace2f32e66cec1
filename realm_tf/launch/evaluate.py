r"""Open-QA evaluation of a fine-tuned model: EM (regex match for CuratedTREC), DPR top-k
accuracy, recall@k; predictions JSONL, DPR retriever results and a TREC run.

  python -m realm_tf.launch.evaluate --work_dir=runs/mine --dataset=jsonl:my_test_qa.jsonl
  # the same reader behind BM25 over the same blocks (read with its own retrieval logit):
  python -m realm_tf.launch.evaluate --work_dir=runs/mine --dataset=jsonl:my_test_qa.jsonl \
      --retriever=bm25
  python -m realm_tf.launch.evaluate --model_dir=runs/nq --dataset=nq_open_orqa --split=test
  # the same, searching with the ScaNN searcher realm_openqa_scann serves (ORQA's, imported):
  python -m realm_tf.launch.evaluate --model_dir=runs/nq --dataset=nq_open_orqa --split=test \
      --searcher=scann

The fine-tuning run is <work_dir>/finetune unless --model_dir says otherwise; --dataset is
required (no default set is evaluated silently).

Writes `<model_dir>/eval/<dataset>-<split>.json` (`-bm25` appended for --retriever=bm25,
`-bm25-zero_logit` with --bm25_logits=zero; a jsonl:<path> dataset is named
`jsonl_<file name>`) with the metrics, and `.jsonl` (one line per question: prediction,
probability, correctness, evidence blocks with id, title, text, retrieval score and whether they
contain an answer), `.dpr.json` (DPR's retriever results: question, answers, the top
--num_retrieved blocks as ctxs with id, title, text, score, has_answer) and `.trec` (a TREC run,
`qid Q0 docid rank score tag`, one line per retrieved document), unless --output_prefix says
otherwise. Questions with judged documents and no answers (`beir:<dir>`) get retrieval figures
from the judgements (recall@k, nDCG@10, MRR@10); the reader and EM are skipped. Prints one line:
EM and top-1/5/20/100 accuracy (or the judged figures) and the files. The index and
corpus default to the ones fine-tuning used (recorded in <model_dir>/config.json). A bad
--dataset, a missing model_dir, or a malformed question line with --strict, ends the run with a
one-line `error: ...`, exit status 2 (realm_tf/utils/command_line.py).
"""
from absl import flags

from realm_tf.utils import command_line

FLAGS = flags.FLAGS

HELP = {
    "work_dir": "The work directory whose finetune/ run is evaluated.",
    "model_dir": "Fine-tuning model_dir (config.json + checkpoints/; default "
                 "<work_dir>/finetune).",
    "dataset": "Questions to evaluate (required): nq_open_orqa | nq_open_orqa/dpr | "
               "web_questions_orqa | curated_trec_orqa | squad_open (or nq, nq_dpr, wq, ct) | "
               "jsonl:<path> | dpr_qa:<path> (DPR's *.qa.csv) | beir:<dir>[:<split>] (BEIR "
               "queries and qrels: retrieval figures only).",
    "split": "Split to evaluate (train | dev | test; not used by jsonl:<path>).",
    "strict": "Stop on a malformed line of a jsonl:<path> dataset instead of skipping it.",
    "retriever": "Blocks the reader reads: the fine-tuned query tower's (dense) or BM25's over "
                 "the same corpus blocks.",
    "searcher": "How the dense retriever searches the index: exact (exact inner products) or "
                "scann (the ScaNN searcher export serves in realm_openqa_scann: for an index "
                "imported by import_release, the import's own, ORQA's settings); -scann is "
                "appended to the output files' names.",
    "bm25_logits": "With --retriever=bm25, the retrieval logit the reader adds for BM25's "
                   "blocks: dense (the model's own q.emb for them) or zero (none). Default: the "
                   "one the reader was fine-tuned with (dense; zero for finetune "
                   "--retriever=bm25). zero on a reader fine-tuned behind the dense retriever "
                   "reads it without a term it was trained with.",
    "index_dir": "Index bundles (default: the bundle fine-tuning used).",
    "corpus_dir": "Block corpus (default: the one fine-tuning used).",
    "data_dir": "TFDS data_dir.",
    "manual_dir": "Folder with the dataset source files (default: shipped).",
    "batch_size": "Questions per model call.",
    "recall_ks": "k of retrieval recall@k.",
    "max_examples": "Evaluate only the first N questions.",
    "output_prefix": "Path prefix of the .json/.jsonl/.dpr.json/.trec outputs.",
    "num_retrieved": "Blocks retrieved per question for top-k accuracy, recall@k and the run "
                     "files (capped at the corpus size), whatever the reader reads.",
    "run_tag": "The TREC run's tag (last column; default: the output prefix's file name).",
}


def define_flags(flag_values=flags.FLAGS):
  """Defines one flag per field of `stages.evaluate.EvaluateConfig` (--retriever an enum,
  --dataset required and checked as it is parsed) and --work_dir.

  Called from `__main__` only (and by tests on a fresh FlagValues), so importing this module
  defines no flag.
  """
  from realm_tf.io import work_dir  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import validators  # pylint: disable=g-import-not-at-top
  from realm_tf.openqa import bm25_retriever  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import evaluate  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("work_dir", work_dir.DEFAULT_ROOT, HELP["work_dir"],
                      flag_values=flag_values)
  config_flags.define_config_flags(evaluate.EvaluateConfig, HELP, flag_values=flag_values,
                                   required=("dataset",), defaults={"model_dir": None},
                                   choices={"retriever": evaluate.RETRIEVERS,
                                            "searcher": evaluate.SEARCHERS,
                                            "bm25_logits": bm25_retriever.READER_LOGITS})
  validators.register(flag_values, dataset=validators.dataset())
  validators.register_ranges(flag_values)


def config_from_flags(flag_values=flags.FLAGS):
  """The EvaluateConfig the parsed flags describe (no --model_dir: <work_dir>/finetune)."""
  from realm_tf.io import work_dir  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import evaluate  # pylint: disable=g-import-not-at-top
  return config_flags.config_from_flags(
      evaluate.EvaluateConfig, flag_values,
      model_dir=flag_values.model_dir or work_dir.WorkDir(flag_values.work_dir).finetune)


def main(argv):
  """Evaluates the model_dir on the flags' questions; writes the files, prints one line."""
  del argv
  from realm_tf.stages import evaluate  # pylint: disable=g-import-not-at-top
  print(evaluate.summary_line(evaluate.run(config_from_flags())))


if __name__ == "__main__":
  define_flags()
  command_line.run(main)
