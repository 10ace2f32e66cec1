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

`exact_top_k` is exact maximum inner product search on the host, the one every exact reference
uses (recall checks, evaluation, benchmarks): tiled, so its memory above the embeddings is a few
tiles for any corpus size, never [queries × N].
"""
from typing import Tuple

import numpy as np

BLOCK = 128  # widest column block of the lower bound
TILE_SCORES = 1 << 21  # query x document scores `exact_top_k` computes at once (8 MB of float32)
TILE_QUERIES = 256


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


def exact_top_k(query_embeddings: np.ndarray, doc_embeddings: np.ndarray, k: int,
                tile_scores: int = TILE_SCORES) -> Tuple[np.ndarray, np.ndarray]:
  """Exact MIPS: the top-k rows of `doc_embeddings` by inner product with each query, best
  first, equal scores in row order: (rows int64 [Q, k], scores float32 [Q, k]).

  Scores are computed for one tile of queries x documents at a time (`tile_scores` of them) and
  folded into a running top-k, so the memory above the embeddings is a few tiles for any N, never
  [Q, N]. `doc_embeddings` [N, D] is read one tile of rows at a time (a memory-mapped `.npy`
  stays on disk); the result equals the top-k of the whole score matrix. k is capped at N.
  """
  queries = np.asarray(query_embeddings, np.float32)
  n = len(doc_embeddings)
  k = min(int(k), n)
  best_scores = np.zeros([len(queries), 0], np.float32)
  best_rows = np.zeros([len(queries), 0], np.int64)
  if k <= 0 or not len(queries):
    return best_rows[:, :0], best_scores[:, :0]
  q_tile = min(len(queries), TILE_QUERIES)
  d_tile = max(k, tile_scores // q_tile)
  for start in range(0, n, d_tile):
    docs = np.asarray(doc_embeddings[start:start + d_tile], np.float32)
    merged_scores, merged_rows = [], []
    for q0 in range(0, len(queries), q_tile):
      # The tile's own top-k, then the top-k of (best so far, tile's): every earlier row comes
      # before every tile row, so positions in the concatenation keep equal scores in row order.
      tile, cols = top_k(queries[q0:q0 + q_tile] @ docs.T, k)
      scores, pos = top_k(np.concatenate([best_scores[q0:q0 + q_tile], tile], axis=1), k)
      rows = np.concatenate([best_rows[q0:q0 + q_tile], cols + start], axis=1)
      merged_scores.append(scores)
      merged_rows.append(np.take_along_axis(rows, pos, axis=1))
    best_scores, best_rows = np.concatenate(merged_scores), np.concatenate(merged_rows)
  return best_rows, best_scores
