"""Retrieval figures from relevance judgements (qrels), computed as trec_eval computes them.

For questions that come with judged documents instead of answer strings (BEIR's queries + qrels),
evaluation scores the documents of the TREC run it writes (`run_files.trec_ranking`: one entry a
document, its best block's score, in trec_eval's order) against the judgements. With R the
documents judged relevant (grade >= 1, trec_eval's relevance level) and the run's documents at
ranks 1, 2, ...:

  recall@k  |relevant documents in the top k| / |R|                (trec_eval `recall_k`)
  ndcg@10   sum over the top 10 of grade / log2(rank + 1), divided by the same sum over the
            judged documents sorted by grade; grades <= 0 gain nothing   (`ndcg_cut_10`)
  mrr@10    1 / rank of the first relevant document in the top 10, else 0
            (`recip_rank` on the run cut at 10)

Each figure is averaged over the questions that have judgements. A judged question with nothing
retrieved (an empty question) scores 0 and still counts (trec_eval's `-c`; without it trec_eval
would leave the question out). `qrels_metrics_test.py` checks every figure against pytrec_eval
on a written run file.
"""
import math
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from realm_tf.evaluation import run_files

DEFAULT_RECALL_KS = (1, 5, 20, 100)
NDCG_K = 10
MRR_K = 10

Relevance = Union[Mapping[str, float], Sequence[str]]


def grades(relevant: Optional[Relevance]) -> Dict[str, float]:
  """{docid field: grade} of a question's judgements: a mapping doc id → grade as given, or a
  list of doc ids (each grade 1). Doc ids are TREC fields (`run_files.trec_field`), so they
  compare with a run's docids. None → {}."""
  if not relevant:
    return {}
  if isinstance(relevant, Mapping):
    return {run_files.trec_field(str(d)): float(g) for d, g in relevant.items()}
  if isinstance(relevant, (str, bytes)):
    raise TypeError(f"Relevant documents must be a list or a mapping, not {relevant!r:.60}.")
  return {run_files.trec_field(str(d)): 1.0 for d in relevant}


def _dcg(gains: Iterable[float]) -> float:
  return sum(g / math.log2(i + 2) for i, g in enumerate(gains) if g > 0)


def query_figures(ranking: Sequence[Tuple[str, float]], judged: Mapping[str, float],
                  recall_ks: Sequence[int] = DEFAULT_RECALL_KS) -> Dict[str, float]:
  """One question's figures from its run `ranking` ([(docid, score)] in trec_eval's order) and
  `judged` ({docid: grade})."""
  docs = [doc for doc, _ in ranking]
  relevant = {d for d, g in judged.items() if g >= 1}
  out = {}
  for k in recall_ks:
    found = sum(d in relevant for d in docs[:k])
    out[f"recall@{k}"] = found / len(relevant) if relevant else 0.0
  ideal = _dcg(sorted((g for g in judged.values()), reverse=True)[:NDCG_K])
  gained = _dcg(judged.get(d, 0.0) for d in docs[:NDCG_K])
  out[f"ndcg@{NDCG_K}"] = gained / ideal if ideal > 0 else 0.0
  first = next((i for i, d in enumerate(docs[:MRR_K]) if d in relevant), None)
  out[f"mrr@{MRR_K}"] = 0.0 if first is None else 1.0 / (first + 1)
  return out


class QrelsScorer:
  """Averages `query_figures` over questions with judgements; `result()` gives the means.

    scorer = QrelsScorer()
    scorer.update(ranking, relevant)   # ranking as TrecRunWriter.add returns it
    scorer.result()  # {"num_queries", "recall@1", ..., "ndcg@10", "mrr@10"}
  """

  def __init__(self, recall_ks: Sequence[int] = DEFAULT_RECALL_KS):
    self.recall_ks = tuple(int(k) for k in recall_ks)
    self.num_queries = 0
    self._sums: Dict[str, float] = {}

  def update(self, ranking: Sequence[Tuple[str, float]], relevant: Optional[Relevance]) -> bool:
    """Adds one question (nothing when it has no judgements); returns whether it counted."""
    judged = grades(relevant)
    if not judged:
      return False
    for name, value in query_figures(ranking, judged, self.recall_ks).items():
      self._sums[name] = self._sums.get(name, 0.0) + value
    self.num_queries += 1
    return True

  def result(self) -> Dict[str, float]:
    """{"num_queries": n, figure: mean over the n questions} (only num_queries when n = 0)."""
    out: Dict[str, float] = {"num_queries": self.num_queries}
    if self.num_queries:
      out.update({name: float(np.float64(total) / self.num_queries)
                  for name, total in self._sums.items()})
    return out
