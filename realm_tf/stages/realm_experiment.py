"""REALM pre-training: wires data, index bundles, the model and the trainer together.

    annotations ─mask─▶ masked queries ─▶ retrieve with the newest bundle (stale index)
      ─▶ featurize ─▶ Trainer(RealmPretrainer, realm_pretrain_task) ─▶ checkpoints,
      embedder exports every N steps ─▶ refresh (inline here, or the separate refresh_index
      job) ─▶ the pipeline switches to the new bundle at the next refresh point.
"""
import dataclasses
import json
import math
import os
from typing import Dict, List, Optional

import tensorflow as tf
import tf_keras
from absl import logging

from realm_tf.data import corpus as corpus_lib
from realm_tf.data import masking as masking_lib
from realm_tf.data.block_lookup import BlockLookup
from realm_tf.data.pretrain_pipeline import (PipelineConfig, indexed_masked_examples,
                                             make_pretrain_dataset)
from realm_tf.evaluation import heldout as heldout_lib
from realm_tf.io import atomic
from realm_tf.io import chief
from realm_tf.evaluation.heldout import HeldOutConfig, HeldOutEvaluator
from realm_tf.modeling.realm_pretrainer import RealmConfig, RealmPretrainer
from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.retrieval import embedder_export
from realm_tf.retrieval.refresh import IndexRefresher, RecallTooLowError, RefreshConfig
from realm_tf.text import RealmTokenizer
from realm_tf.stages import tasks
from realm_tf.stages import stage_rules
from realm_tf.training import warm_start
from realm_tf.training.optimizer import create_optimizer
from realm_tf.training.trainer import InputShard, Trainer, check_or_write_config, without_keys
from realm_tf.utils.strategy import agreed_minimum
from realm_tf.config_base import ConfigBase

REFRESH_MODES = ("inline", "async", "none")


class BundleMismatchError(ValueError):
  """The index bundle was built from another corpus than the one being trained on."""


# How often a run checkpoints, exports and refreshes, and in which refresh mode: a resumed run may
# change these (e.g. continue an async run inline); they do not change what is trained.
SCHEDULE_FIELDS = ("refresh", "refresh_every_steps", "export_every_steps", "checkpoint_every",
                   "log_every", "keep_exports")


@dataclasses.dataclass
class PretrainConfig(ConfigBase):
  """Everything that defines a pre-training run (recorded in model_dir/config.json)."""
  NESTED = {"model": RealmConfig}
  model: RealmConfig = RealmConfig()
  batch_size: int = 8
  num_train_steps: int = 200_000
  learning_rate: float = 3e-5
  warmup_steps: int = 10_000
  clip_norm: float = 1.0
  masking: str = "salient"
  seed: int = 0
  refresh: str = "inline"
  refresh_every_steps: int = 500
  export_every_steps: int = 500
  # Embedder exports kept on disk: the newest this many plus the best by held-out utility
  # (0 keeps every export).
  keep_exports: int = 3
  checkpoint_every: int = 500
  log_every: int = 10
  # Masked queries come in a seeded order, permuted within windows of this many records.
  shuffle_window: int = 16384
  # Share of blocks (by id) whose sentences are never training queries (held-out evaluation).
  heldout_fraction: float = 0.0
  # > 0: queries come only from this share of blocks, which the reader warm-up never reads
  # (`corpus.in_query_split`); 0: from every training block.
  realm_query_fraction: float = 0.0
  # False: the retriever is frozen (an ablation: the reader alone learns from retrieval).
  train_retriever: bool = True
  # The retriever's step is this multiple of the schedule's learning rate (the reader's is 1):
  # lets a reader learn to read at a rate that would make a noisy retriever gradient wreck the
  # warm-started ranking. 1.0: one rate for both, as the paper.
  retriever_lr_multiplier: float = 1.0
  # False: the knowledge-augmented encoder is frozen (the retriever alone learns).
  train_reader: bool = True
  # Multiplies the warm-started retriever's scores once, at the start (warm_start.
  # scale_retrieval_scores): a temperature that keeps REALM's prior over candidates from being
  # one-hot when the warm start scores at ±projection_size. 1.0: the warm start as it is.
  retrieval_score_scale: float = 1.0
  # Peak learning rate of the model's null bias (`RealmConfig.null_score_bias`, which must be on
  # when this is > 0): one scalar, the prior's "no evidence" logit, that the towers' rates would
  # move by a few hundredths in a short run. It follows the same warm-up and decay.
  null_bias_learning_rate: float = 0.0



def check_bundle_matches_corpus(bundle, corpus_dir: str) -> None:
  """Refuses a bundle whose documents are not (a superset built from) this corpus."""
  manifest = corpus_lib.load_manifest(corpus_dir)
  fingerprints = bundle.manifest.get("corpus_fingerprints") or [
      bundle.manifest.get("corpus_fingerprint")]
  if manifest["fingerprint"] not in fingerprints:
    raise BundleMismatchError(
        f"Index bundle {bundle.path} was built from corpus {fingerprints}, but {corpus_dir} has "
        f"fingerprint {manifest['fingerprint']}. Rebuild the index for this corpus "
        "(python -m realm_tf.launch.refresh_index --once).")


HELDOUT_LOG = "heldout.jsonl"
BEST_EXPORT = embedder_export.BEST_EXPORT


class RealmExperiment:
  """One pre-training run: owns the model, trainer, block lookup, the live bundle and the
  held-out evaluator.

  Held-out figures (`realm_tf.evaluation.heldout`) are measured before the first step, after
  every index refresh (or switch to a newer bundle) and at the end; each measurement is appended
  to `<model_dir>/heldout.jsonl`, written to TensorBoard (`summaries/heldout`), and the embedder
  export with the best held-out retrieval utility is named in `<model_dir>/best_export.json`
  (the original trainer's best exporter).
  """

  def __init__(self, config: PretrainConfig, corpus_dir: str, annotations_dir: str,
               index_dir: str, model_dir: str, strategy: Optional[tf.distribute.Strategy] = None,
               refresher=None, data_service: Optional[str] = None, jit_compile: bool = False,
               heldout: Optional[HeldOutConfig] = None, with_questions: bool = False):
    if config.refresh not in REFRESH_MODES:
      raise ValueError(f"refresh must be one of {REFRESH_MODES}, got {config.refresh!r}.")
    if config.refresh == "inline" and refresher is None:
      raise ValueError("refresh='inline' needs an IndexRefresher.")
    self.config = config
    self.corpus_dir = corpus_dir
    self.annotations_dir = annotations_dir
    self.index_dir = index_dir
    self.model_dir = model_dir
    self.strategy = strategy or tf.distribute.get_strategy()
    self.refresher = refresher
    self.data_service = data_service
    self._exported = None  # (step, path) of this run's last embedder export
    self._dataset_bundle = None  # the bundle the live input pipeline searches
    corpus_manifest = corpus_lib.load_manifest(corpus_dir)
    # The query stream's shards whole (a truncated one reads as fewer records, no error).
    corpus_lib.verify_shards(annotations_dir, corpus_lib.load_annotation_manifest(annotations_dir))
    self.bundle = bundle_lib.latest(index_dir)
    check_bundle_matches_corpus(self.bundle, corpus_dir)
    # Only once every input checks out does the run claim (or re-enter) its model_dir.
    check_or_write_config(model_dir, dict(config.to_dict(),
                                          corpus_fingerprint=corpus_manifest["fingerprint"]),
                          may_change=SCHEDULE_FIELDS)
    self.tokenizer = RealmTokenizer()
    self.lookup = BlockLookup.open(corpus_dir)
    m = config.model
    self.masking_config = masking_lib.MaskingConfig(
        mode=config.masking, seed=config.seed, query_length=m.query_seq_length,
        max_predictions=m.max_predictions)
    self.masker = masking_lib.Masker(self.masking_config, self.tokenizer)
    self.pipeline_config = PipelineConfig(
        batch_size=config.batch_size // self.strategy.num_replicas_in_sync *
        self.strategy.num_replicas_in_sync,
        num_candidates=m.num_candidates, query_seq_length=m.query_seq_length,
        doc_seq_length=m.doc_seq_length, joint_seq_length=m.joint_seq_length)
    # Model initialisation and dropout follow the seed, so a run with the same seed repeats.
    tf_keras.utils.set_random_seed(config.seed)
    with self.strategy.scope():
      self.model = RealmPretrainer(m)
      self.model.build_all()
      if not config.train_retriever:
        self.model.retriever.trainable = False
      if not config.train_reader:
        self.model.knowledge_encoder.trainable = False
      groups = [(self.model.retriever.trainable_variables, config.retriever_lr_multiplier)]
      if m.null_score_bias:
        if config.null_bias_learning_rate <= 0 or config.learning_rate <= 0:
          raise ValueError("A null score bias needs null_bias_learning_rate > 0 (and "
                           "learning_rate > 0), got "
                           f"{config.null_bias_learning_rate} and {config.learning_rate}.")
        # The bias is part of the prior p(z|x): a frozen retriever freezes it too (rate 0).
        rate = config.null_bias_learning_rate if config.train_retriever else 0.0
        groups.append(([self.model.null_score_bias], rate / config.learning_rate))
      self.optimizer = create_optimizer(config.learning_rate, config.num_train_steps,
                                        config.warmup_steps, variable_multipliers=groups)
    self.trainer = Trainer(self.model, self.optimizer, tasks.realm_pretrain_task, self.strategy,
                           model_dir, self.pipeline_config.batch_size, config.clip_norm,
                           config.checkpoint_every, log_every=config.log_every,
                           jit_compile=jit_compile, name="realm")
    self.evaluator = None
    if heldout is not None:
      if heldout.fraction != config.heldout_fraction:
        raise ValueError(f"Held-out evaluation fraction {heldout.fraction} differs from the "
                         f"training run's heldout_fraction {config.heldout_fraction}.")
      self.evaluator = HeldOutEvaluator(heldout, annotations_dir, corpus_dir, self.masking_config,
                                        self.tokenizer, self.lookup, self.pipeline_config,
                                        with_questions=with_questions)
    self._summary_writer = None
    self._last_eval_step = None

  def masked_examples(self, start_position: int, num_shards: int = 1,
                      shard_index: int = 0) -> tf.data.Dataset:
    """Training's masked queries from stream position `start_position` on (shuffled, repeated,
    held-out blocks left out; input pipeline `shard_index` of `num_shards` reads its own share)."""
    cfg = self.config
    return indexed_masked_examples(self.annotations_dir, self.masker, start_position, cfg.seed,
                                   cfg.shuffle_window, cfg.heldout_fraction,
                                   cfg.realm_query_fraction, role="realm",
                                   num_shards=num_shards, shard_index=shard_index)

  def make_dataset(self, start_position: int,
                   shard: Optional[InputShard] = None) -> tf.data.Dataset:
    """The featurized pipeline of input pipeline `shard` (default: the only one, at the global
    batch) over the live bundle, from that pipeline's `start_position`. The trainer has dropped
    the previous pipeline by now, so a replaced bundle's searcher is released here."""
    shard = shard or InputShard(batch_size=self.pipeline_config.batch_size)
    if self._dataset_bundle is not None and self._dataset_bundle is not self.bundle:
      self._dataset_bundle.close()
    self._dataset_bundle = self.bundle
    # On tf.data service workers the bundle is read from its path, not shipped in the graph.
    retrieve = bundle_lib.bundle_retrieve_fn(self.bundle, self.config.model.num_candidates,
                                             load_on_worker=bool(self.data_service))
    dataset = make_pretrain_dataset(self.masked_examples(start_position, shard.count, shard.index),
                                    retrieve, self.lookup,
                                    dataclasses.replace(self.pipeline_config,
                                                        batch_size=shard.batch_size),
                                    self.tokenizer.cls_id,
                                    self.tokenizer.sep_id, data_service=self.data_service)
    # The step reads neither the queries' nor the candidates' int64 block ids.
    return without_keys(dataset, ("block_id", "retrieved_block_ids"))

  def export(self, step: int) -> str:
    """Publishes the current embedder for the refresh job (once per step: the refresh and the
    held-out evaluation of one step share it)."""
    if self._exported is None or self._exported[0] != step:
      # The scale its warm start put on the retriever's scores: fine-tuning reads it from the
      # index bundle (finetune.index_score_scale) so as not to apply it twice.
      self._exported = (step, embedder_export.export_embedder(
          self.model.retriever, self.model_dir, step, tokenizer=self.tokenizer,
          extra={"retrieval_score_scale": self.config.retrieval_score_scale},
          keep=self.config.keep_exports or None))
    return self._exported[1]

  def _bundle_step(self) -> int:
    source = str(self.bundle.manifest.get("source_export", ""))
    return self.bundle.step if source.startswith(os.path.abspath(self.model_dir)) or \
        source.startswith(self.model_dir) else 0

  # -- held-out evaluation ---------------------------------------------------------------------

  def heldout_log(self) -> List[Dict]:
    """Every held-out measurement of this run so far (oldest first)."""
    path = os.path.join(self.model_dir, HELDOUT_LOG)
    if not tf.io.gfile.exists(path):
      return []
    with tf.io.gfile.GFile(path) as f:
      return [json.loads(line) for line in f if line.strip()]

  def evaluate(self, step: int) -> Optional[Dict]:
    """Measures the held-out figures now; records them (log, TensorBoard, best export). The
    chief's figures are a multi-worker job's: its other workers measure nothing."""
    if self.evaluator is None or self._last_eval_step == step or not chief.is_chief_process():
      return None
    self._last_eval_step = step
    figures = self.evaluator.evaluate(self.model, self.bundle)
    record = dict(figures, step=int(step), index_version=int(self.bundle.version))
    logging.info("[heldout] step %d, index v%d: %s", step, self.bundle.version,
                 heldout_lib.format_figures(figures))
    path = os.path.join(self.model_dir, HELDOUT_LOG)
    lines = [json.dumps(r, sort_keys=True) for r in self.heldout_log() if r["step"] != step]
    lines.append(json.dumps(record, sort_keys=True))
    atomic.write_text(path, "\n".join(lines) + "\n")
    if self._summary_writer is None:
      self._summary_writer = tf.summary.create_file_writer(
          os.path.join(self.model_dir, "summaries", "heldout"))
    with self._summary_writer.as_default(step=step):
      for k, v in heldout_lib.scalar_figures(figures).items():
        tf.summary.scalar(f"heldout/{k}", v)
    self._summary_writer.flush()
    utility = figures.get("heldout_retrieval_utility")
    if step > 0 and utility is not None:
      best_path = os.path.join(self.model_dir, BEST_EXPORT)
      best = None
      if tf.io.gfile.exists(best_path):
        with tf.io.gfile.GFile(best_path) as f:
          best = json.load(f)
      if improves_best(utility, best):
        atomic.write_json(best_path, {
            "step": int(step), "export": self.export(step),
            "heldout_retrieval_utility": utility, "index_version": int(self.bundle.version)})
    return record

  # -- refresh ---------------------------------------------------------------------------------

  def _due(self, step: int, every: int) -> bool:
    """Whether a step-`every` task (export, refresh) falls at `step`: every `every` steps and at
    the last one."""
    return step % every == 0 or step == self.config.num_train_steps

  def _hook(self, step: int) -> bool:
    cfg = self.config
    exported = None
    if self._due(step, cfg.export_every_steps):
      exported = self.export(step)
    rebuild = False
    if self._due(step, cfg.refresh_every_steps):
      if cfg.refresh == "inline":
        exported = exported or self.export(step)
        try:
          self.bundle = self.refresher.refresh(exported) or bundle_lib.latest(self.index_dir)
          logging.info("Inline refresh at step %d → %s", step, self.bundle)
          rebuild = True
        except RecallTooLowError as e:
          # As the async refresher does: keep training on the last good index.
          logging.warning("Inline refresh at step %d not published (%s); training continues "
                          "on %s.", step, e, self.bundle)
      elif cfg.refresh == "async":
        newest = bundle_lib.latest(self.index_dir)
        # Every worker of a multi-worker job switches to the same bundle: the newest all have seen.
        agreed = agreed_minimum(self.strategy, newest.version)
        if agreed != newest.version:
          newest = bundle_lib.open_bundle(bundle_lib.version_path(self.index_dir, agreed))
        if newest.version != self.bundle.version:
          check_bundle_matches_corpus(newest, self.corpus_dir)
          self.bundle = newest
          logging.info("Switched to %s at step %d.", newest, step)
          rebuild = True
    if rebuild or step == cfg.num_train_steps:
      self.evaluate(step)
    return rebuild

  def train(self, retriever_init: Optional[str] = None,
            reader_init: Optional[str] = None) -> Dict[str, float]:
    """Runs (or resumes) training to `num_train_steps`; returns the last step's scalars.

    On a fresh model_dir the retriever is warm-started from `retriever_init` and the
    knowledge-augmented encoder from `reader_init` (any source `warm_start` takes: an ICT run,
    a reader warm-up, a BERT checkpoint, ...), and the held-out figures are measured once before
    the first step.
    """
    if not self.trainer.manager.latest_checkpoint:
      if retriever_init:
        warm_start.init_retriever(self.model.retriever, retriever_init)
      if reader_init:
        warm_start.init_knowledge_encoder(self.model.knowledge_encoder, reader_init)
      if self.config.retrieval_score_scale != 1.0:
        warm_start.scale_retrieval_scores(self.model.retriever, self.config.retrieval_score_scale)
      if not self.heldout_log():
        self.evaluate(0)
    return self.trainer.train(
        self.make_dataset, self.config.num_train_steps, hooks=[self._hook],
        extra_scalars=lambda step: {"index_staleness": float(step - self._bundle_step())},
        on_resume=self._finish_restored_step)

  def _finish_restored_step(self, step: int) -> None:
    """Finishes what the hook of the restored step had not published when the run stopped (its
    checkpoint is written before its hook runs): the export, the inline refresh to an index built
    from that export, and the held-out figures. Without it a run killed in between went on
    reading the previous index, and its weights differed from an uninterrupted run's."""
    cfg = self.config
    final = step == cfg.num_train_steps
    if self._due(step, cfg.export_every_steps):
      self.export(step)  # kept if it was published before the stop
    if not self._due(step, cfg.refresh_every_steps):
      return
    if cfg.refresh == "inline" and self._bundle_step() < step:
      self._hook(step)  # the refresh (from the export above), then the held-out figures
    elif (cfg.refresh == "inline" or final) and \
        step not in {int(r["step"]) for r in self.heldout_log()}:
      self.evaluate(step)


def improves_best(utility: Optional[float], best: Optional[Dict]) -> bool:
  """Whether a held-out retrieval utility names a new best export over `best` (the record in
  best_export.json, or None): only a finite utility does, so an export of weights gone NaN (or
  measured as NaN) is never published as the best, and a NaN best recorded by an older run is
  replaced by the next finite one."""
  if utility is None or not math.isfinite(float(utility)):
    return False
  old = None if best is None else best.get("heldout_retrieval_utility")
  return old is None or not math.isfinite(float(old)) or float(utility) > float(old)


@dataclasses.dataclass
class RealmJobConfig(ConfigBase):
  """The REALM stage: what to train (`pretrain`, recorded in model_dir) and where.

  `retriever_init` and `reader_init` are any sources `warm_start` takes (an ICT run or export, a
  reader warm-up, a BERT checkpoint, ...), loaded on a fresh model_dir only. The index bundle in
  `index_dir` must already be live (the ICT stage publishes the first one). With
  `pretrain.refresh == "inline"` the stage refreshes that index itself, refusing a new bundle
  whose searcher recall is below `min_recall`.
  """
  NESTED = {"pretrain": PretrainConfig, "heldout": HeldOutConfig}
  pretrain: PretrainConfig = dataclasses.field(default_factory=PretrainConfig)
  corpus_dir: str = ""
  annotations_dir: str = ""
  index_dir: str = ""
  model_dir: str = ""
  retriever_init: Optional[str] = None
  reader_init: Optional[str] = None
  min_recall: float = 0.9
  data_service: Optional[str] = None
  jit_compile: bool = False
  heldout: HeldOutConfig = dataclasses.field(default_factory=HeldOutConfig)
  with_questions: bool = False  # SQuAD-open dev recall (the corpus holds the SQuAD paragraphs)
  # The folder whose writer lock the stage holds while it runs (None: its model_dir); the
  # main job gives its work dir.
  lock_dir: Optional[str] = None


def run(job: RealmJobConfig, strategy: Optional[tf.distribute.Strategy] = None) -> Dict:
  """The REALM stage: trains (or resumes) to `num_train_steps`; returns the last step's scalars
  (`train`) and every held-out measurement in order (`heldout_log`, `<model_dir>/heldout.jsonl`).

  Holds the writer lock of `lock_dir` (default: model_dir) while it runs
  (`stage_rules.writing`)."""
  with stage_rules.writing(job.lock_dir or job.model_dir):
    return _run(job, strategy)


def _run(job: RealmJobConfig, strategy: Optional[tf.distribute.Strategy] = None) -> Dict:
  """`run` under the lock."""
  strategy = strategy or tf.distribute.get_strategy()
  refresher = None
  if job.pretrain.refresh == "inline":
    refresher = IndexRefresher(RefreshConfig(model_dir=job.model_dir, corpus_dir=job.corpus_dir,
                                             index_dir=job.index_dir, min_recall=job.min_recall),
                               strategy=strategy)
  experiment = RealmExperiment(job.pretrain, job.corpus_dir, job.annotations_dir, job.index_dir,
                               job.model_dir, strategy, refresher=refresher,
                               data_service=job.data_service, jit_compile=job.jit_compile,
                               heldout=job.heldout, with_questions=job.with_questions)
  scalars = experiment.train(retriever_init=job.retriever_init, reader_init=job.reader_init)
  return {"train": {k: v for k, v in scalars.items() if isinstance(v, (int, float, str))},
          "heldout_log": experiment.heldout_log()}
