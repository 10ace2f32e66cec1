"""ICT warm start of the retriever (ORQA's Inverse Cloze Task), the first embedder export."""
import dataclasses
from typing import Dict, Optional

import tensorflow as tf
import tf_keras

from realm_tf.data import corpus as corpus_lib
from realm_tf.data import ict_examples as ict_lib
from realm_tf.modeling.retriever import INPUT_KEYS, Retriever, RetrieverConfig
from realm_tf.retrieval import embedder_export
from realm_tf.text import RealmTokenizer
from realm_tf.stages import stage_rules
from realm_tf.stages import tasks
from realm_tf.training import warm_start
from realm_tf.training.optimizer import create_optimizer
from realm_tf.training.trainer import Trainer, check_or_write_config, without_keys
from realm_tf.config_base import ConfigBase


@dataclasses.dataclass
class IctConfig(ConfigBase):
  """An ICT run: retriever shape, batch (in-batch negatives), schedule."""
  NESTED = {"retriever": RetrieverConfig}
  retriever: RetrieverConfig = RetrieverConfig()
  batch_size: int = 32
  num_train_steps: int = 1000
  learning_rate: float = 1e-4
  warmup_steps: int = 100
  remove_sentence_rate: float = 0.9
  seed: int = 0
  # Blocks are read in a seeded order, permuted within windows of this many blocks (resumable).
  shuffle_window: int = 16384
  # Share of blocks (by id) never used as ICT queries: the held-out set of evaluations.
  heldout_fraction: float = 0.0
  checkpoint_every: int = 200
  log_every: int = 10



def ict_examples(corpus_dir: str, builder, batch_size: int, start_position: int = 0,
                 seed: int = 0, shuffle_window: int = 16384, heldout_fraction: float = 0.0,
                 num_shards: int = 1, shard_index: int = 0) -> tf.data.Dataset:
  """Batched ICT examples from position `start_position` of the shuffled, repeated corpus
  (input pipeline `shard_index` of `num_shards`: `corpus.positioned_stream`).

  Blocks come in a seeded order (`corpus.shuffled_stream`), so in-batch negatives are not the
  same article's blocks; held-out blocks (`corpus.is_heldout`) are never queries. Each batch
  carries `data_position` (one past its last stream position) for exact resume.
  """
  blocks, keep = corpus_lib.training_blocks(corpus_dir, seed, shuffle_window, start_position,
                                            heldout_fraction, num_shards=num_shards,
                                            shard_index=shard_index)

  def _inputs(ex):
    out = {"block_id": ex["block_id"], "index": ex["index"]}
    for k in INPUT_KEYS:
      out[f"query/{k}"] = ex[f"query_{k}"]
      out[f"block/{k}"] = ex[f"block_{k}"]
    return out

  ds = builder.dataset(blocks, start_index=None, keep_index=True, keep=keep).map(_inputs)
  return corpus_lib.batch_with_data_position(ds, batch_size)


@dataclasses.dataclass
class IctJobConfig(ConfigBase):
  """The ICT stage: what to train (`ict`, recorded in model_dir) and where.

  `init` is any source `warm_start.init_retriever` takes (e.g. `minilm` or a BERT checkpoint),
  loaded into both towers on a fresh model_dir. With `index_dir`, the stage also makes sure an
  index bundle is live there (built from its export, refused below `min_recall`).
  """
  NESTED = {"ict": IctConfig}
  ict: IctConfig = dataclasses.field(default_factory=IctConfig)
  corpus_dir: str = ""
  model_dir: str = ""
  index_dir: Optional[str] = None
  init: Optional[str] = None
  min_recall: float = 0.9
  jit_compile: bool = False  # XLA-compile the train step (Trainer)
  # The folder whose writer lock the stage holds while it runs (None: its model_dir); the
  # main job gives its work dir.
  lock_dir: Optional[str] = None


def _train(job: IctJobConfig, strategy: tf.distribute.Strategy) -> Dict:
  """Trains (or resumes) ICT and exports the embedder; returns scalars + export path."""
  config, model_dir = job.ict, job.model_dir
  # How often it checkpoints and logs may change on resume (a work dir of an older cadence
  # resumes under the main job's); they change no weight.
  check_or_write_config(model_dir, config.to_dict(), may_change=("checkpoint_every", "log_every"))
  # Model initialisation and dropout follow the stage's seed, so a run with the same seed repeats.
  tf_keras.utils.set_random_seed(config.seed)
  tokenizer = RealmTokenizer()
  with strategy.scope():
    retriever = Retriever(config.retriever, name="retriever")
    retriever.build_towers()
    optimizer = create_optimizer(config.learning_rate, config.num_train_steps,
                                 config.warmup_steps)
  trainer = Trainer(retriever, optimizer, tasks.ict_task, strategy, model_dir,
                    config.batch_size, checkpoint_every=config.checkpoint_every,
                    log_every=config.log_every, jit_compile=job.jit_compile, name="ict")
  if job.init and not trainer.manager.latest_checkpoint:
    warm_start.init_retriever(retriever, job.init)

  builder = ict_lib.ICTExampleBuilder(
      ict_lib.IctExampleConfig(seed=config.seed, query_length=config.retriever.query_seq_length,
                        block_length=config.retriever.doc_seq_length,
                        remove_rate=config.remove_sentence_rate), tokenizer)

  def make_dataset(position, shard):
    return without_keys(  # the step reads the blocks' wordpieces, not their int64 ids
        ict_examples(job.corpus_dir, builder, shard.batch_size, position, config.seed,
                     config.shuffle_window, config.heldout_fraction, shard.count, shard.index),
        ("block_id",))

  scalars = trainer.train(make_dataset, config.num_train_steps)
  # Re-running a finished ICT job returns its existing export.
  scalars["export"] = embedder_export.export_embedder(retriever, model_dir,
                                                      config.num_train_steps, tokenizer=tokenizer)
  return scalars


def run(config: IctJobConfig, strategy: Optional[tf.distribute.Strategy] = None) -> Dict:
  """The ICT stage: trains the retriever (resuming from model_dir), exports its embedder and,
  with `index_dir`, makes sure a bundle is live there, built from the new export when there is
  none, so that REALM can start from it. Returns the last step's scalars, the export and the
  live bundle's path (`bundle`). Holds the writer lock of `lock_dir` (default: model_dir)
  while it runs (`stage_rules.writing`)."""
  with stage_rules.writing(config.lock_dir or config.model_dir):
    return _run(config, strategy)


def _run(config: IctJobConfig, strategy: Optional[tf.distribute.Strategy] = None) -> Dict:
  """`run` under the lock."""
  from realm_tf.retrieval.refresh import IndexRefresher, RefreshConfig  # pylint: disable=g-import-not-at-top
  strategy = strategy or tf.distribute.get_strategy()
  summary = _train(config, strategy)
  if config.index_dir:
    refresher = IndexRefresher(RefreshConfig(model_dir=config.model_dir,
                                             corpus_dir=config.corpus_dir,
                                             index_dir=config.index_dir,
                                             min_recall=config.min_recall),
                               strategy=strategy)
    summary["bundle"] = refresher.ensure_live(summary["export"]).path
  return summary
