"""The end-to-end pre-training job behind `python -m realm_tf.launch.pretrain`.

Every stage writes its output through atomic renames and is skipped when that output exists,
so re-running the command after a kill resumes where it stopped.
"""
import os
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.data import corpus as corpus_lib
from realm_tf.data import masking as masking_lib
from realm_tf.data.documents import default_corpus_path
from realm_tf.data.squad_open import load_squad_questions
from realm_tf.evaluation import recall as recall_lib
from realm_tf.modeling.encoder_config import get_encoder_config
from realm_tf.modeling.realm_pretrainer import RealmConfig
from realm_tf.modeling.retriever import RetrieverConfig
from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.retrieval.refresh import IndexRefresher, RefreshConfig
from realm_tf.text import RealmTokenizer
from realm_tf.training.ict_experiment import (IctConfig, hf_initializer, run_ict,
                                               tower_initializer)
from realm_tf.training.realm_experiment import PretrainConfig, RealmExperiment

EVAL_SEED = 20_200_210  # masked-sentence evaluation queries differ from training ones


def ensure_corpus(inputs: Optional[List[str]], corpus_dir: str) -> Dict:
  """Builds the block corpus unless `corpus_dir` already holds one; returns its manifest."""
  if tf.io.gfile.exists(os.path.join(corpus_dir, corpus_lib.MANIFEST)):
    return corpus_lib.load_manifest(corpus_dir)
  from realm_tf.data.build_corpus import BuildCorpusConfig, build_corpus  # pylint: disable=g-import-not-at-top
  result = build_corpus(BuildCorpusConfig(inputs=inputs or [default_corpus_path()],
                                          output_dir=corpus_dir, num_shards=2))
  logging.info("Corpus: %d blocks in %s (%s)", result["manifest"]["num_blocks"], corpus_dir,
               result["counters"])
  return result["manifest"]


def ensure_annotations(corpus_dir: str, annotations_dir: str) -> Dict:
  """Annotates salient spans in the corpus blocks unless already done; returns the manifest."""
  if tf.io.gfile.exists(os.path.join(annotations_dir, corpus_lib.ANNOTATION_MANIFEST)):
    return corpus_lib.load_annotation_manifest(annotations_dir)
  from realm_tf.data.annotate import AnnotateConfig, annotate_corpus  # pylint: disable=g-import-not-at-top
  result = annotate_corpus(AnnotateConfig(output_dir=annotations_dir, corpus_dir=corpus_dir,
                                          num_shards=2))
  logging.info("Annotations: %s", result["counters"])
  return result["manifest"]


def masked_eval_features(annotations_dir: str, tokenizer: RealmTokenizer, n: int,
                         masking: str = "salient") -> Dict[str, np.ndarray]:
  """The first `n` masked sentences under the evaluation seed, as numpy arrays."""
  ds = masking_lib.masked_dataset(
      annotations_dir, masking_lib.MaskingConfig(mode=masking, seed=EVAL_SEED), tokenizer)
  feats = {}
  for batch in ds.take(n).batch(n):
    feats = {k: v.numpy() for k, v in batch.items()}
  return feats


def measure_recall(bundle, annotations_dir: str, corpus_dir: str, num_queries: int,
                   with_squad: bool, squad_path: Optional[str] = None) -> Dict[str, float]:
  """Zero-shot recall@5 of `bundle`'s query embedder over `bundle`'s index.

  SQuAD questions come from `squad_path` (default: the shipped dev set the default corpus is built
  from); their gold paragraphs must be documents of `corpus_dir`.
  """
  tokenizer = RealmTokenizer()
  emb = np.asarray(bundle.embeddings, np.float32)
  ids = np.asarray(bundle.block_ids)
  embed = bundle.query_embedder.embed_queries
  out = {"masked_sentence_recall@5": recall_lib.masked_sentence_recall(
      embed, emb, ids, masked_eval_features(annotations_dir, tokenizer, num_queries))}
  if with_squad:
    questions = load_squad_questions(squad_path)
    rng = np.random.RandomState(0)
    pick = rng.choice(len(questions), size=min(num_queries, len(questions)), replace=False)
    out["squad_question_recall@5"] = recall_lib.squad_recall(
        embed, emb, ids, [questions[i] for i in sorted(pick)],
        recall_lib.doc_blocks(corpus_dir))
  out["index_version"] = bundle.version
  return out


def run(flags_, dirs: Dict[str, str], strategy) -> Dict:
  """Runs every stage; returns the summary printed by the launcher."""
  summary: Dict = {"dirs": dirs}
  preset = get_encoder_config(flags_.preset)
  corpus_manifest = ensure_corpus(flags_.input, dirs["corpus"])
  annotation_manifest = ensure_annotations(dirs["corpus"], dirs["annotations"])
  summary["corpus_blocks"] = corpus_manifest["num_blocks"]
  summary["annotated_records"] = annotation_manifest["num_records"]
  init = hf_initializer(flags_.init_from_hf)

  # ICT warm start → first export → first bundle.
  pooling = flags_.retriever_pooling
  ict_config = IctConfig(retriever=RetrieverConfig(encoder=preset, pooling=pooling),
                         batch_size=flags_.ict_batch_size,
                         num_train_steps=max(flags_.ict_steps, 1),
                         learning_rate=flags_.ict_learning_rate,
                         warmup_steps=max(flags_.ict_steps // 10, 0), seed=flags_.seed,
                         checkpoint_every=max(flags_.ict_steps, 1))

  ict = run_ict(ict_config, dirs["corpus"], dirs["ict"], strategy,
                init_weights=tower_initializer(init)) \
      if flags_.ict_steps > 0 else None
  refresher = IndexRefresher(RefreshConfig(model_dir=dirs["realm"], corpus_dir=dirs["corpus"],
                                           index_dir=dirs["index"], min_recall=flags_.min_recall),
                             strategy=strategy)
  live = refresher.live_bundle()
  if live is None:
    if ict is None:
      raise ValueError("No index bundle and --ict_steps=0: build one with refresh_index first.")
    live = refresher.refresh(ict["export"])
  steps = flags_.num_train_steps
  if steps <= 0:  # preparation only (corpus, annotations, ICT, first index): see launch/
    return summary
  with_squad = not flags_.input
  summary["before"] = measure_recall(bundle_lib.latest(dirs["index"]), dirs["annotations"],
                                     dirs["corpus"], flags_.eval_queries, with_squad) \
      if not tf.io.gfile.exists(os.path.join(dirs["realm"], "checkpoints")) else \
      summary.get("before")

  config = PretrainConfig(
      model=RealmConfig(retriever_encoder=preset, reader_encoder=preset,
                        num_candidates=flags_.num_candidates, retriever_pooling=pooling),
      batch_size=flags_.batch_size, num_train_steps=steps, learning_rate=flags_.learning_rate,
      warmup_steps=flags_.warmup_steps if flags_.warmup_steps is not None else steps // 10,
      masking=flags_.masking, seed=flags_.seed, refresh=flags_.refresh,
      refresh_every_steps=flags_.refresh_every_steps,
      export_every_steps=flags_.export_every_steps or flags_.refresh_every_steps,
      checkpoint_every=flags_.checkpoint_every)
  experiment = RealmExperiment(config, dirs["corpus"], dirs["annotations"], dirs["index"],
                               dirs["realm"], strategy,
                               refresher=refresher if flags_.refresh == "inline" else None,
                               data_service=flags_.data_service, jit_compile=flags_.jit_compile)
  scalars = experiment.train(init_retriever_from=dirs["ict"] if ict else None,
                             init_reader=(lambda k: init(k.encoder)) if init else None)
  summary["train"] = {k: v for k, v in scalars.items() if isinstance(v, (int, float, str))}
  summary["after"] = measure_recall(bundle_lib.latest(dirs["index"]), dirs["annotations"],
                                    dirs["corpus"], flags_.eval_queries, with_squad)
  return summary


def format_summary(summary: Dict) -> str:
  """The human-readable closing lines of the main job."""
  lines = [f"Corpus: {summary.get('corpus_blocks')} blocks, "
           f"{summary.get('annotated_records')} annotated passages."]
  for stage, label in (("before", "after ICT warm start"), ("after", "after REALM pre-training")):
    r = summary.get(stage) or {}
    parts = [f"{k}={v:.3f}" for k, v in r.items() if k.endswith("@5")]
    if parts:
      lines.append(f"Zero-shot retrieval {label} (index v{r.get('index_version')}): "
                   + ", ".join(parts))
  if "train" in summary:
    t = summary["train"]
    lines.append("Last training step: " + ", ".join(
        f"{k}={t[k]:.4f}" for k in ("loss", "retrieval_utility", "mlm_accuracy",
                                    "null_posterior") if k in t))
  return "\n".join(lines)
