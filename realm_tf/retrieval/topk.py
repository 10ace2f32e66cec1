"""Exact top-k of score rows, best first, ties broken by column order (deterministic).

`np.argpartition` returns an arbitrary member of a tie, so two runs (or a tiled and an untiled
computation) can disagree on which of several equal-scored rows is retrieved. `top_k` returns the
k largest values of each row with equal values in column order, so results are reproducible and a
running top-k over tiles equals the top-k of the whole row.

Wide rows are first narrowed by a lower bound on the k-th largest value: the k-th largest of the
maxima of column blocks (at most `BLOCK` wide, at least 8k of them; k distinct blocks each hold a
value at least that large). Only
the values at or above it are sorted; a row with a long tie at the bound (e.g. BM25 zeros) takes
the exact full-row path instead. Scores must not be NaN.
"""
from typing import Tuple

import numpy as np

BLOCK = 128  # widest column block of the lower bound


def _top_k_full(scores: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
  """`top_k` over whole rows: partition for the k-th value, then the first ties in column order."""
  n = scores.shape[1]
  kth = np.partition(scores, n - k, axis=1)[:, n - k:n - k + 1]       # [Q, 1]
  above = scores > kth
  tied = scores == kth
  need = k - above.sum(axis=1, keepdims=True)                         # ties to take, >= 1
  take = above | (tied & (np.cumsum(tied, axis=1, dtype=np.int32) <= need))
  cols = np.nonzero(take)[1].reshape(len(scores), k)                  # column order per row
  vals = np.take_along_axis(scores, cols, axis=1)
  order = np.argsort(-vals, axis=1, kind="stable")                    # equal values keep column order
  return np.take_along_axis(vals, order, axis=1), np.take_along_axis(cols, order, axis=1)


def top_k(scores: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
  """(values [Q, k], columns int64 [Q, k]) of the k largest values per row of `scores` [Q, n],
  best first, equal values in column order; k is capped at n."""
  scores = np.asarray(scores)
  if scores.ndim != 2:
    raise ValueError(f"top_k needs scores [Q, n]; got shape {scores.shape}.")
  q, n = scores.shape
  k = min(int(k), n)
  if k <= 0 or q == 0:
    return np.zeros([q, 0], scores.dtype), np.zeros([q, 0], np.int64)
  width = min(BLOCK, n // (8 * k))                                     # >= 8k blocks
  if width < 8:
    return _top_k_full(scores, k)
  block_max = np.maximum.reduceat(scores, np.arange(0, n, width), axis=1)  # [Q, blocks]
  blocks = block_max.shape[1]
  bound = np.partition(block_max, blocks - k, axis=1)[:, blocks - k]
  keep = scores >= bound[:, None]
  counts = keep.sum(axis=1)                                            # each >= k
  if counts.max() > max(64 * k, n // 16):                              # long ties at the bound
    return _top_k_full(scores, k)
  rows, cols = np.nonzero(keep)                                        # row-major, column order
  vals = scores[rows, cols]
  order = np.lexsort((cols, -vals, rows))
  first = np.cumsum(counts) - counts
  pick = order[first[:, None] + np.arange(k)]
  return vals[pick], cols[pick].astype(np.int64)
