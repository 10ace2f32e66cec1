"""Open-QA evaluation: official EM / CuratedTREC regex match, retrieval figures, run files.

Questions go through the model in batches — one `predict_spans` call per batch (retrieval by
exact MIPS, reading of the top K blocks, best span) — and the host turns the best span into text
through the block's byte offsets. Each prediction line of the JSONL holds the answer, its
probability (softmax over every span of the K blocks read) and the evidence blocks (id, title,
text, retrieval score, whether it contains a gold answer): REALM's interpretability made visible.

Bad input never stops a run: an empty or white-space question gets the empty prediction (wrong,
still counted, so EM stays comparable with the official numbers), a question longer than the
query length is truncated, a regex that does not compile never matches, stray unicode in answers
is normalised — each with a logged warning naming the example.

`retriever="bm25"` swaps the dense retriever for BM25 over the same index blocks
(`bm25_retriever.py`, rank_bm25's Okapi BM25): the same fine-tuned reader reads BM25's top K, and
EM and recall@k are reported exactly as for dense retrieval, so one command scores any reader
behind either. The reader is given the retrieval logit it was fine-tuned with (`bm25_logits`,
bm25_retriever.READER_LOGITS): by default the model's own q · emb for BM25's blocks, or none for a
reader fine-tuned behind BM25.

`searcher="scann"` keeps the dense retriever (the fine-tuned query tower) but searches with the
ScaNN searcher the `realm_openqa_scann` export serves (`export.mips.scann_source_of`: for an
index imported from Google's release, the import's own searcher with ORQA's settings) instead
of exact MIPS in the graph: the reader reads ScaNN's top K (K its beam, ScaNN's scores as the
retrieval logit), as the served model and ORQA's predict do, so ORQA's ScaNN figure is measured
by a command (`SearcherRetriever`).

Retrieval goes `num_retrieved` blocks deep (100, DPR's depth) whatever the reader reads (its
beam, 5): DPR's top-k accuracy (k = 1, 5, 20, 100) and recall@k are counted over those blocks,
and the stage also writes them as DPR retriever results (`<prefix>.dpr.json`, the input of DPR's
and FiD's readers) and as a TREC run (`<prefix>.trec`), document ids from the corpus
(`evaluation.retrieval_outputs`, `evaluation.run_files`). Questions with judged documents and no
answer strings (BEIR queries + qrels) are evaluated for retrieval only: recall@k, nDCG@10 and
MRR@10 of the TREC run against the judgements, the reader and EM skipped.
"""
import contextlib
import dataclasses
import json
import os
import time
import weakref
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.config_base import ConfigBase
from realm_tf.evaluation import retrieval_outputs
from realm_tf.evaluation import run_files
from realm_tf.evaluation import topk_accuracy
from realm_tf.io import atomic
from realm_tf.io import paths
from realm_tf.openqa import metrics
from realm_tf.openqa.answer_text import answer_text
from realm_tf.modeling.openqa_features import QUERY_KEYS, OpenQAExample, QuestionFeaturizer, clean_text
from realm_tf.text import RealmTokenizer

DEFAULT_RECALL_KS = (1, 5, 10, 20)
DEFAULT_NUM_RETRIEVED = 100
RETRIEVERS = ("dense", "bm25")
# How the dense retriever searches the index: exact MIPS (in the graph), or the ScaNN searcher
# that `realm_openqa_scann` serves.
SEARCHERS = ("exact", "scann")
_INFERENCE_KEYS = ("query/input_word_ids", "query/input_mask", "query/input_type_ids",
                   "question_ids", "question_length")


# Traced prediction functions per model, shared by Predictors (tracing costs seconds).
_FUNCTIONS = weakref.WeakKeyDictionary()


class SearcherRetriever:
  """A `retrieve_fn` (see Predictor) that searches with a MIPS searcher instead of the model's
  exact search: the model's query tower embeds the questions, `searcher.search(q, k)` (e.g. a
  ScaNN searcher: the index bundle's own, or one built; `export.mips.ScannSource.searcher`)
  finds the rows, and its scores are the retrieval logits the reader adds.

  The first `reader_beam_size` rows are the searcher's top K asked for alone (what a served
  model reading K blocks retrieves: an approximate searcher's best K of a deeper search can
  differ); the rest, up to `k`, are the rows of one search `k` deep that are not among them, in
  its order.
  """

  def __init__(self, model, searcher, k: int):
    if not 1 <= k <= model.index.size:
      raise ValueError(f"searcher k={k} must be in 1..{model.index.size} (the index size).")
    self.model = model
    self.searcher = searcher
    self.k = int(k)
    self.num_read = min(int(model.reader_beam_size), self.k)
    length = model.config.feature_config.query_seq_length
    spec = {f"query/{key}": tf.TensorSpec([None, length], tf.int32) for key in QUERY_KEYS}
    self._embed = tf.function(lambda query: model.embed_questions(query, training=False),
                              input_signature=[spec], autograph=False)

  def _search(self, queries, k: int):
    rows, scores = self.searcher.search(queries, tf.constant(k, tf.int32))
    return np.asarray(rows, np.int32).reshape([-1, k]), \
        np.asarray(scores, np.float32).reshape([-1, k])

  def __call__(self, examples, features) -> Dict[str, np.ndarray]:
    """`retrieve_fn` protocol: {"rows" int32 [B, k], "scores" float32 [B, k]} (the searcher's
    scores, which the reader adds), the blocks read first."""
    del examples
    queries = self._embed({f"query/{key}": tf.constant(features[f"query/{key}"], tf.int32)
                           for key in QUERY_KEYS})
    rows, scores = self._search(queries, self.num_read)
    if self.k > self.num_read:
      deep_rows, deep_scores = self._search(queries, self.k)
      rows, scores = zip(*[_merge(*r) for r in zip(rows, scores, deep_rows, deep_scores)])
      rows, scores = np.stack(rows), np.stack(scores)
    if np.any(rows < 0):
      raise ValueError(f"The searcher found fewer than {self.k} blocks for a question; ask for "
                       "fewer (--num_retrieved).")
    return {"rows": rows, "scores": scores}


def _merge(rows, scores, deep_rows, deep_scores):
  """One question's rows (and scores): `rows` (found ones) first, then `deep_rows` not among
  them, in order, `len(deep_rows)` in all (-1 / -inf where there are not enough)."""
  keep = rows >= 0
  seen = set(rows[keep].tolist())
  extra = [j for j, r in enumerate(deep_rows) if r >= 0 and r not in seen]
  out_rows = np.concatenate([rows[keep], deep_rows[extra]])[:len(deep_rows)]
  out_scores = np.concatenate([scores[keep], deep_scores[extra]])[:len(deep_rows)]
  short = len(deep_rows) - len(out_rows)
  return (np.pad(out_rows, (0, short), constant_values=-1),
          np.pad(out_scores, (0, short), constant_values=-np.inf))


class Predictor:
  """Batched answering with an OpenQAModel: `predict(examples)` → one dict per example.

  `num_retrieved` blocks are retrieved per question (for recall@k and the evidence list); the
  model reads the first `reader_beam_size` of them. `retrieve_fn(examples, features)` may replace
  the dense retriever (e.g. BM25): it returns {"rows": int [B, R], "scores": float [B, R]} and
  optionally "reader_logits" [B, R] (what the reader adds to span scores; default "scores").
  `retriever="bm25"` (without a retrieve_fn) uses `bm25_retriever.BM25Retriever` over the model's
  index, the reader given `bm25_logits` (bm25_retriever.READER_LOGITS) for BM25's blocks.
  `searcher` (an object with `.search(query_embeddings, k)`, e.g. a ScaNN searcher) makes the
  dense retriever search with it (`SearcherRetriever`) instead of exactly.
  """

  def __init__(self, model, tokenizer: Optional[RealmTokenizer] = None,
               num_retrieved: int = 20,
               retrieve_fn: Optional[Callable] = None, retriever: str = "dense",
               bm25_logits: str = "dense", searcher=None):
    if retriever not in RETRIEVERS:
      raise ValueError(f"retriever must be one of {RETRIEVERS}, got {retriever!r}.")
    if searcher is not None and (retriever != "dense" or retrieve_fn is not None):
      raise ValueError("A searcher replaces the dense retriever's exact search; it does not "
                       f"combine with retriever={retriever!r} or a retrieve_fn.")
    self.model = model
    self.tokenizer = tokenizer or RealmTokenizer()
    self.featurizer = QuestionFeaturizer(model.config.feature_config, self.tokenizer)
    self.num_retrieved = max(min(num_retrieved, model.index.size), model.reader_beam_size)
    if retrieve_fn is None and retriever == "bm25":
      from realm_tf.openqa import bm25_retriever  # pylint: disable=g-import-not-at-top
      retrieve_fn = bm25_retriever.BM25Retriever(model.index, self.num_retrieved, model,
                                                 bm25_logits)
    if searcher is not None:
      retrieve_fn = SearcherRetriever(model, searcher, self.num_retrieved)
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
          lambda f: model.predict_spans(f, num_retrieved=r), input_signature=[spec],
          autograph=False)
    if "given" not in cache:
      cache["given"] = tf.function(
          lambda f, rows, logits: model.predict_spans(f, rows=rows, retrieval_scores=logits),
          autograph=False,
          input_signature=[spec, tf.TensorSpec([None, None], tf.int32),
                           tf.TensorSpec([None, None], tf.float32)])
    if ("retrieve", r) not in cache:
      cache[("retrieve", r)] = tf.function(
          lambda f: model.retrieve(model.embed_questions(f, training=False), r),
          input_signature=[spec], autograph=False)
    self._dense = cache[("dense", r)]
    self._given = cache["given"]
    self._retrieve = cache[("retrieve", r)]

  def _live(self, examples, answer: str) -> Tuple[List[int], List[Optional[Dict]]]:
    """Indices of the examples with a question, and the output list with the empty ones set."""
    out: List[Optional[Dict]] = [None] * len(examples)
    live = []
    for i, e in enumerate(examples):
      if not clean_text(e.question, "question", e.qid):  # nothing left to ask
        logging.warning("Example %r has an empty question; %s.", e.qid, answer)
        out[i] = {"prediction": "", "probability": 0.0, "evidence": [], "answer_rank": None,
                  "rows": np.zeros([0], np.int32)}
      else:
        live.append(i)
    return live, out

  def _evidence(self, rows, scores) -> List[Dict]:
    """The evidence dicts of one question's ranked index rows."""
    index = self.model.index
    titles, bodies = index.texts(rows)
    k_read = self.model.reader_beam_size
    return [{"rank": int(rank), "block_id": int(index.block_ids[r]),
             "title": titles[rank], "text": bodies[rank],
             "retrieval_score": float(scores[rank]), "read": bool(rank < k_read)}
            for rank, r in enumerate(rows)]

  def retrieve(self, examples: Sequence[OpenQAExample]) -> List[Dict]:
    """Retrieval alone (no reading), one call per batch: {"rows", "evidence"} per example."""
    live, out = self._live(examples, "nothing is retrieved")
    if not live:
      return out
    batch = [examples[i] for i in live]
    feats = self.featurizer.featurize(batch)
    if self.retrieve_fn is None:
      scores, rows = self._retrieve({k: tf.constant(feats[k]) for k in _INFERENCE_KEYS})
      scores, rows = scores.numpy(), rows.numpy()
    else:
      given = self.retrieve_fn(batch, feats)
      rows = np.asarray(given["rows"], np.int32)
      scores = np.asarray(given["scores"], np.float32)
    self.num_calls += 1
    for j, i in enumerate(live):
      out[i] = {"rows": rows[j], "evidence": self._evidence(rows[j], scores[j])}
    return out

  def predict(self, examples: Sequence[OpenQAExample]) -> List[Dict]:
    """Answers one batch of examples with a single model call (empty questions skip the model).

    Each example's dict: prediction, probability, evidence (every retrieved block), answer_rank
    (the evidence rank the answer came from) and rows (the retrieved index rows)."""
    live, out = self._live(examples, "predicting the empty answer")
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
    texts = answer_text(self.tokenizer, index.texts(chosen)[1], res["start_piece"],
                        res["end_piece"], self.model.config.featurization).numpy()
    prob = res["probability"].numpy()
    for j, i in enumerate(live):
      out[i] = {"prediction": texts[j].decode("utf-8", "replace"),
                "probability": float(prob[j]), "evidence": self._evidence(rows[j], scores[j]),
                "answer_rank": int(block[j]), "rows": rows[j]}
    return out


def evaluate(model, examples: Sequence[OpenQAExample], batch_size: int = 8,
             recall_ks: Sequence[int] = DEFAULT_RECALL_KS, predictions_path: Optional[str] = None,
             retrieve_fn: Optional[Callable] = None,
             tokenizer: Optional[RealmTokenizer] = None, log_every: int = 50,
             retriever: str = "dense", bm25_logits: str = "dense",
             num_retrieved: int = DEFAULT_NUM_RETRIEVED, doc_ids=None,
             dpr_results_path: Optional[str] = None, trec_run_path: Optional[str] = None,
             run_tag: str = "realm_tf", scann=None) -> Dict:
  """Scores `model` on `examples`; optionally writes the predictions JSONL, the DPR retriever
  results and the TREC run (each atomically, streamed).

  Returns {"exact_match", "num_examples", "num_correct", "recall@k"..., "topK_accuracy"...,
  "num_empty_questions", "mean_probability", "examples_per_second", "retriever", "mode", ...}
  and "qrels" when questions have judged documents. EM is the official normalised exact
  match, or the regex match for examples whose answers are regular expressions (CuratedTREC).
  When no example has an answer string, the reader is not run ("mode": "retrieval_only"): no EM,
  no predictions file. `retriever` is `dense` (the model's query tower) or `bm25` (BM25 over the
  same blocks, read by the same reader with `bm25_logits`: `dense`, the model's own retrieval
  logit for them, or `zero`, none); a `retrieve_fn` overrides both (reported as `custom`).
  `num_retrieved` blocks per question (capped at the index size) are retrieved for the
  figures and the run files, whatever the reader's beam; `doc_ids` (the corpus's
  `data.doc_ids.DocIdTable`) names their documents in the run files and the qrels figures.
  `scann` (an `export.mips.ScannSource`) makes the dense retriever search with its ScaNN
  searcher (SearcherRetriever), as `realm_openqa_scann` serves; the result then says
  "searcher": "scann" and describes it ("scann"), else "searcher": "exact".
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
  if num_retrieved < 1:
    raise ValueError(f"num_retrieved must be >= 1, got {num_retrieved}.")
  depth = min(num_retrieved, model.index.size)
  predictor = Predictor(model, tokenizer, max([depth] + list(recall_ks)), retrieve_fn,
                        retriever, bm25_logits, scann.searcher if scann is not None else None)
  ks = tuple(k for k in recall_ks if k <= predictor.num_retrieved)
  if len(ks) < len(tuple(recall_ks)):
    logging.warning("recall@k for k > %d (the corpus size) is not reported.",
                    predictor.num_retrieved)
  # The predictions file lists the blocks recall@k and the reader looked at, not all `depth`.
  num_evidence = max(ks + (model.reader_beam_size,))
  read = any(e.answers for e in examples)
  if not read:
    logging.info("No question has an answer string: retrieval-only evaluation (the reader and "
                 "EM are skipped; figures from the judged documents).")
  scorer = metrics.OpenQAScorer(())
  outputs = retrieval_outputs.RetrievalOutputs(
      model.index, doc_ids, dpr_results_path, trec_run_path, run_tag, depth, ks,
      tuple(k for k in topk_accuracy.DPR_KS if k <= num_retrieved))
  out = contextlib.nullcontext()
  if predictions_path and read:
    tf.io.gfile.makedirs(os.path.dirname(paths.absolute(predictions_path)))
    # Written as results arrive; published only if the whole evaluation succeeds.
    out = atomic.atomic_open(predictions_path, "wb")
  with out as writer, outputs:
    start = time.time()
    empty = 0
    probs = []
    for s in range(0, len(examples), batch_size):
      batch = list(examples[s:s + batch_size])
      preds = predictor.predict(batch) if read else predictor.retrieve(batch)
      answers = [e.answers for e in batch]
      regex = [e.is_regex for e in batch]
      blocks = [[ev["text"] for ev in p["evidence"]] for p in preds]
      hits = metrics.retrieval_hits(blocks, answers, regex)
      if read:
        correct = scorer.update([p["prediction"] for p in preds], answers, regex)
      for j, (e, p) in enumerate(zip(batch, preds)):
        empty += not p["evidence"]
        for rank, ev in enumerate(p["evidence"]):
          ev["has_answer"] = bool(hits[j, rank])
        outputs.add(e, p["rows"], p["evidence"], hits[j])
        if writer is not None:
          probs.append(p["probability"])
          # backslashreplace: a lone surrogate in a gold answer becomes a JSON \uXXXX escape,
          # so the line stays valid UTF-8 JSON.
          writer.write(json.dumps({
              "qid": e.qid, "question": e.question, "answers": list(e.answers),
              "answers_are_regex": e.is_regex, "prediction": p["prediction"],
              "probability": p["probability"], "correct": bool(correct[j]),
              "answer_block_rank": p["answer_rank"],
              "evidence": p["evidence"][:num_evidence]},
              ensure_ascii=False).encode("utf-8", "backslashreplace") + b"\n")
      done = min(s + batch_size, len(examples))
      if log_every and (s // batch_size) % log_every == 0:
        logging.info("Evaluated %d/%d: %s", done, len(examples),
                     {**scorer.result(), **outputs.result()} if read else outputs.result())
  elapsed = max(time.time() - start, 1e-9)
  result = scorer.result() if read else {"num_examples": len(examples)}
  # Empty questions were answered without retrieval: the figures count them as misses.
  result.update(outputs.result())
  result.update({"mode": "reader" if read else "retrieval_only", "num_retrieved": depth,
                 "num_empty_questions": empty,
                 "examples_per_second": len(examples) / elapsed,
                 "model_calls": predictor.num_calls,
                 "retriever": "custom" if retrieve_fn is not None else retriever,
                 "searcher": "scann" if scann is not None else "exact"})
  if scann is not None:
    result["scann"] = scann.description
  if read:
    result["mean_probability"] = float(np.mean(probs)) if probs else 0.0
  if retrieve_fn is None and retriever == "bm25":
    result["bm25_logits"] = bm25_logits
  return result


def summary_line(result: Dict) -> str:
  """The one line `python -m realm_tf.launch.evaluate` prints: EM and top-k accuracy (or, for
  retrieval-only questions, the judged-document figures and a note that the reader was
  skipped), and where the files went."""
  name = f"{result.get('dataset', 'questions')} {result.get('split', '')}".strip()
  searcher = " (ScaNN search)" if result.get("searcher") == "scann" else ""
  head = (f"{name}, {result.get('retriever', 'dense')} retriever{searcher}, "
          f"{result['num_examples']} questions:")
  accuracy = [k for k in topk_accuracy.DPR_KS if topk_accuracy.accuracy_key(k) in result]
  parts = []
  if result.get("mode") == "retrieval_only":
    parts.append("reader and EM skipped (no answer strings)")
  else:
    parts.append(f"EM {100 * result['exact_match']:.1f}")
  if accuracy:
    parts.append("top-" + "/".join(map(str, accuracy)) + " accuracy " + "/".join(
        f"{100 * result[topk_accuracy.accuracy_key(k)]:.1f}" for k in accuracy))
  qrels = result.get("qrels")
  if qrels:
    recalls = [key for key in qrels if key.startswith("recall@")]
    parts.append(f"judged ({qrels['num_queries']} questions): nDCG@10 {qrels['ndcg@10']:.3f}, "
                 f"MRR@10 {qrels['mrr@10']:.3f}" +
                 (f", {recalls[-1]} {qrels[recalls[-1]]:.3f}" if recalls else ""))
  files = [result[key] for key in ("metrics", "predictions", "dpr_results", "trec_run")
           if result.get(key)]
  return f"{head} {'; '.join(parts)}" + (f" -> {', '.join(files)}" if files else "")


@dataclasses.dataclass
class EvaluateConfig(ConfigBase):
  """The evaluation stage: which fine-tuned model, on which questions, behind which retriever,
  and where the metrics (`<output_prefix>.json`), predictions (`.jsonl`), DPR retriever results
  (`.dpr.json`) and TREC run (`.trec`, tagged `run_tag`, default the prefix's file name) go.
  `num_retrieved` blocks are retrieved per question for the figures and the run files.

  The index and corpus default to the ones fine-tuning used (recorded in its config.json); the
  output prefix to `<model_dir>/eval/<dataset>-<split>` (`-bm25` appended for BM25,
  `-bm25-zero_logit` for `bm25_logits="zero"`). `bm25_logits` (None: the logit the reader was
  fine-tuned with, `bm25_retriever.default_reader_logits`) is what the reader adds for BM25's
  blocks. `searcher` is how the dense retriever searches (SEARCHERS): `exact`, or `scann`, the ScaNN
  searcher `export` serves in `realm_openqa_scann` (`-scann` appended to the output prefix).
  """
  model_dir: str = ""
  dataset: str = "squad_open"
  split: str = "test"
  strict: bool = False
  retriever: str = "dense"
  searcher: str = "exact"
  bm25_logits: Optional[str] = None
  index_dir: Optional[str] = None
  corpus_dir: Optional[str] = None
  data_dir: Optional[str] = None
  manual_dir: Optional[str] = None
  batch_size: int = 8
  recall_ks: List[int] = dataclasses.field(default_factory=lambda: list(DEFAULT_RECALL_KS))
  max_examples: Optional[int] = None
  output_prefix: Optional[str] = None
  num_retrieved: int = DEFAULT_NUM_RETRIEVED
  run_tag: Optional[str] = None

  def __post_init__(self):
    if self.retriever not in RETRIEVERS:
      raise ValueError(f"retriever must be one of {RETRIEVERS}, got {self.retriever!r}.")
    if self.searcher not in SEARCHERS:
      raise ValueError(f"searcher must be one of {SEARCHERS}, got {self.searcher!r}.")
    if self.searcher == "scann" and self.retriever != "dense":
      raise ValueError(f"searcher 'scann' searches the dense retriever's index; it does not "
                       f"apply to retriever {self.retriever!r}.")
    from realm_tf.openqa import bm25_retriever  # pylint: disable=g-import-not-at-top
    if self.bm25_logits not in (None,) + bm25_retriever.READER_LOGITS:
      raise ValueError(f"bm25_logits must be one of {bm25_retriever.READER_LOGITS}, got "
                       f"{self.bm25_logits!r}.")


def run(config: EvaluateConfig, strategy: Optional[tf.distribute.Strategy] = None) -> Dict:
  """The evaluation stage: loads the fine-tuned model (its variables under `strategy`'s scope,
  the current strategy by default) and the questions, scores them (`evaluate`), publishes the
  metrics JSON, the predictions JSONL, the DPR retriever results and the TREC run; returns the
  metrics (`summary_line` makes the CLI's line of them)."""
  from realm_tf.data.doc_ids import DocIdTable  # pylint: disable=g-import-not-at-top
  from realm_tf.openqa import bm25_retriever  # pylint: disable=g-import-not-at-top
  from realm_tf.openqa import datasets  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import finetune  # pylint: disable=g-import-not-at-top
  t0 = time.time()
  datasets.check_dataset(config.dataset)
  with (strategy or tf.distribute.get_strategy()).scope():
    model, trained, bundle = finetune.load_finetuned(config.model_dir, config.index_dir,
                                                     config.corpus_dir)
  bm25_logits = config.bm25_logits or bm25_retriever.default_reader_logits(trained.retriever)
  examples = datasets.load_examples(config.dataset, config.split, config.data_dir,
                                    config.manual_dir, config.max_examples, strict=config.strict)
  suffix = "-bm25" if config.retriever == "bm25" else ""
  suffix += "-scann" if config.searcher == "scann" else ""
  if config.retriever == "bm25" and config.bm25_logits == "zero":
    suffix += "-zero_logit"
  prefix = config.output_prefix or os.path.join(
      config.model_dir, "eval", f"{datasets.dataset_tag(config.dataset)}-{config.split}{suffix}")
  with tf.io.gfile.GFile(os.path.join(config.model_dir, finetune.CONFIG_FILE)) as f:
    corpus_dir = config.corpus_dir or json.load(f).get("corpus_dir")
  doc_ids = DocIdTable.open(corpus_dir, model.index.lookup)
  tag = run_files.run_tag(prefix, config.run_tag)
  scann = None
  if config.searcher == "scann":
    from realm_tf.export import mips  # pylint: disable=g-import-not-at-top
    scann = mips.scann_source_of(bundle, model.index.embeddings_np)
    logging.info("Searching with ScaNN: %s", scann.description)
  result = evaluate(model, examples, config.batch_size, config.recall_ks,
                    predictions_path=prefix + ".jsonl", retriever=config.retriever,
                    bm25_logits=bm25_logits, num_retrieved=config.num_retrieved,
                    doc_ids=doc_ids, dpr_results_path=prefix + ".dpr.json",
                    trec_run_path=prefix + ".trec", run_tag=tag, scann=scann)
  result.update({"dataset": config.dataset, "split": config.split,
                 "model_dir": config.model_dir, "index_bundle": bundle.path,
                 "metrics": prefix + ".json",
                 "predictions": prefix + ".jsonl" if result["mode"] == "reader" else None,
                 "dpr_results": prefix + ".dpr.json", "trec_run": prefix + ".trec",
                 "run_tag": tag, "wall_seconds": round(time.time() - t0, 1)})
  atomic.write_json(prefix + ".json", result)
  logging.info("Evaluation written to %s.json (%d examples, %.0f s): %s", prefix,
               result.get("num_examples", 0), result["wall_seconds"], summary_line(result))
  return result
