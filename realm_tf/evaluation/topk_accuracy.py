"""DPR's top-k retrieval accuracy: the share of questions with an answer string in the top k.

The figure open-QA retrievers are compared by (DPR, Pyserini's `evaluate_dpr_retrieval`, the
REALM/ORQA follow-ups): for each question, the retrieved passages are scanned best first and the
question counts for every k at or beyond its first answer-bearing passage. A passage bears an
answer by DPR's `has_answer` (`realm_tf.openqa.metrics.has_answer`): passage text and answers
are NFD-normalised and cut into DPR SimpleTokenizer tokens (runs of letters, digits and marks, or
one other visible character each), uncased, and an answer is present when its tokens occur
contiguously in the passage's; a regex answer (CuratedTREC) is NFD-normalised and searched
anywhere in the NFD-normalised passage, case-insensitively. Only the passage body is searched,
not its title (DPR's and Pyserini's rule). An answer that is empty after tokenisation never
matches (DPR's loop would match it anywhere). A question with nothing retrieved (an empty
question) is a miss at every k.

`TopKAccuracy` accumulates over batches of has_answer rows; `from_dpr_results` recomputes the
figures from a DPR retriever-results file (ours or another system's).
"""
from typing import Dict, Iterable

import numpy as np

from realm_tf.evaluation import run_files
from realm_tf.openqa import metrics

DPR_KS = (1, 5, 20, 100)


def accuracy_key(k: int) -> str:
  """The metric's name in result dicts: `top20_accuracy` (DPR prints "Top20 accuracy")."""
  return f"top{int(k)}_accuracy"


class TopKAccuracy:
  """Counts each question's first answer-bearing rank; `result(ks)` gives top-k accuracy.

    acc = TopKAccuracy()
    acc.update(hits)            # bool [B, K]: has_answer of each question's ranked passages
    acc.result((1, 5, 20, 100))  # {"top1_accuracy": ..., ...}
  """

  def __init__(self):
    self.num_questions = 0
    self._first_hits = []  # one int per question, -1 = none; 8 bytes a question

  def update(self, hits) -> np.ndarray:
    """Adds B questions' has_answer rows (bool [B, K], rows may be padded with False); returns
    each question's first answer-bearing rank (0-based, -1 when none)."""
    hits = np.asarray(hits, dtype=bool)
    if hits.ndim != 2:
      raise ValueError(f"hits must be [B, K], got shape {hits.shape}.")
    if hits.shape[1] == 0:  # nothing retrieved for any of them
      first = np.full([hits.shape[0]], -1)
    else:
      first = np.where(hits.any(axis=1), hits.argmax(axis=1), -1)
    self._first_hits.extend(first.tolist())
    self.num_questions += hits.shape[0]
    return first

  def fraction_within(self, k: int) -> float:
    """Share of questions whose first answer-bearing passage ranks in the top k."""
    if not self.num_questions:
      return 0.0
    first = np.asarray(self._first_hits)
    return float(((first >= 0) & (first < int(k))).sum() / self.num_questions)

  def result(self, ks: Iterable[int] = DPR_KS) -> Dict[str, float]:
    """{accuracy_key(k): share} for each k."""
    return {accuracy_key(k): self.fraction_within(k) for k in ks}


def from_dpr_results(path: str, ks: Iterable[int] = DPR_KS, regex: bool = False,
                     use_has_answer: bool = False) -> Dict[str, float]:
  """Top-k accuracy of a DPR retriever-results JSON file, as Pyserini's evaluate_dpr_retrieval
  computes it: has_answer recomputed from each ctx's `text` and the entry's `answers` (`regex`:
  the answers are patterns), or read from the ctxs' `has_answer` with `use_has_answer`.

  Returns {accuracy_key(k)..., "num_questions"}.
  """
  acc = TopKAccuracy()
  for entry in run_files.read_dpr_results(path):
    ctxs = entry["ctxs"]
    if use_has_answer:
      row = [bool(c.get("has_answer")) for c in ctxs]
    else:
      row = metrics.retrieval_hits([[c.get("text", "") for c in ctxs]],
                                   [entry.get("answers", [])], regex)[0].tolist()
    acc.update(np.asarray([row], dtype=bool).reshape(1, -1))
  out = acc.result(ks)
  out["num_questions"] = acc.num_questions
  return out
