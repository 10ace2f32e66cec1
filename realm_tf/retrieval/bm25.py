"""BM25 over the block corpus: the sparse baseline every dense retrieval figure is reported beside.

Ranking is `rank_bm25.BM25Okapi` (a maintained library; nothing hand-written), over lower-cased
word tokens of `title + body`, one BM25 document per block. Used by pre-training's held-out
evaluation (question recall beside the dense retriever's) and by open-QA evaluation
(`--retriever=bm25`: the same reader behind BM25).
"""
import re
from typing import List, Optional, Sequence

import numpy as np

_WORD = re.compile(r"\w+", re.UNICODE)


def bm25_tokens(text: str) -> List[str]:
  """Lower-cased word tokens (letters, digits, underscore runs)."""
  return _WORD.findall(text.lower())


class BM25Index:
  """BM25Okapi over `texts`; `search` returns row indices into `texts`, best first."""

  def __init__(self, texts: Sequence[str]):
    from rank_bm25 import BM25Okapi  # pylint: disable=g-import-not-at-top
    if not texts:
      raise ValueError("BM25Index needs at least one document.")
    self.size = len(texts)
    self._bm25 = BM25Okapi([bm25_tokens(t) or [""] for t in texts])

  def scores(self, query: str, rows: Optional[Sequence[int]] = None) -> np.ndarray:
    """BM25 scores for `query`: of every document (float [N]), or of `rows` only (float
    [len(rows)], cheaper when they are few)."""
    tokens = bm25_tokens(query)
    if rows is None:
      return np.asarray(self._bm25.get_scores(tokens), np.float64)
    return np.asarray(self._bm25.get_batch_scores(tokens, list(rows)), np.float64)

  def search(self, queries: Sequence[str], k: int):
    """(scores float32 [Q, k], rows int64 [Q, k]) of the top-k documents per query, best first
    (ties broken by row order, so results are deterministic)."""
    k = min(k, self.size)
    rows = np.zeros([len(queries), k], np.int64)
    scores = np.zeros([len(queries), k], np.float32)
    for i, q in enumerate(queries):
      s = self.scores(q)
      top = np.argsort(-s, kind="stable")[:k]
      rows[i], scores[i] = top, s[top]
    return scores, rows
