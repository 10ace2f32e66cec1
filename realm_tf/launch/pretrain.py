r"""REALM pre-training — and, with no flags, the project's main job on the embedded corpus.

  python -m realm_tf.launch.pretrain                      # the demo: everything, on 2 CPU cores
  python -m realm_tf.launch.pretrain --inputs=my_docs.jsonl --work_dir=runs/mine \
      --eval_questions=jsonl:my_questions.jsonl           # your documents (and questions)
  python -m realm_tf.launch.pretrain --flagfile=launch/configs/paper_tpu.flags --tpu=my-tpu \
      --work_dir=gs://bucket/realm

Stages, each skipped (or resumed) when its output already exists, so a killed job continues:
  1. build the block corpus (Beam) from --inputs (default: the shipped SQuAD v1.1 dev paragraphs);
  2. annotate salient spans (Beam + spaCy NER + dates);
  3. ICT warm start of the retriever, first embedder export, first index bundle;
  4. reader warm-up: MLM with no retrieval, when the reader's initial weights have no MLM head;
  5. REALM pre-training with index refresh (inline: in-process; async: the refresh_index job);
     held-out figures before the first step, at every refresh and at the end.
The summary is printed and written to <work_dir>/summary.json. A work dir holds one run: other
--inputs than its corpus was built from, another --block_length than the corpus's, or other shapes
or initial weights than <work_dir>/settings.json records end the job with a one-line `error: ...`
before any work (exit status 2), as does a bad flag value.
"""
import sys

from absl import flags

from realm_tf.utils import command_line

HELP = {
    "work_dir": "Root of every output of the job (one run per work dir).",
    "inputs": "Document files/globs (JSONL {\"id\", \"title\", \"text\"}, SQuAD JSON, WikiText, "
              "plain text, DPR's psgs_w100.tsv, BEIR's corpus.jsonl or Pyserini's {\"id\", "
              "\"contents\"}, detected per file; default: the work dir's corpus if it has one, "
              "else the shipped SQuAD v1.1 dev set).",
    "corpus_dir": "Block corpus (default <work_dir>/corpus; built if absent).",
    "annotations_dir": "Salient-span annotations (default <work_dir>/annotations).",
    "index_dir": "Index bundles (default <work_dir>/index).",
    "ict_dir": "ICT warm-start run (default <work_dir>/ict).",
    "reader_dir": "Reader warm-up run (default <work_dir>/reader_warmup).",
    "model_dir": "REALM checkpoints, exports, held-out log (default <work_dir>/realm).",
    "block_length": "Block wordpieces [CLS] title [SEP] body [SEP] (REALM: 288). Default: the "
                    "work dir's corpus's, else 128.",
    "query_length": "Masked-query wordpieces (REALM: 96). Default: the work dir's, else 32.",
    "retriever_preset": "Retriever encoder preset.",
    "retriever_init": "Initial retriever towers (a warm_start source: 'minilm', an HF BERT "
                      "dir, a TF1/converted checkpoint, an export); applied before ICT.",
    "retriever_pooling": "Tower pooling: cls ([CLS] pooler, ORQA/REALM) or mean (MiniLM's).",
    "share_towers": "One encoder for queries and documents (REALM's share_embedders).",
    "projection_size": "Retrieval embedding size (default 128; the encoder width with "
                       "--retriever_init, which keeps a sentence encoder's geometry).",
    "projection_dropout": "Dropout on the projected embedding while training (ORQA: 0.1).",
    "ict_steps": "ICT warm-start steps (0 with --retriever_init: the initial towers as is).",
    "ict_batch_size": "ICT batch size (in-batch negatives).",
    "ict_learning_rate": "ICT peak learning rate.",
    "reader_preset": "Reader encoder preset when --reader_init does not say.",
    "reader_init": "Initial reader weights (a warm_start source: 'minilm', an HF BERT dir with "
                   "or without its MLM head, a TF1/converted checkpoint, a warm-up run).",
    "reader_warmup_steps": "MLM warm-up steps when the reader's initial weights have no MLM "
                           "head (0: none).",
    "reader_warmup_batch_size": "Reader warm-up batch size.",
    "reader_warmup_learning_rate": "Reader warm-up peak learning rate.",
    "reader_warmup_train_encoder": "Train the reader's encoder in the warm-up (else the head).",
    "reader_warmup_remove_rate": "How often the warm-up's sentence is cut from its block.",
    "reader_warmup_evidence": "Warm-up second segment: own_block (the rest of the sentence's "
                              "block) or span_match (another block holding the masked salient "
                              "span: the reader learns to read retrieved text).",
    "reader_warmup_distractor_rate": "span_match: the share of warm-up queries that read BM25's "
                                     "best block without their span (a distractor), so the "
                                     "reader learns not to trust every block.",
    "batch_size": "REALM global batch size (queries).",
    "num_train_steps": "REALM pre-training steps (0: prepare only).",
    "learning_rate": "REALM peak learning rate (the paper: 3e-5).",
    "warmup_steps": "REALM warm-up steps (default 10% of the run).",
    "masking": "Masking scheme: salient|random_span|random_uniform (the paper's ablations).",
    "train_retriever": "Train the retriever in REALM (false: the frozen-retriever ablation; "
                       "the index then never changes).",
    "train_reader": "Train the reader (the knowledge-augmented encoder) in REALM (false: only "
                    "the retriever learns, from the reader as its initial weights left it).",
    "retriever_lr_multiplier": "The retriever's learning rate as a multiple of --learning_rate "
                               "(the reader's); 1: one rate, as the paper and the main job.",
    "retriever_objective": "The retriever's gradient: marginal (the paper's: over every "
                           "candidate, the null document included) or retrieved (over the "
                           "retrieved blocks alone; no pull towards the null document) or "
                           "helpful (retrieved, a block that explains a token worse than the "
                           "null document scored as the null document).",
    "retrieval_score_scale": "Multiplies the warm-started retriever's scores once at the start "
                             "of REALM (a temperature; 1: as ICT left them).",
    "null_bias_learning_rate": "Peak rate of a learned scalar added to the null document's "
                               "score (the prior's 'no evidence' logit, trained by the "
                               "marginal's gradient alone); 0: none, as the paper.",
    "num_candidates": "Candidates per query: the null document + retrieved (the paper: 8).",
    "refresh": "Index refresh mode: inline (the refresher in this process; at the paper's "
               "13.35M blocks that process would need about 57.3 GB: use async there, see "
               "docs/PRETRAINING.md), async (python -m realm_tf.launch.refresh_index beside the "
               "trainer) or none.",
    "refresh_every_steps": "Steps between index refreshes (and held-out evaluations).",
    "export_every_steps": "Steps between embedder exports (default: refresh_every_steps).",
    "checkpoint_every": "Steps between checkpoints (of ICT, the reader warm-up and REALM).",
    "seed": "Seed of data order, masking, ICT sampling, model initialisation and dropout (a "
            "run with one seed repeats on one machine).",
    "data_service": "grpc://dispatcher:port of a tf.data service running masking + query "
                    "embedding + search (start it with python -m "
                    "realm_tf.launch.data_service_worker; the index must be on shared storage).",
    "jit_compile": "XLA-compile the train steps (forward, backward, optimizer apply).",
    "min_recall": "Refuse to publish an index whose ScaNN recall@10 is lower.",
    "heldout_fraction": "Share of blocks (by id) never used as training queries or warm-up text.",
    "shuffle_window": "REALM's training records are shuffled within windows of this many "
                      "(each host of a multi-worker job reads its own windows).",
    "realm_query_fraction": "Share of blocks (by id) whose sentences are REALM's queries and "
                            "never the reader warm-up's (0: both read every training block; "
                            "ignored when no warm-up runs).",
    "heldout_queries": "Held-out masked sentences per evaluation.",
    "eval_questions": "Questions for held-out question recall (dense and BM25): "
                      "jsonl:<path> (yours, one JSON object a line: \"question\", \"answers\", "
                      "optional \"doc_id\" naming the gold document), dpr_qa:<path> (DPR's "
                      "*.qa.csv), beir:<dir>[:<split>] (BEIR queries, gold documents from "
                      "qrels), squad_open or none. "
                      "Default: squad_open on the shipped corpus, none on other documents.",
    "num_eval_questions": "At most this many held-out questions (a fixed sample).",
}
# Flags renamed: {old name: new name}; the old names still work and print a deprecation notice.
RENAMED = {"input": "inputs"}
_SKIP = ("jit_compile",)  # a distribution flag (realm_tf.launch.distribution_flags)
# The global batch sizes, each divided among the replicas.
BATCH_FLAGS = ("batch_size", "ict_batch_size", "reader_warmup_batch_size")


def define_flags(flag_values=flags.FLAGS):
  """The main job's flags: one per PretrainJobConfig field, plus the distribution flags.

  Called from `__main__` only (and by tests on a fresh FlagValues), so importing this module
  defines no flag.
  """
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import distribution_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import validators  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import pretrain_job  # pylint: disable=g-import-not-at-top
  config_flags.define_config_flags(pretrain_job.PretrainJobConfig, HELP, skip=_SKIP,
                                   choices=choices(), flag_values=flag_values)
  distribution_flags.define_flags(flag_values, batch_flags=BATCH_FLAGS)
  config_flags.define_deprecated_aliases(RENAMED, flag_values)

  def check_eval_questions(value):
    if value and not value.isdigit():  # digits: the old count (see `config_from_flags`)
      try:
        pretrain_job.check_eval_questions(value)
      except ValueError as e:
        raise flags.ValidationError(str(e)) from None
    return True

  # (The warm-start sources are checked by `pretrain_job.prepare`, before any work: a flag file
  # may name a checkpoint that is put in place later.)
  validators.register(flag_values, eval_questions=check_eval_questions)
  _register_value_checks(flag_values)


def _register_value_checks(flag_values):
  """Numbers in range (`validators.RANGES`; --num_train_steps=0 prepares only) and lengths that
  fit the towers: the query and the block each the retriever's, query + block (the knowledge-
  augmented encoder reads both) the reader's positions."""
  from realm_tf.launch import validators  # pylint: disable=g-import-not-at-top
  validators.register_ranges(flag_values, {"num_train_steps": validators.NON_NEGATIVE})
  for length in ("query_length", "block_length"):
    validators.register_fits_encoder(flag_values, [length], "retriever_preset", "retriever_init")
  validators.register_fits_encoder(flag_values, ["query_length", "block_length"], "reader_preset",
                                   "reader_init")


def choices():
  """The enum flags' choices: {PretrainJobConfig field: allowed values}."""
  from realm_tf.data import masking  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling import encoder_config  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling import realm_pretrainer  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling import retriever  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import reader_warmup  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import realm_experiment  # pylint: disable=g-import-not-at-top
  presets = sorted(encoder_config.PRESETS)
  return {"masking": masking.MODES, "refresh": realm_experiment.REFRESH_MODES,
          "retriever_objective": realm_pretrainer.RETRIEVER_OBJECTIVES,
          "reader_warmup_evidence": reader_warmup.EVIDENCE_MODES,
          "retriever_pooling": retriever.POOLINGS, "retriever_preset": presets,
          "reader_preset": presets}


def config_from_flags(flag_values=flags.FLAGS):
  """The PretrainJobConfig the parsed flags describe. A number for --eval_questions is its old
  meaning (how many questions, now --num_eval_questions) and prints a deprecation notice."""
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import pretrain_job  # pylint: disable=g-import-not-at-top
  overrides = {}
  if (flag_values.eval_questions or "").isdigit():
    print("warning: --eval_questions=N (a count) is deprecated; use --num_eval_questions=N.",
          file=sys.stderr, flush=True)
    overrides = {"eval_questions": None, "num_eval_questions": int(flag_values.eval_questions)}
  return config_flags.config_from_flags(pretrain_job.PretrainJobConfig, flag_values, skip=_SKIP,
                                        jit_compile=flag_values.jit_compile, **overrides)


def main(argv):
  """Runs the job the flags describe (its stage holds the work-dir lock, checks the work dir,
  writes the summary); prints the summary."""
  del argv
  from realm_tf.io import chief  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import distribution_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import pretrain_job  # pylint: disable=g-import-not-at-top
  # The strategy first: logical CPU devices must precede TensorFlow's initialisation.
  strategy = distribution_flags.strategy_from_flags(batch_flags=BATCH_FLAGS)
  config = config_from_flags()
  summary = pretrain_job.run(config, strategy)
  if not chief.is_chief_process():
    print(f"This worker's part is done ({summary['wall_seconds']:.0f} s); the chief writes the "
          f"held-out figures and {config.layout().summary_file}.")
    return
  print(pretrain_job.format_summary(summary))
  print(f"Summary written to {config.layout().summary_file} (wall time "
        f"{summary['wall_seconds']:.0f} s)")


if __name__ == "__main__":
  define_flags()
  command_line.run(main)
