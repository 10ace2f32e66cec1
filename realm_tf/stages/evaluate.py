"""Open-QA evaluation: official EM / CuratedTREC regex match, retrieval recall@k, predictions JSONL.

Questions go through the model in batches — one `predict_spans` call per batch (retrieval by
exact MIPS, reading of the top K blocks, best span) — and the host turns the best span into text
through the block's byte offsets. Each prediction line of the JSONL holds the answer, its
probability (softmax over every span of the K blocks read) and the evidence blocks (id, title,
text, retrieval score, whether it contains a gold answer): REALM's interpretability made visible.

Bad input never stops a run: an empty or white-space question gets the empty prediction (wrong,
still counted, so EM stays comparable with the official numbers), a question longer than the
query length is truncated, a regex that does not compile never matches, stray unicode in answers
is normalised — each with a logged warning naming the example.

`retriever="bm25"` swaps the dense retriever for BM25 over the same index blocks (`bm25.py`,
rank_bm25's Okapi BM25): the same fine-tuned reader reads BM25's top K, and EM and recall@k are
reported exactly as for dense retrieval, so one command scores any reader behind either.
"""
import contextlib
import dataclasses
import json
import os
import time
import weakref
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.config_base import ConfigBase
from realm_tf.io import atomic
from realm_tf.io import paths
from realm_tf.openqa import metrics
from realm_tf.openqa.features import OpenQAExample, QuestionFeaturizer, clean_text, span_text
from realm_tf.text import RealmTokenizer

DEFAULT_RECALL_KS = (1, 5, 10, 20)
RETRIEVERS = ("dense", "bm25")
_INFERENCE_KEYS = ("query/input_word_ids", "query/input_mask", "query/input_type_ids",
                   "question_ids", "question_length")


# Traced prediction functions per model, shared by Predictors (tracing costs seconds).
_FUNCTIONS = weakref.WeakKeyDictionary()


class Predictor:
  """Batched answering with an OpenQAModel: `predict(examples)` → one dict per example.

  `num_retrieved` blocks are retrieved per question (for recall@k and the evidence list); the
  model reads the first `reader_beam_size` of them. `retrieve_fn(examples, features)` may replace
  the dense retriever (e.g. BM25): it returns {"rows": int [B, R], "scores": float [B, R]} and
  optionally "reader_logits" [B, R] (what the reader adds to span scores; default "scores").
  `retriever="bm25"` (without a retrieve_fn) uses `bm25.BM25Retriever` over the model's index.
  """

  def __init__(self, model, tokenizer: Optional[RealmTokenizer] = None,
               num_retrieved: int = 20,
               retrieve_fn: Optional[Callable] = None, retriever: str = "dense"):
    if retriever not in RETRIEVERS:
      raise ValueError(f"retriever must be one of {RETRIEVERS}, got {retriever!r}.")
    self.model = model
    self.tokenizer = tokenizer or RealmTokenizer()
    self.featurizer = QuestionFeaturizer(model.config.feature_config, self.tokenizer)
    self.num_retrieved = max(min(num_retrieved, model.index.size), model.reader_beam_size)
    if retrieve_fn is None and retriever == "bm25":
      from realm_tf.openqa import bm25  # pylint: disable=g-import-not-at-top
      retrieve_fn = bm25.BM25Retriever(model.index, self.num_retrieved)
    self.retrieve_fn = retrieve_fn
    self.num_calls = 0
    fc = model.config.feature_config
    spec = {
        "query/input_word_ids": tf.TensorSpec([None, fc.query_seq_length], tf.int32),
        "query/input_mask": tf.TensorSpec([None, fc.query_seq_length], tf.int32),
        "query/input_type_ids": tf.TensorSpec([None, fc.query_seq_length], tf.int32),
        "question_ids": tf.TensorSpec([None, fc.reader_query_length - 2], tf.int32),
        "question_length": tf.TensorSpec([None], tf.int32),
    }
    r = self.num_retrieved
    cache = _FUNCTIONS.setdefault(model, {})
    if ("dense", r) not in cache:
      cache[("dense", r)] = tf.function(
          lambda f: model.predict_spans(f, num_retrieved=r), input_signature=[spec])
    if "given" not in cache:
      cache["given"] = tf.function(
          lambda f, rows, logits: model.predict_spans(f, rows=rows, retrieval_scores=logits),
          input_signature=[spec, tf.TensorSpec([None, None], tf.int32),
                           tf.TensorSpec([None, None], tf.float32)])
    self._dense = cache[("dense", r)]
    self._given = cache["given"]

  def predict(self, examples: Sequence[OpenQAExample]) -> List[Dict]:
    """Answers one batch of examples with a single model call (empty questions skip the model)."""
    out: List[Optional[Dict]] = [None] * len(examples)
    live = []
    for i, e in enumerate(examples):
      if not clean_text(e.question, "question", e.qid):  # nothing left to ask
        logging.warning("Example %r has an empty question; predicting the empty answer.", e.qid)
        out[i] = {"prediction": "", "probability": 0.0, "evidence": [], "answer_rank": None}
      else:
        live.append(i)
    if not live:
      return out
    batch = [examples[i] for i in live]
    feats = self.featurizer.featurize(batch)
    inputs = {k: tf.constant(feats[k]) for k in _INFERENCE_KEYS}
    display_scores = None
    if self.retrieve_fn is None:
      res = self._dense(inputs)
    else:
      given = self.retrieve_fn(batch, feats)
      rows = np.asarray(given["rows"], np.int32)
      display_scores = np.asarray(given["scores"], np.float32)
      logits = np.asarray(given.get("reader_logits", display_scores), np.float32)
      res = self._given(inputs, tf.constant(rows), tf.constant(logits))
    self.num_calls += 1
    rows = res["rows"].numpy()
    scores = res["retrieval_scores"].numpy() if display_scores is None else display_scores
    block = res["block_index"].numpy()
    chosen = rows[np.arange(len(rows)), block]
    index = self.model.index
    texts = span_text(self.tokenizer, index.texts(chosen)[1],
                      res["start_piece"], res["end_piece"]).numpy()
    prob = res["probability"].numpy()
    k_read = self.model.reader_beam_size
    for j, i in enumerate(live):
      titles, bodies = index.texts(rows[j])
      evidence = [{"rank": int(rank), "block_id": int(index.block_ids[r]),
                   "title": titles[rank], "text": bodies[rank],
                   "retrieval_score": float(scores[j, rank]), "read": bool(rank < k_read)}
                  for rank, r in enumerate(rows[j])]
      out[i] = {"prediction": texts[j].decode("utf-8", "replace"),
                "probability": float(prob[j]), "evidence": evidence,
                "answer_rank": int(block[j])}
    return out


def evaluate(model, examples: Sequence[OpenQAExample], batch_size: int = 8,
             recall_ks: Sequence[int] = DEFAULT_RECALL_KS, predictions_path: Optional[str] = None,
             retrieve_fn: Optional[Callable] = None,
             tokenizer: Optional[RealmTokenizer] = None, log_every: int = 50,
             retriever: str = "dense") -> Dict:
  """Scores `model` on `examples`; optionally writes the predictions JSONL (atomically).

  Returns {"exact_match", "num_examples", "num_correct", "recall@k"..., "num_empty_questions",
  "mean_probability", "examples_per_second", "retriever"}. EM is the official normalised exact
  match, or the regex match for examples whose answers are regular expressions (CuratedTREC).
  `retriever` is `dense` (the model's query tower) or `bm25` (BM25 over the same blocks, read
  by the same reader); a `retrieve_fn` overrides both (reported as `custom`).
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
  predictor = Predictor(model, tokenizer, max(recall_ks) if recall_ks else 0, retrieve_fn,
                        retriever)
  ks = tuple(k for k in recall_ks if k <= predictor.num_retrieved)
  if len(ks) < len(tuple(recall_ks)):
    logging.warning("recall@k for k > %d (the corpus size) is not reported.",
                    predictor.num_retrieved)
  scorer = metrics.OpenQAScorer(ks)
  out = contextlib.nullcontext()
  if predictions_path:
    tf.io.gfile.makedirs(os.path.dirname(paths.absolute(predictions_path)))
    # Written as results arrive; published only if the whole evaluation succeeds.
    out = atomic.atomic_open(predictions_path, "wb")
  with out as writer:
    start = time.time()
    empty = 0
    probs = []
    for s in range(0, len(examples), batch_size):
      batch = list(examples[s:s + batch_size])
      preds = predictor.predict(batch)
      answers = [e.answers for e in batch]
      regex = [e.is_regex for e in batch]
      blocks = [[ev["text"] for ev in p["evidence"]] for p in preds]
      correct = scorer.update([p["prediction"] for p in preds], answers, regex, blocks)
      hits = metrics.retrieval_hits(blocks, answers, regex)
      for j, (e, p) in enumerate(zip(batch, preds)):
        empty += not p["evidence"]
        probs.append(p["probability"])
        for rank, ev in enumerate(p["evidence"]):
          ev["has_answer"] = bool(hits[j, rank])
        if writer is not None:
          # backslashreplace: a lone surrogate in a gold answer becomes a JSON \uXXXX escape,
          # so the line stays valid UTF-8 JSON.
          writer.write(json.dumps({
              "qid": e.qid, "question": e.question, "answers": list(e.answers),
              "answers_are_regex": e.is_regex, "prediction": p["prediction"],
              "probability": p["probability"], "correct": bool(correct[j]),
              "answer_block_rank": p["answer_rank"], "evidence": p["evidence"]},
              ensure_ascii=False).encode("utf-8", "backslashreplace") + b"\n")
      done = min(s + batch_size, len(examples))
      if log_every and (s // batch_size) % log_every == 0:
        logging.info("Evaluated %d/%d: %s", done, len(examples), scorer.result())
  elapsed = max(time.time() - start, 1e-9)
  result = scorer.result()
  # Empty questions were answered without retrieval: recall counts them as misses.
  result.update({"num_empty_questions": empty,
                 "mean_probability": float(np.mean(probs)) if probs else 0.0,
                 "examples_per_second": len(examples) / elapsed,
                 "model_calls": predictor.num_calls,
                 "retriever": "custom" if retrieve_fn is not None else retriever})
  return result


@dataclasses.dataclass
class EvaluateConfig(ConfigBase):
  """The evaluation stage: which fine-tuned model, on which questions, behind which retriever,
  and where the metrics (`<output_prefix>.json`) and predictions (`.jsonl`) go.

  The index and corpus default to the ones fine-tuning used (recorded in its config.json); the
  output prefix to `<model_dir>/eval/<dataset>-<split>` (`-bm25` appended for BM25).
  """
  model_dir: str = ""
  dataset: str = "squad_open"
  split: str = "test"
  strict: bool = False
  retriever: str = "dense"
  index_dir: Optional[str] = None
  corpus_dir: Optional[str] = None
  data_dir: Optional[str] = None
  manual_dir: Optional[str] = None
  batch_size: int = 8
  recall_ks: List[int] = dataclasses.field(default_factory=lambda: list(DEFAULT_RECALL_KS))
  max_examples: Optional[int] = None
  output_prefix: Optional[str] = None

  def __post_init__(self):
    if self.retriever not in RETRIEVERS:
      raise ValueError(f"retriever must be one of {RETRIEVERS}, got {self.retriever!r}.")


def run(config: EvaluateConfig, strategy: Optional[tf.distribute.Strategy] = None) -> Dict:
  """The evaluation stage: loads the fine-tuned model (its variables under `strategy`'s scope,
  the current strategy by default) and the questions, scores them (`evaluate`), publishes the
  metrics JSON and the predictions JSONL; returns the metrics."""
  from realm_tf.openqa import datasets  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import finetune  # pylint: disable=g-import-not-at-top
  t0 = time.time()
  datasets.check_dataset(config.dataset)
  with (strategy or tf.distribute.get_strategy()).scope():
    model, _, bundle = finetune.load_finetuned(config.model_dir, config.index_dir,
                                               config.corpus_dir)
  examples = datasets.load_examples(config.dataset, config.split, config.data_dir,
                                    config.manual_dir, config.max_examples, strict=config.strict)
  suffix = "-bm25" if config.retriever == "bm25" else ""
  prefix = config.output_prefix or os.path.join(
      config.model_dir, "eval", f"{datasets.dataset_tag(config.dataset)}-{config.split}{suffix}")
  result = evaluate(model, examples, config.batch_size, config.recall_ks,
                    predictions_path=prefix + ".jsonl", retriever=config.retriever)
  result.update({"dataset": config.dataset, "split": config.split,
                 "model_dir": config.model_dir, "index_bundle": bundle.path,
                 "predictions": prefix + ".jsonl", "wall_seconds": round(time.time() - t0, 1)})
  atomic.write_json(prefix + ".json", result)
  logging.info("Evaluation written to %s.json (%d examples, %.0f s).", prefix,
               result.get("num_examples", 0), result["wall_seconds"])
  return result
