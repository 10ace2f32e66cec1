"""BM25 retrieval over the open-QA index's blocks, for scoring a reader behind a sparse retriever.

`BM25Retriever(index, k)` ranks the FrozenIndex rows (title + body) with the project's one BM25
(`realm_tf.retrieval.bm25`: `rank_bm25.BM25Okapi` over lower-cased word tokens). It is a
`retrieve_fn` for `evaluate.Predictor`: the same fine-tuned reader reads BM25's top blocks instead
of the dense retriever's, so the two retrievers are compared on the same questions with the same
reader. BM25 scores are not on the dense retriever's logit scale, so the reader adds no retrieval
logit (`reader_logits` are 0); the scores are reported as each evidence block's `retrieval_score`.
"""
from typing import Dict, Sequence

import numpy as np
from absl import logging

from realm_tf.retrieval.bm25 import BM25Index


class BM25Retriever:
  """Top-k index rows of each question by BM25 (see module docstring)."""

  def __init__(self, index, k: int):
    if not 1 <= k <= index.size:
      raise ValueError(f"BM25 k={k} must be in 1..{index.size} (the index size).")
    self.k = int(k)
    self.index = BM25Index.from_texts(index.lookup.joined_texts(index.lookup_rows),
                                      num_docs=index.size)
    logging.info("BM25 over %d blocks.", index.size)

  def scores(self, question: str) -> np.ndarray:
    """BM25 score of every index row for one question, float64 [N]."""
    return self.index.scores(question)

  def __call__(self, examples: Sequence, features=None) -> Dict[str, np.ndarray]:
    """`retrieve_fn` protocol: {"rows" int32 [B, k], "scores" float32 [B, k], "reader_logits"
    float32 [B, k] (zeros)}, best first; ties keep index order."""
    del features
    scores, rows = self.index.search([e.question for e in examples], self.k)
    return {"rows": rows.astype(np.int32), "scores": scores,
            "reader_logits": np.zeros_like(scores)}
