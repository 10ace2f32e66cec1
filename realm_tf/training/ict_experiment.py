"""ICT warm start of the retriever (ORQA's Inverse Cloze Task), the first embedder export."""
import dataclasses
from typing import Dict, Optional

import tensorflow as tf

from realm_tf.data import corpus as corpus_lib
from realm_tf.data import ict as ict_lib
from realm_tf.modeling.retriever import INPUT_KEYS, Retriever, RetrieverConfig
from realm_tf.retrieval import embedder_export
from realm_tf.text import RealmTokenizer
from realm_tf.training import tasks
from realm_tf.training.optimizer import create_optimizer
from realm_tf.training.trainer import Trainer, check_or_write_config


@dataclasses.dataclass
class IctConfig:
  """An ICT run: retriever shape, batch (in-batch negatives), schedule."""
  retriever: RetrieverConfig = RetrieverConfig()
  batch_size: int = 32
  num_train_steps: int = 1000
  learning_rate: float = 1e-4
  warmup_steps: int = 100
  remove_sentence_rate: float = 0.9
  seed: int = 0
  checkpoint_every: int = 200
  log_every: int = 10

  def to_dict(self) -> Dict:
    d = dataclasses.asdict(self)
    d["retriever"] = self.retriever.to_dict()
    return d


def ict_examples(corpus_dir: str, builder, batch_size: int, start_position: int = 0
                 ) -> tf.data.Dataset:
  """Batched ICT examples from raw block position `start_position` on, repeating the corpus.

  Each batch carries `data_position` (one past its last raw block index) for exact resume.
  """
  blocks = corpus_lib.read_blocks(corpus_dir).repeat().skip(start_position)

  def _inputs(ex):
    out = {"block_id": ex["block_id"], "index": ex["index"]}
    for k in INPUT_KEYS:
      out[f"query/{k}"] = ex[f"query_{k}"]
      out[f"block/{k}"] = ex[f"block_{k}"]
    return out

  ds = builder.dataset(blocks, start_index=start_position, keep_index=True).map(_inputs)
  ds = ds.batch(batch_size, drop_remainder=True)

  def _finish(batch):
    batch = dict(batch)
    batch["data_position"] = tf.fill([batch_size], tf.reduce_max(batch.pop("index")) + 1)
    return batch

  return ds.map(_finish).prefetch(tf.data.AUTOTUNE)


def hf_initializer(hf_dir: Optional[str]):
  """A function loading HF BERT weights (`'minilm'`: the installed MiniLM) into an encoder, or None."""
  if not hf_dir:
    return None
  from realm_tf.checkpoints import hf_bert  # pylint: disable=g-import-not-at-top
  if hf_dir == "minilm":
    hf_dir = hf_bert.default_minilm_dir()

  def load(encoder):
    hf_bert.load_hf_bert_into_encoder(hf_dir, encoder)

  return load


def tower_initializer(encoder_init):
  """Applies an encoder initializer to both retriever towers (once when they share weights)."""
  if encoder_init is None:
    return None

  def init_towers(retriever):
    encoder_init(retriever.query_encoder)
    if retriever.doc_encoder is not retriever.query_encoder:
      encoder_init(retriever.doc_encoder)

  return init_towers


def run_ict(config: IctConfig, corpus_dir: str, model_dir: str,
            strategy: Optional[tf.distribute.Strategy] = None,
            init_weights=None) -> Dict:
  """Trains the retriever with ICT and exports the embedder; returns scalars + export path.

  `init_weights(retriever)` may load pretrained towers (e.g. BERT) before training starts.
  """
  strategy = strategy or tf.distribute.get_strategy()
  check_or_write_config(model_dir, config.to_dict())
  tokenizer = RealmTokenizer()
  with strategy.scope():
    retriever = Retriever(config.retriever, name="retriever")
    retriever.build_towers()
    optimizer = create_optimizer(config.learning_rate, config.num_train_steps,
                                 config.warmup_steps)
  trainer = Trainer(retriever, optimizer, tasks.ict_task, strategy, model_dir,
                    config.batch_size, checkpoint_every=config.checkpoint_every,
                    log_every=config.log_every, name="ict")
  if init_weights is not None and not trainer.manager.latest_checkpoint:
    init_weights(retriever)

  builder = ict_lib.ICTExampleBuilder(
      ict_lib.ICTConfig(seed=config.seed, query_length=config.retriever.query_seq_length,
                        block_length=config.retriever.doc_seq_length,
                        remove_rate=config.remove_sentence_rate), tokenizer)

  def make_dataset(position):
    return ict_examples(corpus_dir, builder, config.batch_size, position)

  scalars = trainer.train(make_dataset, config.num_train_steps)
  # Re-running a finished ICT job returns its existing export.
  scalars["export"] = embedder_export.export_embedder(retriever, model_dir,
                                                      config.num_train_steps, tokenizer=tokenizer)
  return scalars
