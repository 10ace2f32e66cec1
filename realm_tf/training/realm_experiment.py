"""REALM pre-training: wires data, index bundles, the model and the trainer together.

    annotations ─mask─▶ masked queries ─▶ retrieve with the newest bundle (stale index)
      ─▶ featurize ─▶ Trainer(RealmPretrainer, realm_pretrain_task) ─▶ checkpoints,
      embedder exports every N steps ─▶ refresh (inline here, or the separate refresh_index
      job) ─▶ the pipeline switches to the new bundle at the next refresh point.
"""
import dataclasses
import json
import os
from typing import Dict, Optional

import tensorflow as tf
import tf_keras
from absl import logging

from realm_tf.data import corpus as corpus_lib
from realm_tf.data import masking as masking_lib
from realm_tf.data.block_store import BlockStore
from realm_tf.data.pretrain_pipeline import (PipelineConfig, bundle_retrieve_fn,
                                             indexed_masked_examples, make_pretrain_dataset)
from realm_tf.modeling.realm_pretrainer import RealmConfig, RealmPretrainer
from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.retrieval import embedder_export
from realm_tf.text import RealmTokenizer
from realm_tf.training import tasks
from realm_tf.training.optimizer import create_optimizer
from realm_tf.training.trainer import Trainer, check_or_write_config

REFRESH_MODES = ("inline", "async", "none")


class BundleMismatchError(ValueError):
  """The index bundle was built from another corpus than the one being trained on."""


# How often a run checkpoints, exports and refreshes, and in which refresh mode: a resumed run may
# change these (e.g. continue an async run inline); they do not change what is trained.
SCHEDULE_FIELDS = ("refresh", "refresh_every_steps", "export_every_steps", "checkpoint_every",
                   "log_every")


@dataclasses.dataclass
class PretrainConfig:
  """Everything that defines a pre-training run (recorded in model_dir/config.json)."""
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
  checkpoint_every: int = 500
  log_every: int = 10

  def to_dict(self) -> Dict:
    d = dataclasses.asdict(self)
    d["model"] = self.model.to_dict()
    return d


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


def restore_retriever(retriever, checkpoint_dir: str) -> str:
  """Loads retriever weights from an ICT (or any Trainer) model_dir's newest checkpoint."""
  path = tf.train.latest_checkpoint(os.path.join(checkpoint_dir, "checkpoints")) or \
      tf.train.latest_checkpoint(checkpoint_dir)
  if not path:
    raise FileNotFoundError(f"No checkpoint under {checkpoint_dir} to warm-start the retriever.")
  tf.train.Checkpoint(model=retriever).restore(path).expect_partial().assert_existing_objects_matched()
  logging.info("Retriever warm-started from %s.", path)
  return path


class RealmExperiment:
  """One pre-training run: owns the model, trainer, block store and the live bundle."""

  def __init__(self, config: PretrainConfig, corpus_dir: str, annotations_dir: str,
               index_dir: str, model_dir: str, strategy: Optional[tf.distribute.Strategy] = None,
               refresher=None, data_service: Optional[str] = None, jit_compile: bool = False):
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
    corpus_manifest = corpus_lib.load_manifest(corpus_dir)
    corpus_lib.load_annotation_manifest(annotations_dir)
    self.bundle = bundle_lib.latest(index_dir)
    check_bundle_matches_corpus(self.bundle, corpus_dir)
    # Only once every input checks out does the run claim (or re-enter) its model_dir.
    check_or_write_config(model_dir, dict(config.to_dict(),
                                          corpus_fingerprint=corpus_manifest["fingerprint"]),
                          may_change=SCHEDULE_FIELDS)
    self.tokenizer = RealmTokenizer()
    self.store = BlockStore([corpus_dir], self.tokenizer, config.model.doc_seq_length)
    m = config.model
    self.masker = masking_lib.Masker(
        masking_lib.MaskingConfig(mode=config.masking, seed=config.seed,
                                  query_length=m.query_seq_length,
                                  max_predictions=m.max_predictions), self.tokenizer)
    self.pipeline_config = PipelineConfig(
        batch_size=config.batch_size // self.strategy.num_replicas_in_sync *
        self.strategy.num_replicas_in_sync,
        num_candidates=m.num_candidates, query_seq_length=m.query_seq_length,
        doc_seq_length=m.doc_seq_length, joint_seq_length=m.joint_seq_length)
    with self.strategy.scope():
      self.model = RealmPretrainer(m)
      self.model.build_all()
      self.optimizer = create_optimizer(config.learning_rate, config.num_train_steps,
                                        config.warmup_steps)
    self.trainer = Trainer(self.model, self.optimizer, tasks.realm_pretrain_task, self.strategy,
                           model_dir, self.pipeline_config.batch_size, config.clip_norm,
                           config.checkpoint_every, log_every=config.log_every,
                           jit_compile=jit_compile, name="realm")

  def masked_examples(self, start_position: int) -> tf.data.Dataset:
    """Masked queries from raw position `start_position` on (repeating the annotations)."""
    return indexed_masked_examples(self.annotations_dir, self.masker, start_position)

  def make_dataset(self, start_position: int) -> tf.data.Dataset:
    """The featurized pipeline over the live bundle, from `start_position`."""
    # On tf.data service workers the bundle is read from its path, not shipped in the graph.
    retrieve = bundle_retrieve_fn(self.bundle, self.config.model.num_candidates,
                                  load_on_worker=bool(self.data_service))
    return make_pretrain_dataset(self.masked_examples(start_position), retrieve, self.store,
                                 self.pipeline_config, self.tokenizer.cls_id,
                                 self.tokenizer.sep_id, data_service=self.data_service)

  def export(self, step: int) -> str:
    """Publishes the current embedder for the refresh job."""
    return embedder_export.export_embedder(self.model.retriever, self.model_dir, step,
                                           tokenizer=self.tokenizer)

  def _bundle_step(self) -> int:
    source = str(self.bundle.manifest.get("source_export", ""))
    return self.bundle.step if source.startswith(os.path.abspath(self.model_dir)) or \
        source.startswith(self.model_dir) else 0

  def _hook(self, step: int) -> bool:
    cfg = self.config
    exported = None
    if step % cfg.export_every_steps == 0 or step == cfg.num_train_steps:
      exported = self.export(step)
    if step % cfg.refresh_every_steps and step != cfg.num_train_steps:
      return False
    if cfg.refresh == "inline":
      exported = exported or self.export(step)
      self.bundle = self.refresher.refresh(exported) or bundle_lib.latest(self.index_dir)
      logging.info("Inline refresh at step %d → %s", step, self.bundle)
      return True
    if cfg.refresh == "async":
      newest = bundle_lib.latest(self.index_dir)
      if newest.version != self.bundle.version:
        check_bundle_matches_corpus(newest, self.corpus_dir)
        self.bundle = newest
        logging.info("Switched to %s at step %d.", newest, step)
        return True
    return False

  def train(self, init_retriever_from: Optional[str] = None,
            init_reader=None) -> Dict[str, float]:
    """Runs (or resumes) training to `num_train_steps`; returns the last step's scalars.

    On a fresh model_dir the retriever is warm-started from `init_retriever_from` (an ICT
    model_dir) and `init_reader(knowledge_encoder)` may load BERT weights into the reader.
    """
    if not self.trainer.manager.latest_checkpoint:
      if init_retriever_from:
        restore_retriever(self.model.retriever, init_retriever_from)
      if init_reader is not None:
        init_reader(self.model.knowledge_encoder)
    return self.trainer.train(
        self.make_dataset, self.config.num_train_steps, hooks=[self._hook],
        extra_scalars=lambda step: {"index_staleness": float(step - self._bundle_step())})
