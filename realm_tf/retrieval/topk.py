"""Exact top-k of score rows, best first, ties broken by column order (deterministic).

`np.argpartition` returns an arbitrary member of a tie, so two runs (or a tiled and an untiled
computation) can disagree on which of several equal-scored rows is retrieved. `top_k` returns the
k largest values of each row with equal values in column order, so results are reproducible and a
running top-k over tiles equals the top-k of the whole row.

Wide rows are first narrowed by a lower bound on the k-th largest value: the k-th largest of the
maxima of column blocks (at most `BLOCK` wide, at least 8k of them; k distinct blocks each hold a
value at least that large). Only the values at or above it are sorted; in a row with a long tie at
the bound (e.g. BM25's zeros), only the values above it and the first ties in column order.
Narrower rows take an exact full-row partition. Scores must not be NaN.
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
  values = np.empty([q, k], scores.dtype)
  cols = np.empty([q, k], np.int64)
  tied = counts > max(64 * k, n // 16)           # long ties at the bound (e.g. BM25's zeros)
  for r in np.flatnonzero(tied):
    values[r], cols[r] = _top_k_long_tie(scores[r], bound[r], k)
    keep[r] = False
  counts[tied] = 0
  rows, c = np.nonzero(keep)                                           # row-major, column order
  vals = scores[rows, c]
  order = np.lexsort((c, -vals, rows))
  first = (np.cumsum(counts) - counts)[~tied]
  pick = order[first[:, None] + np.arange(k)]
  values[~tied], cols[~tied] = vals[pick], c[pick]
  return values, cols


def _top_k_long_tie(row: np.ndarray, bound, k: int) -> Tuple[np.ndarray, np.ndarray]:
  """`top_k` of one row with many values equal to `bound` (at most the k-th largest): the values
  above it, then the first values equal to it in column order, found by a chunked scan."""
  above = np.flatnonzero(row > bound)
  if len(above) < k:
    ties, need = [], k - len(above)
    for start in range(0, len(row), 1 << 16):
      found = np.flatnonzero(row[start:start + (1 << 16)] == bound)[:need] + start
      ties.append(found)
      need -= len(found)
      if not need:
        break
    above = np.concatenate([above] + ties)
  vals = row[above]
  order = np.lexsort((above, -vals))[:k]
  return vals[order], above[order].astype(np.int64)
