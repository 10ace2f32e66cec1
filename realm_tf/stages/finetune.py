"""Open-QA fine-tuning (ORQA recipe): the stage's config, model construction, warm start, the
training run, and loading a fine-tuned model.

    index bundle (frozen) + corpus ──▶ FrozenIndex ─┐
    init checkpoint (REALM pre-training dir, embedder export, converted reader) ─▶ OpenQAModel
    questions (datasets: TFDS NQ/WQ/CT, SQuAD-open, jsonl:<path>) ──▶ training_data
        (features, regex answers, gold document rows) ──▶ tf.data (exact resume)
        ──▶ Trainer(openqa_task) under any strategy ──▶ <model_dir>/checkpoints, config.json

Warm start, as in REALM: the query tower from the retriever (which built the index, so query and
document embeddings share one space) and the reader's BERT from the knowledge-augmented encoder;
the span head starts fresh. CuratedTREC's regex answers are expanded with that warm-started query
tower (`training_data`).

`reader_positives` gives the reader a training signal on questions whose K read blocks bear no
answer (DPR's practice; `none` keeps ORQA's zero loss): the beam's best answer-bearing block, or
the gold document's (`gold`: SQuAD-open and JSONL `doc_id`s), is read in the K-th slot.

`retriever="bm25"` fine-tunes the reader behind BM25 (the paper's BM25 + reader baseline): the
blocks read are BM25's top K of each question (its beam for the reader positives), computed on
the host before training, with one softmax over the spans of all K blocks (the reader loss is the
marginal over the gold spans across them, as for the dense retriever); the reader adds no
retrieval logit (ORQA's BM25 baseline has none, and BM25's scores are on no scale the reader
could use without a learned one); the retriever loss is off and the query tower is not trained.
`evaluate --retriever=bm25` reads such a reader the same way (no logit), so it is trained and
scored consistently. With no logit to rank the blocks, the reader itself must choose among the
K blocks evaluation reads, so K should be `reader_beam_size` (OpenQAConfig's default; the CLI's
default behind BM25): a reader trained on fewer blocks (with a positive substituted, only
answer-bearing ones) never learns to compare blocks, and `run` warns.
"""
import dataclasses
import json
import os
from typing import Dict, Optional, Sequence

import tensorflow as tf
import tf_keras
from absl import logging

from realm_tf.data.block_lookup import BlockLookup
from realm_tf.io import paths
from realm_tf.modeling.encoder_config import EncoderConfig
from realm_tf.modeling.retriever import RetrieverConfig
from realm_tf.openqa import datasets
from realm_tf.openqa import training_data
from realm_tf.modeling.openqa_features import OpenQAExample, QuestionFeaturizer
from realm_tf.modeling.openqa_model import READER_POSITIVES, FrozenIndex, OpenQAConfig, OpenQAModel
from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.text import RealmTokenizer
from realm_tf.stages.openqa_task import RETRIEVERS, openqa_task
from realm_tf.stages import stage_rules
from realm_tf.training.optimizer import create_optimizer
from realm_tf.training import warm_start
from realm_tf.training.trainer import CONFIG_FILE, Trainer, check_or_write_config
from realm_tf.config_base import ConfigBase

@dataclasses.dataclass
class FinetuneConfig(ConfigBase):
  """A fine-tuning run (recorded in model_dir/config.json)."""
  NESTED = {"model": OpenQAConfig}
  IGNORE_UNKNOWN = True  # older runs recorded fields that were since removed
  model: OpenQAConfig = OpenQAConfig()
  dataset: str = "nq_open_orqa"
  train_split: str = "train"
  batch_size: int = 8
  num_train_steps: int = 1000
  learning_rate: float = 1e-5       # ORQA's fine-tuning learning rate
  # The query tower's rate as a multiple of learning_rate (1.0: ORQA, one rate for both); below
  # 1 lets a reader learn fast from a pretrained start without moving a good retriever as far.
  retriever_lr_multiplier: float = 1.0
  warmup_steps: Optional[int] = None  # default 10% of the run
  clip_norm: float = 1.0
  seed: int = 0
  checkpoint_every: int = 200
  log_every: int = 10
  regex_search_blocks: int = 100    # CuratedTREC: blocks searched for each answer pattern
  max_train_examples: Optional[int] = None
  # What the reader reads when none of its K blocks bears an answer: beam | gold | none (ORQA).
  reader_positives: str = "beam"
  # The scale of every retrieval logit (a softmax temperature of 1/scale), in total. None: the
  # index bundle's own (`index_score_scale`: what REALM pre-training applied, recorded in its
  # exports), so a scale is never applied twice; a value other than the bundle's rescales the
  # warm-started query tower by value / bundle's. ORQA: 1.0. A sentence encoder's geometry behind
  # the layer-normed projection gives inner products of ±d·cos (d = 384 for MiniLM): 20/d gives
  # a usable softmax.
  retrieval_score_scale: Optional[float] = None
  # Where the blocks the reader reads in training come from: dense (the query tower's beam,
  # ORQA) | bm25 (BM25's top rows; no retrieval logit, no retriever loss: module docstring).
  retriever: str = "dense"

  def __post_init__(self):
    if self.reader_positives not in READER_POSITIVES:
      raise ValueError(f"reader_positives must be one of {READER_POSITIVES}, got "
                       f"{self.reader_positives!r}.")
    if self.retriever not in RETRIEVERS:
      raise ValueError(f"retriever must be one of {RETRIEVERS}, got {self.retriever!r}.")



# ---------------------------------------------------------------------------------------------
# Model construction and warm start.

def index_retriever_config(bundle) -> RetrieverConfig:
  """The query tower's shape: the retriever config of the export that built the index."""
  meta = bundle.query_embedder.metadata if bundle is not None else None
  if meta and "retriever_config" in meta:
    return RetrieverConfig.from_dict(meta["retriever_config"])
  if meta:
    return RetrieverConfig(encoder=EncoderConfig.from_dict(meta["encoder_config"]),
                           projection_size=int(meta["embedding_dim"]),
                           query_seq_length=int(meta["query_seq_length"]),
                           doc_seq_length=int(meta["doc_seq_length"]))
  raise ValueError("The index bundle has no query embedder metadata.")


def index_score_scale(bundle) -> float:
  """The scale the bundle's retrieval scores already carry: the `retrieval_score_scale` its query
  embedder's export records (REALM pre-training's warm-start temperature), else 1."""
  return float(bundle.query_embedder.metadata.get("retrieval_score_scale", 1.0))


def load_index(index_dir: str, corpus_dir: str):
  """(bundle, FrozenIndex) of the newest bundle in `index_dir` over `corpus_dir`."""
  bundle = bundle_lib.latest(index_dir)
  return bundle, frozen_index(bundle, corpus_dir)


def frozen_index(bundle, corpus_dir: str) -> FrozenIndex:
  """The FrozenIndex of `bundle` over `corpus_dir`'s blocks (its memory-mapped BlockLookup)."""
  return FrozenIndex.from_bundle(bundle, BlockLookup.open(corpus_dir))


def build_model(config: OpenQAConfig, index: FrozenIndex, tokenizer: RealmTokenizer,
                strategy: Optional[tf.distribute.Strategy] = None) -> OpenQAModel:
  """Builds (all variables created) the OpenQAModel inside `strategy.scope()`."""
  strategy = strategy or tf.distribute.get_strategy()
  with strategy.scope():
    model = OpenQAModel(config, index, tokenizer.vocab, tokenizer.cls_id, tokenizer.sep_id,
                        name="openqa")
    model.build_all()
  return model


def _optimizer(config: FinetuneConfig, model: OpenQAModel):
  warmup = config.warmup_steps if config.warmup_steps is not None else \
      max(config.num_train_steps // 10, 0)
  query_tower = model.query_encoder.trainable_variables + \
      model.query_projection.trainable_variables
  return create_optimizer(config.learning_rate, config.num_train_steps, warmup,
                          variable_multipliers=[(query_tower, config.retriever_lr_multiplier)])


@dataclasses.dataclass
class FinetuneJobConfig(ConfigBase):
  """The fine-tuning stage: what to train (`finetune`, recorded in model_dir), from where, and
  on what.

  The model shape follows the index (`index_dir`'s newest bundle, frozen): the query tower is
  the bundle's retriever config. Without `init_checkpoint` the query tower starts from the
  bundle's own query embedder and the reader from scratch (or `reader_init_checkpoint`).
  `data_dir`/`manual_dir` are TFDS's; `strict` stops on a malformed line of a `jsonl:<path>`
  dataset instead of skipping it.
  """
  NESTED = {"finetune": FinetuneConfig}
  finetune: FinetuneConfig = dataclasses.field(default_factory=FinetuneConfig)
  index_dir: str = ""
  corpus_dir: str = ""
  model_dir: str = ""
  init_checkpoint: Optional[str] = None
  reader_init_checkpoint: Optional[str] = None
  data_dir: Optional[str] = None
  manual_dir: Optional[str] = None
  jit_compile: bool = False
  strict: bool = False
  # The folder whose writer lock the stage holds while it runs (None: its model_dir); the
  # main job gives its work dir.
  lock_dir: Optional[str] = None


def run(job: FinetuneJobConfig, strategy: Optional[tf.distribute.Strategy] = None,
        examples: Optional[Sequence[OpenQAExample]] = None) -> Dict:
  """The fine-tuning stage: trains on `job.finetune.dataset` (or the given `examples`),
  resuming from model_dir's checkpoints; returns the last step's scalars.

  Holds the writer lock of `lock_dir` (default: model_dir) while it runs
  (`stage_rules.writing`)."""
  with stage_rules.writing(job.lock_dir or job.model_dir):
    return _run(job, strategy, examples)


def _run(job: FinetuneJobConfig, strategy: Optional[tf.distribute.Strategy] = None,
        examples: Optional[Sequence[OpenQAExample]] = None) -> Dict:
  """`run` under the lock."""
  config, corpus_dir, model_dir = job.finetune, job.corpus_dir, job.model_dir
  strategy = strategy or tf.distribute.get_strategy()
  if examples is None:  # bad names and (strict) malformed lines stop before model_dir is written
    examples = datasets.load_examples(config.dataset, config.train_split, job.data_dir,
                                      job.manual_dir, config.max_train_examples, strict=job.strict)
  if config.batch_size % strategy.num_replicas_in_sync:
    raise ValueError(f"batch_size={config.batch_size} is not divisible by the "
                     f"{strategy.num_replicas_in_sync} replicas.")
  tokenizer = RealmTokenizer()
  bundle, index = load_index(job.index_dir, corpus_dir)
  retr = index_retriever_config(bundle)
  reader_enc = warm_start.encoder_config_of(job.reader_init_checkpoint) or \
      warm_start.encoder_config_of(job.init_checkpoint)
  reader_cfg = config.model.reader
  if reader_enc is not None and reader_enc != reader_cfg.encoder_config:
    logging.info("Reader encoder follows the init checkpoint: %d layers, hidden %d.",
                 reader_enc.num_layers, reader_enc.hidden_size)
    reader_cfg = dataclasses.replace(reader_cfg, encoder=reader_enc)
  config = dataclasses.replace(config, model=dataclasses.replace(
      config.model, retriever=retr, reader=reader_cfg))
  check_or_write_config(model_dir, dict(config.to_dict(), index_bundle=bundle.path,
                                        corpus_dir=paths.absolute(corpus_dir)),
                        config_class=FinetuneConfig)
  # Model initialisation and dropout follow the stage's seed, so a run with the same seed repeats.
  tf_keras.utils.set_random_seed(config.seed)
  model = build_model(config.model, index, tokenizer, strategy)
  with strategy.scope():
    optimizer = _optimizer(config, model)
  task = openqa_task(config.reader_positives, config.retriever)
  trainer = Trainer(model, optimizer, task, strategy, model_dir, config.batch_size,
                    config.clip_norm, config.checkpoint_every, log_every=config.log_every,
                    jit_compile=job.jit_compile, name="finetune",
                    line_keys=("loss", "retriever_loss", "reader_loss", "reader_has_answer",
                               "reader_loss_nonzero", "reader_correct"))
  warm = {}
  if not trainer.manager.latest_checkpoint:
    # Without an init checkpoint the query tower is the bundle's own (it built the index).
    warm = warm_start.init_openqa(
        model, job.init_checkpoint or os.path.join(bundle.path, bundle_lib.QUERY_EMBEDDER),
        job.reader_init_checkpoint)
    carried = index_score_scale(bundle)
    target = config.retrieval_score_scale
    if target is not None and target != carried:
      model.query_projection.rescale(target / carried)
      warm["retrieval_score_scale"] = target / carried  # the factor applied
  usable, feats = training_data.training_features(
      examples, model, QuestionFeaturizer(config.model.feature_config, tokenizer), corpus_dir,
      model_dir, config.reader_positives, config.regex_search_blocks, config.retriever)
  no_answer = int((feats["answer_length"].max(axis=1) == 0).sum())
  logging.info("Fine-tuning on %d questions (%d without a usable answer: zero loss), index %s "
               "(%d blocks), retriever %s, beams: retriever %d, reader %d in training (one "
               "softmax over their spans), %d at evaluation, reader positives: %s.",
               len(usable), no_answer, bundle.path, index.size, config.retriever,
               feats["bm25_rows"].shape[1] if "bm25_rows" in feats else
               model.retriever_beam_size, model.train_reader_beam_size, model.reader_beam_size,
               config.reader_positives)
  if config.retriever == "bm25" and model.train_reader_beam_size < model.reader_beam_size:
    logging.warning("The reader behind BM25 reads %d block(s) per training question but %d at "
                    "evaluation, with no retrieval logit to rank them: it is not trained to "
                    "choose among them (train_reader_beam_size=%d is the BM25 + reader "
                    "baseline's recipe).", model.train_reader_beam_size, model.reader_beam_size,
                    model.reader_beam_size)
  result = trainer.train(training_data.make_dataset_fn(feats, config.batch_size, config.seed),
                         config.num_train_steps)
  result.update({"num_examples": len(usable), "warm_start": warm, "index_bundle": bundle.path})
  return result


def load_finetuned(model_dir: str, index_dir: Optional[str] = None,
                   corpus_dir: Optional[str] = None,
                   strategy: Optional[tf.distribute.Strategy] = None):
  """Rebuilds a fine-tuned model from model_dir (config.json + newest checkpoint).

  Returns (model, FinetuneConfig, bundle). The index defaults to the bundle fine-tuning used.
  """
  with tf.io.gfile.GFile(os.path.join(model_dir, CONFIG_FILE)) as f:
    raw = json.load(f)
  config = FinetuneConfig.from_dict(raw)
  tokenizer = RealmTokenizer()
  if index_dir:
    bundle = bundle_lib.latest(index_dir)
    if paths.absolute(bundle.path) != paths.absolute(raw.get("index_bundle", bundle.path)):
      logging.warning("Evaluating with index %s, but fine-tuning used %s.", bundle.path,
                      raw.get("index_bundle"))
  else:
    bundle = bundle_lib.open_bundle(raw["index_bundle"])
  index = frozen_index(bundle, corpus_dir or raw.get("corpus_dir"))
  model = build_model(config.model, index, tokenizer, strategy)
  ckpt = warm_start.latest_checkpoint(model_dir)
  tf.train.Checkpoint(model=model).read(ckpt).expect_partial().assert_existing_objects_matched()
  logging.info("Loaded fine-tuned model %s.", ckpt)
  return model, config, bundle
