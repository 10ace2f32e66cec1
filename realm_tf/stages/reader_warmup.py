"""The reader warm-up: masked-LM training of the knowledge-augmented encoder, with no retrieval.

REALM starts its reader from BERT, an MLM *with its head*. A reader that cannot read makes the
null document explain the masked tokens best, the retriever then puts all of its prior on the
null document, and real candidates stop receiving gradient (the null-document collapse). When
the initial weights have no MLM head (all-MiniLM-L6-v2) this stage fits one, and the encoder
too unless `train_encoder=False`, on the corpus (`realm_tf.data.mlm`) before REALM starts. It is
a resumable Trainer run; its model_dir warm-starts REALM's reader (`warm_start`).
"""
import dataclasses
from typing import Dict, Optional, Union

import tensorflow as tf
import tf_keras
from absl import logging

from realm_tf.data import corpus as corpus_lib
from realm_tf.retrieval import evidence as evidence_lib
from realm_tf.data import masking as masking_lib
from realm_tf.data import mlm as mlm_lib
from realm_tf.data.block_lookup import BlockLookup
from realm_tf.modeling.encoder_config import EncoderConfig
from realm_tf.modeling.knowledge_encoder import KnowledgeAugmentedEncoder
from realm_tf.modeling.retriever import INPUT_KEYS
from realm_tf.stages import stage_rules
from realm_tf.text import RealmTokenizer, packing
from realm_tf.training import warm_start
from realm_tf.training.optimizer import create_optimizer
from realm_tf.training.trainer import Trainer, check_or_write_config
from realm_tf.config_base import ConfigBase


EVIDENCE_MODES = ("own_block", "span_match")


@dataclasses.dataclass
class ReaderWarmupConfig(ConfigBase):
  """A reader warm-up run (recorded in model_dir/config.json)."""
  NESTED = {"knowledge_encoder": EncoderConfig}
  knowledge_encoder: Union[str, EncoderConfig] = "tiny"
  query_length: int = packing.QUERY_LENGTH
  seq_length: int = packing.JOINT_LENGTH
  max_predictions: int = 20
  mask_rate: float = 0.15
  # What the second segment holds. "own_block": random-masked sentences of a block with the rest
  # of that block (`realm_tf.data.mlm`). "span_match": REALM's masked queries with another block
  # that holds the masked span (`realm_tf.retrieval.evidence`), which teaches reading retrieved
  # text.
  evidence: str = "own_block"
  # span_match: the share of queries that read a distractor (BM25's best block without the
  # span), so that the reader learns not to trust every block it reads
  # (`realm_tf.retrieval.evidence`).
  distractor_rate: float = 0.0
  # own_block: how often the sentence is removed from its block. Kept sentences teach the reader
  # to copy from its second segment.
  remove_rate: float = 0.9
  masking: str = "salient"  # span_match: the pre-training masking mode of the queries
  batch_size: int = 16
  num_train_steps: int = 1000
  learning_rate: float = 1e-4
  warmup_steps: int = 100
  # False: only the MLM head (transform, layer norm, bias; the tied output table is the encoder's
  # word embeddings and stays fixed) is fitted.
  train_encoder: bool = True
  seed: int = 0
  shuffle_window: int = 16384
  heldout_fraction: float = 0.0  # held-out blocks are never warm-up text
  # Nor are the blocks reserved for REALM's queries (`corpus.in_query_split`).
  realm_query_fraction: float = 0.0
  checkpoint_every: int = 200
  log_every: int = 10

  def __post_init__(self):
    if self.evidence not in EVIDENCE_MODES:
      raise ValueError(f"Unknown reader warm-up evidence {self.evidence!r}; expected one of "
                       f"{EVIDENCE_MODES}.")

  def to_dict(self) -> Dict:
    """The record of config.json (names its stage: warm-up and REALM runs share encoders)."""
    return dict(super().to_dict(), stage="reader_warmup")

  @property
  def mlm_config(self) -> mlm_lib.MlmConfig:
    return mlm_lib.MlmConfig(seed=self.seed, query_length=self.query_length,
                             seq_length=self.seq_length, mask_rate=self.mask_rate,
                             remove_rate=self.remove_rate,
                             max_predictions=self.max_predictions)

  @property
  def masking_config(self) -> masking_lib.MaskingConfig:
    return masking_lib.MaskingConfig(mode=self.masking, seed=self.seed,
                                     query_length=self.query_length,
                                     max_predictions=self.max_predictions)


def mlm_task(model, batch, training):
  """Masked-LM cross-entropy, averaged over each example's masked pieces, and token accuracy."""
  logits = model({k: batch[k] for k in INPUT_KEYS}, batch["masked_positions"], training=training)
  logits = tf.cast(logits, tf.float32)
  weights = tf.cast(batch["masked_weights"], tf.float32)
  xent = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.cast(batch["masked_ids"], tf.int32), logits=logits)
  per_example = tf.reduce_sum(xent * weights, -1) / tf.maximum(tf.reduce_sum(weights, -1), 1.0)
  hit = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                         tf.cast(batch["masked_ids"], tf.int32)), tf.float32) * weights
  return per_example, {"mlm_accuracy": (tf.reduce_sum(hit), tf.reduce_sum(weights))}


def warmup_examples(corpus_dir: str, config: ReaderWarmupConfig, batch_size: int,
                    start_position: int = 0, tokenizer=None, num_shards: int = 1,
                    shard_index: int = 0) -> tf.data.Dataset:
  """Batched warm-up examples from position `start_position` of the shuffled, repeated corpus
  (input pipeline `shard_index` of `num_shards`); each batch carries `data_position` for exact
  resume."""
  blocks, keep = corpus_lib.training_blocks(corpus_dir, config.seed, config.shuffle_window,
                                            start_position, config.heldout_fraction,
                                            config.realm_query_fraction, role="warmup",
                                            num_shards=num_shards, shard_index=shard_index)
  builder = mlm_lib.MlmExampleBuilder(config.mlm_config, tokenizer)
  ds = builder.dataset(blocks, start_index=None, keep_index=True, keep=keep)
  return corpus_lib.batch_with_data_position(ds, batch_size, drop=("block_id",))


@dataclasses.dataclass
class ReaderWarmupJobConfig(ConfigBase):
  """The reader warm-up stage: what to train (`warmup`, recorded in model_dir) and where.

  `init` is any source `warm_start.init_knowledge_encoder` takes (e.g. `minilm`), loaded on a
  fresh model_dir only. `annotations_dir` (the corpus's annotations) is needed by
  `evidence="span_match"`.
  """
  NESTED = {"warmup": ReaderWarmupConfig}
  warmup: ReaderWarmupConfig = dataclasses.field(default_factory=ReaderWarmupConfig)
  corpus_dir: str = ""
  model_dir: str = ""
  init: Optional[str] = None
  annotations_dir: Optional[str] = None
  jit_compile: bool = False  # XLA-compile the train step (Trainer)
  # The folder whose writer lock the stage holds while it runs (None: its model_dir); the
  # main job gives its work dir.
  lock_dir: Optional[str] = None


def run(job: ReaderWarmupJobConfig, strategy: Optional[tf.distribute.Strategy] = None) -> Dict:
  """The reader warm-up stage: trains (or resumes) MLM with no retrieval; returns the last
  step's scalars and what was loaded (`init`). Holds the writer lock of `lock_dir` (default:
  model_dir) while it runs (`stage_rules.writing`)."""
  with stage_rules.writing(job.lock_dir or job.model_dir):
    return _run(job, strategy)


def _run(job: ReaderWarmupJobConfig, strategy: Optional[tf.distribute.Strategy] = None) -> Dict:
  """`run` under the lock."""
  config, corpus_dir, model_dir = job.warmup, job.corpus_dir, job.model_dir
  init, annotations_dir = job.init, job.annotations_dir
  if config.evidence == "span_match" and not annotations_dir:
    raise ValueError("Reader warm-up evidence 'span_match' needs the corpus's annotations_dir.")
  strategy = strategy or tf.distribute.get_strategy()
  # How often it checkpoints and logs may change on resume (a work dir of an older cadence
  # resumes under the main job's); they change no weight.
  check_or_write_config(model_dir, config.to_dict(), may_change=("checkpoint_every", "log_every"))
  # Model initialisation and dropout follow the stage's seed, so a run with the same seed repeats.
  tf_keras.utils.set_random_seed(config.seed)
  tokenizer = RealmTokenizer()
  with strategy.scope():
    model = KnowledgeAugmentedEncoder(config.knowledge_encoder, seq_length=config.seq_length,
                                      name="knowledge_encoder")
    model.build_all(config.max_predictions)
    optimizer = create_optimizer(config.learning_rate, config.num_train_steps,
                                 config.warmup_steps)
  trainer = Trainer(model, optimizer, mlm_task, strategy, model_dir, config.batch_size,
                    checkpoint_every=config.checkpoint_every, log_every=config.log_every,
                    jit_compile=job.jit_compile, name="reader_warmup")
  loaded = {}
  if init and not trainer.manager.latest_checkpoint:
    loaded = warm_start.init_knowledge_encoder(model, init)
  if not config.train_encoder:
    model.encoder.trainable = False

  if config.evidence == "span_match":
    cache = {}  # built at the first dataset request, so a finished run does not build it

    def make_dataset(position, shard):
      if "examples" not in cache:
        examples = cache["examples"] = evidence_lib.evidence_examples(
            annotations_dir, masking_lib.Masker(config.masking_config, tokenizer),
            BlockLookup.open(corpus_dir),
            config.num_train_steps * config.batch_size, config.seq_length, config.seed,
            config.shuffle_window, config.heldout_fraction, config.realm_query_fraction,
            config.distractor_rate)
        logging.info("[reader_warmup] %.0f%% of %d queries read a block that holds their span "
                     "(%.0f%% drawn to read a distractor)",
                     100 * examples["holds_span"].mean(), len(examples["holds_span"]),
                     100 * examples["distractor"].mean())
      return evidence_lib.evidence_dataset(cache["examples"], shard.batch_size, position,
                                           shard.count, shard.index)
  else:
    def make_dataset(position, shard):
      return warmup_examples(corpus_dir, config, shard.batch_size, position, tokenizer,
                             shard.count, shard.index)

  scalars = trainer.train(make_dataset, config.num_train_steps)
  scalars["init"] = loaded
  return scalars
