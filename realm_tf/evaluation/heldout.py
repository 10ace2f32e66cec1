"""Held-out learning metrics of REALM pre-training: what the retriever and reader have learned.

Two yardsticks, both on data training never uses:

* **Held-out masked sentences.** A fixed share of blocks (`corpus.is_heldout`) is never an ICT
  query, never warm-up MLM text and never a REALM query. Their annotated sentences are masked
  with a fixed evaluation seed and go through the same retrieval as training (the live bundle's
  stale query embedder, own block removed, null document first). Reported: retrieval utility
  (log p(y|x) − log p(y|null, x): how much retrieval helps; the original trainer's metric), the
  null document's posterior, and MLM accuracy with retrieval (argmax of the marginal) beside the
  null document alone. Every evaluation measures the same sentences, so the record also keeps
  each sentence's utility (`PER_QUERY_UTILITY`): two evaluations compare sentence by sentence
  (`paired_change`), which is far less noisy than comparing their means.
* **Zero-shot question recall.** SQuAD-open *dev* questions (an article split; the questions are
  never trained on) against their gold paragraphs' blocks: recall@5 and @20 of the bundle's
  dense index, with BM25's recall on the same questions beside it.

Retrieving the query's own block is not a progress metric for REALM, which removes that block
from its candidates by design, so it is not reported here.
"""
import dataclasses
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from realm_tf.config_base import ConfigBase
from realm_tf.data import corpus as corpus_lib
from realm_tf.data import masking as masking_lib
from realm_tf.data.pretrain_pipeline import (PipelineConfig, heldout_masked_examples,
                                             make_pretrain_dataset)
from realm_tf.evaluation import recall as recall_lib
from realm_tf.evaluation.recall import EVAL_SEED
from realm_tf.retrieval.bundle import bundle_retrieve_fn
from realm_tf.retrieval.topk import exact_top_k

# The record's key for every held-out sentence's utility (a list, in a fixed sentence order).
PER_QUERY_UTILITY = "heldout_retrieval_utility_per_query"
# The record's key for every question's recall@5 hit (0/1 list, in a fixed question order).
PER_QUESTION_HIT = "question_hit@5_per_question"


@dataclasses.dataclass(frozen=True)
class HeldOutConfig(ConfigBase):
  """What the held-out evaluation measures and on how much data."""
  fraction: float = 0.05     # share of blocks held out of training (by block id)
  num_queries: int = 128     # held-out masked sentences per evaluation
  batch_size: int = 8
  num_questions: int = 1000  # SQuAD-open dev questions for zero-shot recall (0: none)
  squad_path: Optional[str] = None  # default: the shipped SQuAD v1.1 dev set
  # jsonl:<path>: the user's questions about their corpus instead of SQuAD-open dev
  # (`eval_questions.load`: gold blocks by doc_id or by answer).
  questions: Optional[str] = None


def masked_metrics_from_outputs(relevance, mlm_logits, batch) -> Dict[str, np.ndarray]:
  """Per-example held-out figures of one batch: utility, null posterior, token hits with
  retrieval and with the null document alone, and the count of masked tokens."""
  from realm_tf.modeling.realm_pretrainer import marginal_log_likelihood  # pylint: disable=g-import-not-at-top
  stats = marginal_log_likelihood(relevance, batch["candidate_mask"], mlm_logits,
                                  batch["masked_ids"], batch["masked_weights"])
  weights = tf.cast(batch["masked_weights"], tf.float32)
  null_pred = tf.argmax(mlm_logits[:, 0], axis=-1, output_type=tf.int32)
  null_hit = tf.cast(tf.equal(null_pred, tf.cast(batch["masked_ids"], tf.int32)), tf.float32)
  return {"retrieval_utility": stats["retrieval_utility"],
          "null_posterior": stats["null_posterior"],
          "hits": tf.reduce_sum(stats["token_correct"], axis=-1),
          "null_hits": tf.reduce_sum(null_hit * weights, axis=-1),
          "tokens": tf.reduce_sum(weights, axis=-1)}


def paired_change(start: Dict, end: Dict) -> Optional[Dict[str, float]]:
  """The held-out utility's change from `start` to `end`, two records over the same sentences:
  the mean of the per-sentence differences and its standard error, or None when either record
  lacks the per-sentence utilities (or they measured different sentences)."""
  a, b = start.get(PER_QUERY_UTILITY), end.get(PER_QUERY_UTILITY)
  if not a or not b or len(a) != len(b) or len(a) < 2:
    return None
  diff = np.asarray(b, np.float64) - np.asarray(a, np.float64)
  return {"mean": float(diff.mean()),
          "paired_stderr": float(diff.std(ddof=1) / np.sqrt(len(diff))),
          "sentences": len(diff)}


def paired_recall_change(start: Dict, end: Dict) -> Optional[Dict[str, float]]:
  """Question recall@5 from `start` to `end`, two records over the same questions: how many
  questions gained a gold block in the top 5, how many lost it, and the two-sided exact sign test
  of gained against lost (the p-value of a difference at least this large if the retriever's
  change moved questions in and out at random). None when either record lacks the per-question
  hits (or they measured different questions)."""
  a, b = start.get(PER_QUESTION_HIT), end.get(PER_QUESTION_HIT)
  if not a or not b or len(a) != len(b):
    return None
  a, b = np.asarray(a, bool), np.asarray(b, bool)
  gained, lost = int(np.sum(b & ~a)), int(np.sum(a & ~b))
  from scipy import stats  # pylint: disable=g-import-not-at-top
  p = stats.binomtest(gained, gained + lost, 0.5).pvalue if gained + lost else 1.0
  return {"questions": len(a), "gained": gained, "lost": lost,
          "change": (gained - lost) / len(a), "sign_test_p": float(p)}


def scalar_figures(figures: Dict) -> Dict[str, float]:
  """The figures that are single numbers (TensorBoard scalars, summaries), per-sentence lists
  left out."""
  return {k: v for k, v in figures.items() if isinstance(v, (int, float))}


def format_figures(figures: Dict[str, float]) -> str:
  """One short line of held-out figures (the full names are in heldout.jsonl and TensorBoard)."""
  parts = []
  if "heldout_retrieval_utility" in figures:
    stderr = figures.get("heldout_retrieval_utility_stderr")
    parts.append(f"utility={figures['heldout_retrieval_utility']:.4f}"
                 + (f"±{stderr:.4f}" if stderr is not None else "") +
                 f" null_posterior={figures['heldout_null_posterior']:.4g}"
                 f" mlm_acc={figures['heldout_mlm_accuracy']:.4f}"
                 f" (null alone {figures['heldout_null_mlm_accuracy']:.4f})")
  if "question_recall@5" in figures:
    parts.append(f"question_recall@5={figures['question_recall@5']:.3f}"
                 f" @20={figures['question_recall@20']:.3f}")
    if "question_hub_share@5" in figures:
      parts.append(f"hub_share@5={figures['question_hub_share@5']:.3f}")
    if "bm25_question_recall@5" in figures:
      parts.append(f"(BM25 {figures['bm25_question_recall@5']:.3f}"
                   f" @20 {figures['bm25_question_recall@20']:.3f})")
  return " ".join(parts)


class HeldOutEvaluator:
  """Measures a RealmPretrainer and an index bundle on held-out data (see module docstring).

  Args:
    config: HeldOutConfig.
    annotations_dir, corpus_dir: the run's annotations and corpus.
    masking: the run's MaskingConfig (its seed is replaced by EVAL_SEED).
    tokenizer, lookup, pipeline: the run's tokenizer, BlockLookup and PipelineConfig.
    with_questions: measure question recall: of `config.questions` (jsonl:<path>), else of
      SQuAD-open dev questions (only meaningful when the corpus holds the SQuAD paragraphs, as the
      default corpus does).
  """

  def __init__(self, config: HeldOutConfig, annotations_dir: str, corpus_dir: str,
               masking: masking_lib.MaskingConfig, tokenizer, lookup, pipeline: PipelineConfig,
               with_questions: bool = False):
    self.config = config
    self.tokenizer = tokenizer
    self.lookup = lookup
    self.pipeline = dataclasses.replace(pipeline, batch_size=config.batch_size)
    masker = masking_lib.Masker(dataclasses.replace(masking, seed=EVAL_SEED), tokenizer)
    n = config.num_queries // config.batch_size * config.batch_size
    examples = list(heldout_masked_examples(annotations_dir, masker, config.fraction)
                    .take(n).batch(max(n, 1)).as_numpy_iterator())
    self.examples = examples[0] if examples else None
    self.num_queries = 0 if self.examples is None else \
        len(self.examples["index"]) // config.batch_size * config.batch_size
    self._forward = None
    self.questions: List = []
    if with_questions and config.num_questions > 0 and config.questions:
      from realm_tf.evaluation import eval_questions  # pylint: disable=g-import-not-at-top
      self.questions, self.gold = eval_questions.load(config.questions, corpus_dir,
                                                      config.num_questions)
    elif with_questions and config.num_questions > 0:
      from realm_tf.data.squad_open import load_squad_questions  # pylint: disable=g-import-not-at-top
      questions = load_squad_questions(config.squad_path, split="dev")
      rng = np.random.RandomState(0)
      pick = rng.choice(len(questions), size=min(config.num_questions, len(questions)),
                        replace=False)
      self.questions = [questions[i] for i in sorted(pick)]
      blocks_of_doc = corpus_lib.doc_blocks(corpus_dir, [q.doc_id for q in self.questions])
      self.gold = [blocks_of_doc.get(q.doc_id, set()) for q in self.questions]
    self.corpus_dir = corpus_dir
    self._bm25 = None

  # -- held-out masked sentences ---------------------------------------------------------------

  def masked_metrics(self, model, bundle) -> Dict[str, float]:
    """Held-out utility, null posterior and MLM accuracy (with retrieval / null alone)."""
    if not self.num_queries:
      return {}
    if self._forward is None:
      self._forward = tf.function(
          lambda b: masked_metrics_from_outputs(**_outputs(model, b), batch=b), autograph=False)
    n = self.num_queries
    masked = tf.data.Dataset.from_tensor_slices(
        {k: v[:n] for k, v in self.examples.items()})
    ds = make_pretrain_dataset(masked, bundle_retrieve_fn(bundle, self.pipeline.num_candidates),
                               self.lookup, self.pipeline, self.tokenizer.cls_id,
                               self.tokenizer.sep_id)
    sums: Dict[str, float] = {}
    utilities = []
    for batch in ds:
      batch.pop("data_position")
      for k, v in self._forward(batch).items():
        sums[k] = sums.get(k, 0.0) + float(tf.reduce_sum(v))
        if k == "retrieval_utility":
          utilities.append(v.numpy())
    tokens = max(sums["tokens"], 1.0)
    utilities = np.concatenate(utilities)
    # Its standard error: two runs' utilities differ beyond noise only by about twice this.
    stderr = float(np.std(utilities, ddof=1) / np.sqrt(len(utilities))) if n > 1 else 0.0
    return {"heldout_retrieval_utility": sums["retrieval_utility"] / n,
            "heldout_retrieval_utility_stderr": stderr,
            "heldout_null_posterior": sums["null_posterior"] / n,
            "heldout_mlm_accuracy": sums["hits"] / tokens,
            "heldout_null_mlm_accuracy": sums["null_hits"] / tokens,
            "heldout_queries": float(n),
            PER_QUERY_UTILITY: [round(float(u), 6) for u in utilities]}

  # -- zero-shot question recall ---------------------------------------------------------------

  def question_recall(self, bundle) -> Dict[str, float]:
    """Dense recall@5 and @20 of SQuAD-open dev questions over `bundle`'s index."""
    if not self.questions:
      return {}
    length = bundle.query_embedder.query_seq_length
    q = recall_lib.embed_texts(bundle.query_embedder.embed_queries,
                               [x.question for x in self.questions], seq_length=length,
                               tokenizer=self.tokenizer)
    rows, _ = exact_top_k(q, np.asarray(bundle.embeddings, np.float32),
                          min(20, int(bundle.num_rows)))
    ids = np.asarray(bundle.block_ids)[rows]
    hits = recall_lib.gold_hits(ids[:, :5], self.gold).any(axis=1)
    return {"question_recall@5": float(np.mean(hits)),
            PER_QUESTION_HIT: [int(h) for h in hits],
            "question_recall@20": recall_lib.gold_recall(ids, self.gold),
            "question_hub_share@5": recall_lib.hub_share(ids[:, :5])}

  def bm25_recall(self) -> Dict[str, float]:
    """BM25's recall@5 and @20 on the same questions (computed once per evaluator)."""
    if not self.questions:
      return {}
    if self._bm25 is None:
      from realm_tf.retrieval.bm25 import BM25Index  # pylint: disable=g-import-not-at-top
      bm25 = BM25Index.from_texts(self.lookup.joined_texts(), num_docs=self.lookup.size)
      _, rows = bm25.search([q.question for q in self.questions], 20)
      found = np.asarray(self.lookup.block_ids)[rows]
      self._bm25 = {"bm25_question_recall@5": recall_lib.gold_recall(found[:, :5], self.gold),
                    "bm25_question_recall@20": recall_lib.gold_recall(found, self.gold)}
    return dict(self._bm25)

  def evaluate(self, model, bundle) -> Dict[str, float]:
    """Every held-out figure for the current model and index bundle."""
    out = {"index_version": float(bundle.version)}
    out.update(self.masked_metrics(model, bundle))
    out.update(self.question_recall(bundle))
    out.update(self.bm25_recall())
    return out


def _outputs(model, batch):
  out = model(batch, training=False)
  return {"relevance": out["relevance"], "mlm_logits": out["mlm_logits"]}
