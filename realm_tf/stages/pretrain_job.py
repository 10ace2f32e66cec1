"""The end-to-end pre-training job behind `python -m realm_tf.launch.pretrain`.

    corpus ─▶ salient-span annotations ─▶ ICT warm start of the retriever ─▶ index bundle v1
      ─▶ reader warm-up (MLM, when the reader's initial weights have no MLM head)
      ─▶ REALM pre-training with index refresh ─▶ held-out figures before, during and after

Every stage writes its output through atomic renames and is skipped (or resumed) when that
output exists, so re-running the command after a kill continues where it stopped. A work dir holds
one run: before any work, `prepare` refuses other input documents than its corpus was built from,
another block length than the corpus's (the corpus records it: the one source of truth) and other
shapes or initial weights than `<work_dir>/settings.json` records, each in one line naming the
difference. The job is configured by one `PretrainJobConfig`; the CLI only turns flags into it.
"""
import dataclasses
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.config_base import ConfigBase
from realm_tf.data.documents import default_corpus_path
from realm_tf.evaluation import heldout as heldout_lib
from realm_tf.evaluation.heldout import HeldOutConfig, format_figures
from realm_tf.io import atomic
from realm_tf.io import chief
from realm_tf.io import work_dir as work_dir_lib
from realm_tf.io.work_dir import WorkDir
from realm_tf.modeling.encoder_config import get_encoder_config
from realm_tf.modeling.realm_pretrainer import RealmConfig
from realm_tf.modeling.retriever import RetrieverConfig
from realm_tf.retrieval.refresh import IndexRefresher, RefreshConfig
from realm_tf.stages import ict_experiment
from realm_tf.stages import reader_warmup
from realm_tf.stages import realm_experiment
from realm_tf.stages.realm_experiment import PretrainConfig
from realm_tf.stages import stage_rules
from realm_tf.text import packing
from realm_tf.training import warm_start


@dataclasses.dataclass
class PretrainJobConfig(ConfigBase):
  """Every setting of the main job. Defaults: the CPU demo whose REALM stage learns (see README)."""
  work_dir: str = work_dir_lib.DEFAULT_ROOT
  # Document files. None: the work dir's corpus if it has one, else the shipped SQuAD dev set.
  inputs: Optional[List[str]] = None
  corpus_dir: Optional[str] = None         # default <work_dir>/corpus, and so on
  annotations_dir: Optional[str] = None
  index_dir: Optional[str] = None
  ict_dir: Optional[str] = None
  reader_dir: Optional[str] = None
  model_dir: Optional[str] = None
  # Shapes: blocks of `block_length` wordpieces, queries of `query_length` (REALM: 288, 96).
  # None: the work dir's (its corpus's block length, the query length it was built with), else
  # work_dir.DEFAULT_BLOCK_LENGTH and DEFAULT_QUERY_LENGTH (128, 32).
  block_length: Optional[int] = None
  query_length: Optional[int] = None
  # Retriever: towers, their warm start (a warm_start source, applied before ICT), ICT.
  # Default: all-MiniLM-L6-v2 in its own geometry and no ICT. A tiny ICT-trained retriever
  # starts with retrieval harming the reader on held-out sentences (utility -0.05), and REALM
  # did not lift it above zero in any run (docs/LEARNING.md); launch/configs/tiny_ict_cpu.flags.
  retriever_preset: str = "minilm"
  retriever_init: Optional[str] = "minilm"
  retriever_pooling: str = "mean"
  share_towers: bool = True
  projection_size: Optional[int] = None    # None: 128, or the encoder width for retriever_init
  projection_dropout: float = 0.0
  ict_steps: int = 0                       # the tiny ICT retriever's: 300
  ict_batch_size: int = 64
  ict_learning_rate: float = 2e-4
  # Reader: the knowledge-augmented encoder, its warm start and its MLM warm-up.
  reader_preset: str = "minilm"
  reader_init: Optional[str] = "minilm"
  reader_warmup_steps: int = 300         # 500 until 2026-11-26 (docs/LEARNING.md)
  reader_warmup_batch_size: int = 16
  reader_warmup_learning_rate: float = 5e-4
  reader_warmup_train_encoder: bool = True
  reader_warmup_remove_rate: float = 0.5
  reader_warmup_evidence: str = "span_match"  # or own_block (realm_tf.retrieval.evidence)
  reader_warmup_distractor_rate: float = 0.5  # span_match: share of queries reading a distractor
  # REALM pre-training.
  batch_size: int = 4
  num_train_steps: int = 100
  learning_rate: float = 1e-5
  warmup_steps: Optional[int] = None       # default 10% of the run
  masking: str = "salient"
  train_retriever: bool = True             # False: the frozen-retriever ablation
  train_reader: bool = True                # False: the reader stays as the warm-up left it
  # The retriever's rate / the reader's (the paper's: 1; the tiny ICT retriever's: 0.1).
  retriever_lr_multiplier: float = 1.0
  # realm_pretrainer.RETRIEVER_OBJECTIVES (the paper's: marginal). helpful: the marginal over
  # the retrieved blocks, a block that explains a token worse than the null document scored as
  # the null document (README, "The retriever's objective").
  retriever_objective: str = "helpful"
  # Temperature on the warm-started retriever's scores: a near one-hot prior starves the
  # retriever of gradient (ICT's layer-normed scores reach ±128).
  retrieval_score_scale: float = 0.05
  # Peak rate of a learned null-document bias (0: none, the paper's; the main job's: 0.3,
  # the prior's "no evidence" odds follow the reader). See README.
  null_bias_learning_rate: float = 0.3
  # Candidates per query, the null document included (the paper: 8; 4 fits the main job in
  # 15 min on 2 cores, and met item 5's goals with both seeds tried: docs/LEARNING.md).
  num_candidates: int = 4
  refresh: str = "inline"
  refresh_every_steps: int = 50
  export_every_steps: Optional[int] = None
  checkpoint_every: int = 50
  seed: int = 0
  # REALM's training stream: records shuffled within windows of this many (a host of a
  # multi-worker job reads every other window: with the per-host batch as the window, 2 hosts
  # read the global batches 1 host reads).
  shuffle_window: int = 16384
  data_service: Optional[str] = None
  jit_compile: bool = False
  min_recall: float = 0.9
  # Held-out evaluation.
  heldout_fraction: float = 0.1
  # Share of blocks whose sentences are REALM's queries alone: the warm-up never answers them
  # (`corpus.in_query_split`; REALM on sentences the warm-up saw lowered held-out utility).
  # Only when the reader warm-up runs (a reader with its own MLM head has no warm-up to avoid).
  realm_query_fraction: float = 0.3
  heldout_queries: int = 192
  # Questions for held-out question recall: jsonl:<path> (yours, about your documents: "answers"
  # and optionally "doc_id", the gold document), dpr_qa:<path> (DPR's *.qa.csv), beir:<dir>
  # [:<split>] (BEIR queries, gold documents from qrels), squad_open (SQuAD-open dev) or none. None:
  # squad_open on the shipped corpus, none on other documents.
  eval_questions: Optional[str] = None
  num_eval_questions: int = 1000           # at most this many of them (a fixed sample)

  def layout(self) -> WorkDir:
    """The work directory's layout (explicit stage folders win over it)."""
    return WorkDir(self.work_dir, corpus_dir=self.corpus_dir,
                   annotations_dir=self.annotations_dir, index_dir=self.index_dir,
                   ict_dir=self.ict_dir, reader_dir=self.reader_dir, model_dir=self.model_dir)

  def dirs(self) -> Dict[str, str]:
    """Every stage's directory: {stage: folder}."""
    return self.layout().as_dict()


# What `<work_dir>/settings.json` records: the shapes and initial weights the stages before REALM
# built the corpus, the index and the reader from (the inputs are the corpus manifest's).
SETTINGS = ("block_length", "query_length", "retriever_preset", "retriever_init",
            "retriever_pooling", "projection_size", "share_towers", "reader_preset", "reader_init")
SQUAD_QUESTIONS = "squad_open"
NO_QUESTIONS = ("", "none")


def shapes(config: PretrainJobConfig) -> Tuple[int, int]:
  """(block length, query length) of `config`, the defaults where it leaves them to the work dir
  (`prepare` resolves them from the work dir first)."""
  return (config.block_length or work_dir_lib.DEFAULT_BLOCK_LENGTH,
          config.query_length or work_dir_lib.DEFAULT_QUERY_LENGTH)


def settings(config: PretrainJobConfig) -> Dict:
  """The SETTINGS of `config` as the work dir records them (the projection size resolved)."""
  out = {name: getattr(config, name) for name in SETTINGS}
  out["block_length"], out["query_length"] = shapes(config)
  out["projection_size"] = retriever_config(config).projection_size
  return out


def prepare(config: PretrainJobConfig) -> PretrainJobConfig:
  """Checks `config` against its work dir before any work; returns it with the shapes resolved.

  Refused (WorkDirMismatchError, one line naming the difference): --inputs other than the ones the
  work dir's corpus was built from, a --block_length other than the corpus's, and shapes or
  initial weights other than settings.json records. A bad --eval_questions is a DatasetError, a
  warm-start source that is none of warm_start's kinds a WarmStartError.
  """
  work = config.layout()
  work_dir_lib.check_inputs(work.corpus, config.inputs)
  recorded = work_dir_lib.recorded_settings(work)
  block = work_dir_lib.block_length_of(work.corpus, config.block_length)
  config = dataclasses.replace(
      config, block_length=block or recorded.get("block_length") or
      work_dir_lib.DEFAULT_BLOCK_LENGTH,
      query_length=config.query_length or recorded.get("query_length") or
      work_dir_lib.DEFAULT_QUERY_LENGTH)
  work_dir_lib.check_settings(work, settings(config))
  check_eval_questions(config.eval_questions)
  for source in (config.retriever_init, config.reader_init):
    if source:
      warm_start.source_kind(source)  # a WarmStartError names a source that is none of them
  return config


def check_eval_questions(spec: Optional[str]) -> None:
  """Refuses (DatasetError) an --eval_questions that is not a question file that exists
  (jsonl:, dpr_qa:, beir:), squad_open, none or unset."""
  from realm_tf.openqa import datasets  # pylint: disable=g-import-not-at-top
  if spec is None or spec.lower() in NO_QUESTIONS or spec == SQUAD_QUESTIONS:
    return
  if not spec.startswith(tuple(datasets.FILE_PREFIXES.values())):
    raise datasets.DatasetError(
        f"--eval_questions={spec!r}: give jsonl:<path>, dpr_qa:<path> (DPR's *.qa.csv) or "
        f"beir:<dir>[:<split>] (BEIR queries and qrels): questions about your documents; or "
        f"{SQUAD_QUESTIONS} or none.")
  datasets.check_question_files(spec, "--eval_questions")


def heldout_questions(config: PretrainJobConfig, corpus_manifest: Dict) -> Optional[str]:
  """The questions of held-out question recall: `config.eval_questions` (None for none), or by
  default SQuAD-open dev on the shipped corpus and none on other documents."""
  spec = config.eval_questions
  if spec is None:
    built = work_dir_lib.normalize_inputs(corpus_manifest.get("inputs") or [])
    shipped = work_dir_lib.normalize_inputs([default_corpus_path()])
    return SQUAD_QUESTIONS if built == shipped else None
  return None if spec.lower() in NO_QUESTIONS else spec


def describe_heldout(config: PretrainJobConfig, questions: Optional[str]) -> str:
  """One line saying which held-out figures the job reports (logged once, at the start)."""
  line = (f"Held-out figures: retrieval utility, null-document posterior and MLM accuracy on "
          f"{config.heldout_queries} masked sentences of held-out blocks "
          f"({config.heldout_fraction:.0%} of the corpus)")
  if questions == SQUAD_QUESTIONS:
    return (line + f"; question recall@5/@20 (dense, and BM25 beside it) of up to "
            f"{config.num_eval_questions} SQuAD-open dev questions.")
  if questions:
    return (line + f"; question recall@5/@20 (dense, and BM25 beside it) of up to "
            f"{config.num_eval_questions} questions of {questions}.")
  return (line + ". No question recall: give --eval_questions=jsonl:<path> (questions about your "
          "documents with \"answers\", optionally \"doc_id\") to measure it.")


def ensure_corpus(inputs: Optional[List[str]], corpus_dir: str,
                  block_length: Optional[int] = packing.BLOCK_LENGTH,
                  lock_dir: Optional[str] = None) -> Dict:
  """Builds the block corpus unless `corpus_dir` already holds one; returns its manifest.

  `inputs` default to the shipped SQuAD dev set; local paths are recorded absolute. A None
  `block_length` is the main job's default (work_dir.DEFAULT_BLOCK_LENGTH). Any corpus already
  there counts as finished: `prepare` has refused one built from other inputs or lengths.
  """
  from realm_tf.stages import build_corpus  # pylint: disable=g-import-not-at-top (Beam)
  result = build_corpus.run(build_corpus.BuildCorpusConfig(
      inputs=work_dir_lib.normalize_inputs(inputs or [default_corpus_path()]),
      output_dir=corpus_dir, num_shards=2,
      max_block_length=block_length or work_dir_lib.DEFAULT_BLOCK_LENGTH),
      lock_dir=lock_dir, accept_any=True)
  logging.info("Corpus: %d blocks in %s (%s)", result["manifest"]["num_blocks"], corpus_dir,
               result["counters"])
  return result["manifest"]


def ensure_annotations(corpus_dir: str, annotations_dir: str,
                       lock_dir: Optional[str] = None) -> Dict:
  """Annotates salient spans in the corpus blocks unless already done; returns the manifest.
  Any annotations already there count as finished (they were made of this work dir's corpus)."""
  from realm_tf.stages import annotate_corpus  # pylint: disable=g-import-not-at-top (Beam, spaCy)
  result = annotate_corpus.run(annotate_corpus.AnnotateConfig(
      output_dir=annotations_dir, corpus_dir=corpus_dir, num_shards=2),
      lock_dir=lock_dir, accept_any=True)
  logging.info("Annotations: %s", result["counters"])
  return result["manifest"]


def retriever_config(config: PretrainJobConfig) -> RetrieverConfig:
  """The retriever the job builds: its preset, pooling and projection (the encoder width when a
  pretrained sentence encoder initialises it)."""
  encoder = get_encoder_config(config.retriever_preset)
  size = config.projection_size or (encoder.hidden_size if config.retriever_init else 128)
  block_length, query_length = shapes(config)
  return RetrieverConfig(encoder=encoder, projection_size=size, share_towers=config.share_towers,
                         query_seq_length=query_length,
                         doc_seq_length=block_length, pooling=config.retriever_pooling,
                         projection_dropout=config.projection_dropout)


def reader_encoder(config: PretrainJobConfig):
  """The reader's EncoderConfig: the initial weights' own when they say, else the preset."""
  from_init = warm_start.encoder_config_of(config.reader_init) if config.reader_init else None
  return from_init or get_encoder_config(config.reader_preset)


def run(config: PretrainJobConfig, strategy: Optional[tf.distribute.Strategy] = None) -> Dict:
  """Runs every stage; returns the summary, with its wall time, and writes it to
  `<work_dir>/summary.json`.

  The job holds its work dir's writer lock from before its first read to its last write (the
  stages it runs go on under it), and checks the work dir first (`prepare`), so a mismatch
  stops the job before any work.
  """
  start = time.time()
  with stage_rules.writing(config.work_dir):
    config = prepare(config)
    summary = _run_stages(config, strategy or tf.distribute.get_strategy())
    summary["wall_seconds"] = round(time.time() - start, 1)
    if chief.is_chief_process():  # the other workers of a multi-worker job write nothing
      atomic.write_json(config.layout().summary_file, summary)
  return summary


def _run_stages(config: PretrainJobConfig, strategy: tf.distribute.Strategy) -> Dict:
  """Every stage of a prepared job, in order; returns the summary."""
  dirs = config.dirs()
  summary: Dict = {"dirs": dirs}
  corpus_manifest = ensure_corpus(config.inputs, dirs["corpus"], config.block_length,
                                  lock_dir=config.work_dir)
  work_dir_lib.record_settings(config.layout(), settings(config))
  questions = heldout_questions(config, corpus_manifest)
  logging.info("%s", describe_heldout(config, questions))
  summary["heldout_questions"] = questions
  annotation_manifest = ensure_annotations(dirs["corpus"], dirs["annotations"],
                                           lock_dir=config.work_dir)
  summary["corpus_blocks"] = corpus_manifest["num_blocks"]
  summary["annotated_records"] = annotation_manifest["num_records"]

  # 1. ICT warm start of the retriever → first export → first bundle.
  ict = None
  if config.ict_steps > 0 or config.retriever_init:  # 0 steps: the initial towers as they are
    ict = ict_experiment.run(ict_experiment.IctJobConfig(
        ict_config(config), corpus_dir=dirs["corpus"], model_dir=dirs["ict"],
        init=config.retriever_init, jit_compile=config.jit_compile, lock_dir=config.work_dir),
        strategy)
    summary["ict"] = {k: ict[k] for k in ("loss", "accuracy") if k in ict}
  refresher = IndexRefresher(RefreshConfig(model_dir=dirs["realm"], corpus_dir=dirs["corpus"],
                                           index_dir=dirs["index"], min_recall=config.min_recall),
                             strategy=strategy)
  refresher.ensure_live(ict["export"] if ict else None)

  # 2. The reader: warm up an MLM head when its initial weights have none.
  reader_init = config.reader_init
  if runs_reader_warmup(config):
    warmup = reader_warmup_config(config)
    result = reader_warmup.run(reader_warmup.ReaderWarmupJobConfig(
        warmup, corpus_dir=dirs["corpus"], model_dir=dirs["reader"], init=config.reader_init,
        annotations_dir=dirs["annotations"], jit_compile=config.jit_compile,
        lock_dir=config.work_dir), strategy)
    summary["reader_warmup"] = {k: result[k] for k in ("loss", "mlm_accuracy") if k in result}
    reader_init = dirs["reader"]
  if config.num_train_steps <= 0:  # preparation only (see launch/local_all_in_one.sh)
    return summary

  # 3. REALM pre-training, measured on held-out data before, at every refresh, and after.
  realm = realm_experiment.run(realm_experiment.RealmJobConfig(
      pretrain_config(config), corpus_dir=dirs["corpus"], annotations_dir=dirs["annotations"],
      index_dir=dirs["index"], model_dir=dirs["realm"],
      retriever_init=ict["export"] if ict else None, reader_init=reader_init,
      min_recall=config.min_recall, data_service=config.data_service,
      jit_compile=config.jit_compile,
      heldout=HeldOutConfig(fraction=config.heldout_fraction, num_queries=config.heldout_queries,
                            num_questions=config.num_eval_questions,
                            questions=None if questions == SQUAD_QUESTIONS else questions),
      with_questions=questions is not None, lock_dir=config.work_dir), strategy)
  summary["train"] = realm["train"]
  log = realm["heldout_log"]
  if log:
    change = heldout_lib.paired_change(log[0], log[-1])
    if change is not None:
      summary["heldout_utility_change"] = change
    recall_change = heldout_lib.paired_recall_change(log[0], log[-1])
    if recall_change is not None:
      summary["question_recall_change"] = recall_change
    scalars_log = [heldout_lib.scalar_figures(r) for r in log]  # per-sentence lists: heldout.jsonl
    summary["heldout_start"], summary["heldout_end"] = scalars_log[0], scalars_log[-1]
    summary["heldout"] = scalars_log
    summary["goals"] = learning_goals(log[0], log[-1])
  return summary


def ict_config(config: PretrainJobConfig) -> ict_experiment.IctConfig:
  """The ICT stage's config as the main job builds it from its own."""
  return ict_experiment.IctConfig(
      retriever=retriever_config(config), batch_size=config.ict_batch_size,
      num_train_steps=config.ict_steps, learning_rate=config.ict_learning_rate,
      warmup_steps=config.ict_steps // 10, seed=config.seed,
      # REALM's cadence, so a killed ICT run resumes mid-run (a cadence changes no weight).
      checkpoint_every=config.checkpoint_every, heldout_fraction=config.heldout_fraction)


def runs_reader_warmup(config: PretrainJobConfig) -> bool:
  """Whether the job warms the reader up: its initial weights have no MLM head."""
  return config.reader_warmup_steps > 0 and not warm_start.has_mlm_head(config.reader_init)


def reader_warmup_config(config: PretrainJobConfig) -> reader_warmup.ReaderWarmupConfig:
  """The reader warm-up stage's config as the main job builds it from its own."""
  block_length, query_length = shapes(config)
  return reader_warmup.ReaderWarmupConfig(
      knowledge_encoder=reader_encoder(config), query_length=query_length,
      seq_length=query_length + block_length,
      batch_size=config.reader_warmup_batch_size, num_train_steps=config.reader_warmup_steps,
      learning_rate=config.reader_warmup_learning_rate,
      warmup_steps=config.reader_warmup_steps // 10,
      train_encoder=config.reader_warmup_train_encoder,
      remove_rate=config.reader_warmup_remove_rate,
      evidence=config.reader_warmup_evidence, masking=config.masking,
      distractor_rate=config.reader_warmup_distractor_rate,
      max_predictions=(RealmConfig.max_predictions if config.reader_warmup_evidence ==
                       "span_match" else reader_warmup.ReaderWarmupConfig.max_predictions),
      seed=config.seed, heldout_fraction=config.heldout_fraction,
      realm_query_fraction=config.realm_query_fraction,
      # REALM's cadence, so a killed warm-up resumes mid-run (a cadence changes no weight).
      checkpoint_every=config.checkpoint_every)


def pretrain_config(config: PretrainJobConfig) -> PretrainConfig:
  """The REALM stage's config as the main job builds it from its own (benchmarks that vary the
  REALM stage start from this one, so they measure what the main job runs)."""
  steps = config.num_train_steps
  every = config.refresh_every_steps
  retriever = retriever_config(config)
  block_length, query_length = shapes(config)
  return PretrainConfig(
      model=RealmConfig(retriever_encoder=retriever.encoder, reader_encoder=reader_encoder(config),
                        projection_size=retriever.projection_size,
                        share_towers=config.share_towers,
                        query_seq_length=query_length,
                        doc_seq_length=block_length,
                        joint_seq_length=query_length + block_length,
                        num_candidates=config.num_candidates,
                        retriever_pooling=config.retriever_pooling,
                        retriever_projection_dropout=config.projection_dropout,
                        retriever_objective=config.retriever_objective,
                        null_score_bias=config.null_bias_learning_rate > 0),
      batch_size=config.batch_size, num_train_steps=steps,
      learning_rate=config.learning_rate,
      warmup_steps=config.warmup_steps if config.warmup_steps is not None else steps // 10,
      masking=config.masking, seed=config.seed, shuffle_window=config.shuffle_window,
      refresh=config.refresh,
      refresh_every_steps=every, export_every_steps=config.export_every_steps or every,
      checkpoint_every=config.checkpoint_every, heldout_fraction=config.heldout_fraction,
      realm_query_fraction=config.realm_query_fraction if runs_reader_warmup(config) else 0.0,
      train_retriever=config.train_retriever, train_reader=config.train_reader,
      retriever_lr_multiplier=config.retriever_lr_multiplier,
      retrieval_score_scale=config.retrieval_score_scale,
      null_bias_learning_rate=config.null_bias_learning_rate)


def learning_goals(start: Dict, end: Dict) -> Dict[str, bool]:
  """The main job's learning goals, computed from the held-out figures before and after REALM."""
  goals = {
      "heldout_utility_positive": end.get("heldout_retrieval_utility", -1.0) > 0,
      "heldout_utility_improved": end.get("heldout_retrieval_utility", -1.0) >
                                  start.get("heldout_retrieval_utility", 0.0),
      "null_posterior_below_0.9": end.get("heldout_null_posterior", 1.0) < 0.9,
  }
  change = heldout_lib.paired_change(start, end)
  if change is not None:
    # The same held-out sentences before and after: the change sentence by sentence, beyond
    # twice its standard error, is not noise of the sentence sample.
    goals["heldout_utility_improved_beyond_2_stderr"] = \
        change["mean"] > 2.0 * change["paired_stderr"]
  elif "heldout_retrieval_utility_stderr" in end and "heldout_retrieval_utility_stderr" in start:
    # Records without per-sentence utilities: the unpaired bound (conservative, as it ignores
    # the two measurements' positive correlation).
    noise = 2.0 * float(np.hypot(start["heldout_retrieval_utility_stderr"],
                                 end["heldout_retrieval_utility_stderr"]))
    goals["heldout_utility_improved_beyond_2_stderr"] = (
        end["heldout_retrieval_utility"] - start["heldout_retrieval_utility"] > noise)
  if "question_recall@5" in start:
    goals["question_recall@5_not_below_start"] = \
        end["question_recall@5"] >= start["question_recall@5"]
  return goals


def format_summary(summary: Dict) -> str:
  """The human-readable closing lines of the main job."""
  lines = [f"Corpus: {summary.get('corpus_blocks')} blocks, "
           f"{summary.get('annotated_records')} annotated passages."]
  if summary.get("ict"):  # a resumed job skips finished stages and has no figures for them
    lines.append("ICT warm start: " + ", ".join(f"{k}={v:.4f}" for k, v in
                                                summary["ict"].items()))
  if summary.get("reader_warmup"):
    lines.append("Reader warm-up (MLM, no retrieval): " + ", ".join(
        f"{k}={v:.4f}" for k, v in summary["reader_warmup"].items()))
  for stage, label in (("heldout_start", "before REALM (the retriever's start)"),
                       ("heldout_end", "after REALM")):
    r = summary.get(stage)
    if r:
      lines.append(f"Held-out, {label}, step {r['step']}, index v{r['index_version']}: "
                   + format_figures(r))
  change = summary.get("heldout_utility_change")
  if change:
    lines.append(f"Held-out utility change, sentence by sentence over the same "
                 f"{change['sentences']}: {change['mean']:+.4f} ± {change['paired_stderr']:.4f} "
                 "(standard error)")
  moved = summary.get("question_recall_change")
  if moved:
    lines.append(f"Question recall@5 change, question by question over the same "
                 f"{moved['questions']}: {moved['gained']} gained, {moved['lost']} lost "
                 f"(net {moved['gained'] - moved['lost']:+d}; two-sided sign test "
                 f"p={moved['sign_test_p']:.2f})")
  t = summary.get("train") or {}
  if any(k in t for k in ("loss", "retrieval_utility")):  # a resumed, finished run has none
    lines.append("Last training step: " + ", ".join(
        f"{k}={t[k]:.4f}" for k in ("loss", "retrieval_utility", "mlm_accuracy",
                                    "null_posterior") if k in t))
  if "goals" in summary:
    lines.append("Learning goals: " + ", ".join(f"{k}={'yes' if v else 'NO'}"
                                                for k, v in summary["goals"].items()))
  return "\n".join(lines)
