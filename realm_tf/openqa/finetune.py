"""Open-QA fine-tuning (ORQA recipe): data, model construction, warm start, and the training run.

    index bundle (frozen) + corpus ──▶ FrozenIndex ─┐
    init checkpoint (REALM pre-training dir, embedder export, converted reader) ─▶ OpenQAModel
    questions (datasets: TFDS NQ/WQ/CT, SQuAD-open, jsonl:<path>) ──▶ QuestionFeaturizer
        (+ gold document rows for reader_positives=gold) ──▶ tf.data (exact resume)
        ──▶ Trainer(openqa_task) under any strategy ──▶ <model_dir>/checkpoints, config.json

Warm start, as in REALM: the query tower from the retriever (which built the index, so query and
document embeddings share one space) and the reader's BERT from the knowledge-augmented encoder;
the span head starts fresh. CuratedTREC's answers are regular expressions, which cannot be looked
for as wordpieces: before training, each pattern is searched (`re.search`) in the blocks the
initial query tower retrieves for its question, and the matched strings become the answers whose
wordpieces mark answer-bearing blocks and gold spans.

`reader_positives` gives the reader a training signal on questions whose K read blocks bear no
answer (DPR's practice; `none` keeps ORQA's zero loss): the beam's best answer-bearing block, or
the gold document's (`gold`: SQuAD-open and JSONL `doc_id`s), is read in the K-th slot.
"""
import dataclasses
import functools
import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

from realm_tf.data.block_store import BlockStore
from realm_tf.io import atomic
from realm_tf.modeling.encoder_config import EncoderConfig
from realm_tf.modeling.retriever import RetrieverConfig
from realm_tf.openqa import datasets
from realm_tf.openqa.features import OpenQAExample, QuestionFeaturizer, clean_text
from realm_tf.openqa.model import READER_POSITIVES, FrozenIndex, OpenQAConfig, OpenQAModel
from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.text import RealmTokenizer
from realm_tf.training.openqa_task import openqa_task
from realm_tf.training.optimizer import create_optimizer
from realm_tf.training import warm_start
from realm_tf.training.trainer import CONFIG_FILE, Trainer, check_or_write_config
from realm_tf.config_base import ConfigBase

MAX_GOLD_BLOCKS = 8  # blocks of one gold document the `gold` reader positive may pick from


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
  warmup_steps: Optional[int] = None  # default 10% of the run
  clip_norm: float = 1.0
  seed: int = 0
  checkpoint_every: int = 200
  log_every: int = 10
  regex_search_blocks: int = 100    # CuratedTREC: blocks searched for each answer pattern
  max_train_examples: Optional[int] = None
  # What the reader reads when none of its K blocks bears an answer: beam | gold | none (ORQA).
  reader_positives: str = "beam"
  # Multiplies the warm-started query tower's output, i.e. every retrieval logit (a softmax
  # temperature of 1/scale). ORQA: 1.0. A sentence encoder's geometry behind the layer-normed
  # projection gives inner products of ±d·cos (d = 384 for MiniLM): 20/d gives a usable softmax.
  retrieval_score_scale: float = 1.0

  def __post_init__(self):
    if self.reader_positives not in READER_POSITIVES:
      raise ValueError(f"reader_positives must be one of {READER_POSITIVES}, got "
                       f"{self.reader_positives!r}.")



# ---------------------------------------------------------------------------------------------
# Data (the question sets themselves are loaded by realm_tf.openqa.datasets).

def expand_regex_answers(examples: Sequence[OpenQAExample], model: OpenQAModel,
                         featurizer: QuestionFeaturizer, num_blocks: int = 100,
                         batch_size: int = 64, max_strings: int = 8) -> List[List[str]]:
  """Concrete answer strings for each example: its answers, or for regex examples the texts the
  patterns match in the `num_blocks` blocks retrieved for the question. Bad patterns are skipped
  with a warning naming the example."""
  from realm_tf.openqa import metrics  # pylint: disable=g-import-not-at-top
  out = [list(e.answers) if not e.is_regex else [] for e in examples]
  regex_ids = [i for i, e in enumerate(examples) if e.is_regex]
  if not regex_ids:
    return out
  k = min(num_blocks, model.index.size)
  bodies = model.index.bodies
  found_any = 0
  for s in range(0, len(regex_ids), batch_size):
    ids = regex_ids[s:s + batch_size]
    feats = featurizer.featurize([examples[i] for i in ids])
    q = model.embed_questions({key: tf.constant(v) for key, v in feats.items()
                               if key.startswith("query/")})
    _, rows = model.retrieve(q, k)
    for i, row in zip(ids, rows.numpy()):
      strings = []
      for pattern in examples[i].answers:
        compiled = metrics.compile_answer_pattern(clean_text(pattern, "answer pattern",
                                                             examples[i].qid))
        if compiled is None:
          logging.warning("Example %r: answer pattern %r does not compile; ignored.",
                          examples[i].qid, pattern)
          continue
        for r in row:
          for m in compiled.finditer(bodies[r]):
            text = m.group(0).strip()
            if text and text not in strings:
              strings.append(text)
          if len(strings) >= max_strings:
            break
      out[i] = strings[:max_strings]
      found_any += bool(strings)
  logging.info("Regex answers: %d of %d questions matched a string in their top %d blocks.",
               found_any, len(regex_ids), k)
  return out


def gold_row_features(examples: Sequence[OpenQAExample], index: FrozenIndex, corpus_dir: str,
                      max_blocks: int = MAX_GOLD_BLOCKS) -> np.ndarray:
  """gold_rows int32 [B, max_blocks]: index rows of each example's gold document (`doc_id`),
  in corpus order, -1 padded (all -1 without a doc_id, or one the corpus does not have).

  The `gold` reader positive picks the first of them that bears an answer.
  """
  from realm_tf.evaluation.recall import doc_blocks  # pylint: disable=g-import-not-at-top
  blocks_of = doc_blocks(corpus_dir)
  row_of = {int(b): r for r, b in enumerate(index.block_ids)}
  out = np.full([len(examples), max_blocks], -1, np.int32)
  found = unknown = 0
  for i, e in enumerate(examples):
    if not e.doc_id:
      continue
    rows = sorted(row_of[b] for b in blocks_of.get(e.doc_id, ()) if b in row_of)[:max_blocks]
    if not rows:
      unknown += 1
      continue
    out[i, :len(rows)] = rows
    found += 1
  logging.info("Gold documents: %d of %d questions have one in the index (%d name a doc_id the "
               "corpus or index lacks); the others fall back to the beam.", found,
               len(examples), unknown)
  return out


def make_dataset_fn(features: Dict[str, np.ndarray], batch_size: int, seed: int = 0):
  """`make_dataset(position)` for the Trainer: an endless, per-epoch shuffled stream of batches
  from example position `position` on, each element carrying `data_position` (exact resume)."""
  n = len(features["question_length"])
  if n == 0:
    raise ValueError("No training examples.")

  def order(epoch):
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int64)

  def make_dataset(position: int) -> tf.data.Dataset:
    def gen():
      p = int(position)
      while True:
        epoch, offset = divmod(p, n)
        perm = order(epoch)
        for i in perm[offset:]:
          p += 1
          yield i, p
    idx = tf.data.Dataset.from_generator(
        gen, output_signature=(tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int64)))
    tensors = {k: tf.constant(v) for k, v in features.items()}

    def lookup(i, p):
      ex = {k: tf.gather(v, i) for k, v in tensors.items()}
      ex["data_position"] = p
      return ex
    return idx.map(lookup).batch(batch_size, drop_remainder=True).prefetch(2)
  return make_dataset


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


def load_index(index_dir: str, corpus_dir: str, tokenizer: RealmTokenizer):
  """(bundle, FrozenIndex) of the newest bundle in `index_dir` over `corpus_dir`."""
  bundle = bundle_lib.latest(index_dir)
  doc_len = int(bundle.query_embedder.metadata.get("doc_seq_length", 288))
  store = BlockStore([corpus_dir], tokenizer, doc_seq_length=doc_len, keep_text=True)
  return bundle, FrozenIndex.from_bundle(bundle, store)


def build_model(config: OpenQAConfig, index: FrozenIndex, tokenizer: RealmTokenizer,
                strategy: Optional[tf.distribute.Strategy] = None) -> OpenQAModel:
  """Builds (all variables created) the OpenQAModel inside `strategy.scope()`."""
  strategy = strategy or tf.distribute.get_strategy()
  with strategy.scope():
    model = OpenQAModel(config, index, tokenizer.vocab, tokenizer.cls_id, tokenizer.sep_id,
                        name="openqa")
    model.build_all()
  return model


def _optimizer(config: FinetuneConfig):
  warmup = config.warmup_steps if config.warmup_steps is not None else \
      max(config.num_train_steps // 10, 0)
  opt = create_optimizer(config.learning_rate, config.num_train_steps, warmup)
  if tf_keras.mixed_precision.global_policy().name == "mixed_float16":
    opt = tf_keras.mixed_precision.LossScaleOptimizer(opt)
  return opt


def run_finetune(config: FinetuneConfig, index_dir: str, corpus_dir: str, model_dir: str,
                 init_checkpoint: Optional[str] = None,
                 reader_init_checkpoint: Optional[str] = None,
                 strategy: Optional[tf.distribute.Strategy] = None,
                 data_dir: Optional[str] = None, manual_dir: Optional[str] = None,
                 examples: Optional[Sequence[OpenQAExample]] = None,
                 jit_compile: bool = False, strict: bool = False) -> Dict:
  """Fine-tunes on `config.dataset` (or the given `examples`); returns the last step's scalars.

  The model shape follows the index: the query tower is the bundle's retriever config. Without
  `init_checkpoint` the query tower starts from the bundle's own query embedder and the reader
  from scratch (or `reader_init_checkpoint`). A restart resumes from model_dir's checkpoints.
  `strict` stops on a malformed line of a `jsonl:<path>` dataset instead of skipping it.
  """
  strategy = strategy or tf.distribute.get_strategy()
  if examples is None:  # bad names and (strict) malformed lines stop before model_dir is written
    examples = datasets.load_examples(config.dataset, config.train_split, data_dir, manual_dir,
                                      config.max_train_examples, strict=strict)
  if config.batch_size % strategy.num_replicas_in_sync:
    raise ValueError(f"batch_size={config.batch_size} is not divisible by the "
                     f"{strategy.num_replicas_in_sync} replicas.")
  tokenizer = RealmTokenizer()
  bundle, index = load_index(index_dir, corpus_dir, tokenizer)
  retr = index_retriever_config(bundle)
  reader_enc = warm_start.encoder_config_of(reader_init_checkpoint) or \
      warm_start.encoder_config_of(init_checkpoint)
  reader_cfg = config.model.reader
  if reader_enc is not None and reader_enc != reader_cfg.encoder_config:
    logging.info("Reader encoder follows the init checkpoint: %d layers, hidden %d.",
                 reader_enc.num_layers, reader_enc.hidden_size)
    reader_cfg = dataclasses.replace(reader_cfg, encoder=reader_enc)
  config = dataclasses.replace(config, model=dataclasses.replace(
      config.model, retriever=retr, reader=reader_cfg))
  check_or_write_config(model_dir, dict(config.to_dict(), index_bundle=bundle.path,
                                        corpus_dir=os.path.abspath(corpus_dir)))
  model = build_model(config.model, index, tokenizer, strategy)
  with strategy.scope():
    optimizer = _optimizer(config)
  task = functools.partial(openqa_task, reader_positives=config.reader_positives)
  trainer = Trainer(model, optimizer, task, strategy, model_dir, config.batch_size,
                    config.clip_norm, config.checkpoint_every, log_every=config.log_every,
                    jit_compile=jit_compile, name="finetune",
                    line_keys=("loss", "retriever_loss", "reader_loss", "reader_has_answer",
                               "reader_loss_nonzero", "reader_correct"))
  warm = {}
  if not trainer.manager.latest_checkpoint:
    # Without an init checkpoint the query tower is the bundle's own (it built the index).
    warm = warm_start.init_openqa(
        model, init_checkpoint or os.path.join(bundle.path, bundle_lib.QUERY_EMBEDDER),
        reader_init_checkpoint)
    if config.retrieval_score_scale != 1.0:
      model.query_projection.rescale(config.retrieval_score_scale)
      warm["retrieval_score_scale"] = config.retrieval_score_scale
  featurizer = QuestionFeaturizer(config.model.feature_config, tokenizer)
  usable = [e for e in examples if e.question.strip()]
  if len(usable) < len(examples):
    logging.warning("Skipping %d training examples with an empty question.",
                    len(examples) - len(usable))
  answers = None
  if any(e.is_regex for e in usable):
    # Expanded once, with the warm-started query tower, and kept: a resumed run trains on the
    # same answers.
    cache = os.path.join(model_dir, "regex_answers.json")
    if tf.io.gfile.exists(cache):
      with tf.io.gfile.GFile(cache) as f:
        answers = json.load(f)
      if len(answers) != len(usable):
        raise ValueError(f"{cache} holds {len(answers)} answer lists but the run has "
                         f"{len(usable)} questions; use a new --model_dir.")
    else:
      answers = expand_regex_answers(usable, model, featurizer, config.regex_search_blocks)
      atomic.write_json(cache, answers, indent=None, sort_keys=False)
  feats = featurizer.featurize(usable)
  if answers is not None:
    feats.update(featurizer.answer_features(usable, answers))
  if config.reader_positives == "gold":
    if any(e.doc_id for e in usable):
      feats["gold_rows"] = gold_row_features(usable, index, corpus_dir)
    else:
      logging.warning("reader_positives=gold, but no question names its gold document "
                      "(doc_id): the beam's answer-bearing blocks are used instead.")
  no_answer = int((feats["answer_length"].max(axis=1) == 0).sum())
  logging.info("Fine-tuning on %d questions (%d without a usable answer: zero loss), index %s "
               "(%d blocks), beams: retriever %d, reader %d, reader positives: %s.",
               len(usable), no_answer, bundle.path, index.size, model.retriever_beam_size,
               model.reader_beam_size, config.reader_positives)
  result = trainer.train(make_dataset_fn(feats, config.batch_size, config.seed),
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
    if os.path.abspath(bundle.path) != os.path.abspath(raw.get("index_bundle", bundle.path)):
      logging.warning("Evaluating with index %s, but fine-tuning used %s.", bundle.path,
                      raw.get("index_bundle"))
  else:
    bundle = bundle_lib.open_bundle(raw["index_bundle"])
  corpus_dir = corpus_dir or raw.get("corpus_dir")
  doc_len = int(bundle.query_embedder.metadata.get("doc_seq_length", 288))
  store = BlockStore([corpus_dir], tokenizer, doc_seq_length=doc_len, keep_text=True)
  index = FrozenIndex.from_bundle(bundle, store)
  model = build_model(config.model, index, tokenizer, strategy)
  ckpt = warm_start.latest_checkpoint(model_dir)
  tf.train.Checkpoint(model=model).read(ckpt).expect_partial().assert_existing_objects_matched()
  logging.info("Loaded fine-tuned model %s.", ckpt)
  return model, config, bundle
