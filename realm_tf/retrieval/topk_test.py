"""Tests for the exact, tie-deterministic top-k."""
import numpy as np
import pytest

from realm_tf.retrieval import topk


def _reference(scores, k):
  order = np.stack([np.lexsort((np.arange(len(r)), -r))[:k] for r in scores])
  return np.take_along_axis(scores, order, axis=1), order


@pytest.mark.parametrize("n,k", [(7, 3), (7, 10), (2000, 5), (5000, 20), (130, 1)])
def test_top_k_equals_a_full_sort_with_ties_in_column_order(n, k):
  rng = np.random.RandomState(n + k)
  scores = np.concatenate([
      rng.randint(0, 4, size=(3, n)).astype(np.float32),     # many ties
      rng.randn(3, n).astype(np.float32),
      np.zeros((1, n), np.float32)])                          # one long tie (the full-row path)
  values, cols = topk.top_k(scores, k)
  want_values, want_cols = _reference(scores, min(k, n))
  np.testing.assert_array_equal(cols, want_cols)
  np.testing.assert_array_equal(values, want_values)
  assert cols.dtype == np.int64


def test_top_k_of_a_wide_row_narrows_to_few_candidates_and_stays_exact():
  rng = np.random.RandomState(0)
  scores = rng.rand(2, 100_000).astype(np.float32)
  scores[0, [5, 99_999, 50_000]] = 2.0                       # a tie at the top
  values, cols = topk.top_k(scores, 4)
  assert cols[0, :3].tolist() == [5, 50_000, 99_999]
  np.testing.assert_array_equal(cols, _reference(scores, 4)[1])
  # Few values above a long tie (a BM25 query matching 3 blocks): the first ties in column order.
  sparse = np.zeros([2, 100_000], np.float32)
  sparse[0, [70_000, 9, 123]] = [1.0, 2.0, 1.0]
  sparse[1, ::7] = 1.0                       # the second row's top-k is all in its first 35 columns
  values, cols = topk.top_k(sparse, 6)
  assert cols.tolist() == [[9, 123, 70_000, 0, 1, 2], [0, 7, 14, 21, 28, 35]]
  assert values[0].tolist() == [2, 1, 1, 0, 0, 0]
  assert topk.top_k(scores, 0)[1].shape == (2, 0)
  with pytest.raises(ValueError, match="needs scores"):
    topk.top_k(scores[0], 3)


def test_exact_top_k_rows_are_the_best_inner_products_best_first():
  q = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
  d = np.array([[0.5, 0.1], [2.0, 0.0], [0.0, 3.0], [1.0, 1.0]], np.float32)
  # Scores: q0 → [0.5, 2, 0, 1]; q1 → [0.1, 0, 3, 1].
  np.testing.assert_array_equal(topk.exact_top_k(q, d, 3)[0], [[1, 3, 0], [2, 3, 0]])


def _untiled_top_k_rows(q, d, k):
  """The whole [Q, N] score matrix, fully sorted by (score desc, row)."""
  scores = q @ d.T
  return np.stack([np.lexsort((np.arange(len(s)), -s))[:k] for s in scores])


def test_tiled_exact_top_k_rows_equal_the_whole_score_matrix_ties_in_row_order(tmp_path):
  rng = np.random.RandomState(0)
  q = rng.randn(300, 16).astype(np.float32)
  d = rng.randn(5000, 16).astype(np.float32)
  want = _untiled_top_k_rows(q, d, 10)
  scores = q @ d.T  # the computation exact_top_k had before it was tiled (no ties here)
  part = np.argpartition(-scores, 9, axis=1)[:, :10]
  order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
  np.testing.assert_array_equal(np.take_along_axis(part, order, axis=1), want)
  for tile in (1 << 21, 3000, 700):  # one tile; several of (256 queries x ...); k-wide tiles
    np.testing.assert_array_equal(topk.exact_top_k(q, d, 10, tile_scores=tile)[0], want)
  # Small integers: exact products, many equal scores, which must come in row order.
  qi = rng.randint(-2, 3, size=(40, 4)).astype(np.float32)
  di = rng.randint(-2, 3, size=(3000, 4)).astype(np.float32)
  np.testing.assert_array_equal(topk.exact_top_k(qi, di, 25, tile_scores=4000)[0],
                                _untiled_top_k_rows(qi, di, 25))
  # A memory-mapped .npy is read a tile at a time, with the same result.
  path = str(tmp_path / "emb.npy")
  np.save(path, d)
  np.testing.assert_array_equal(topk.exact_top_k(q, np.load(path, mmap_mode="r"), 10,
                                                  tile_scores=5000)[0], want)
  assert topk.exact_top_k(q[:2], d[:3], 10)[0].shape == (2, 3)  # k is capped at N


def test_exact_top_k_memory_does_not_grow_with_the_corpus():
  import tracemalloc  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(1)
  q = rng.randn(256, 8).astype(np.float32)
  d = rng.randn(200_000, 8).astype(np.float32)   # the untiled [Q, N] scores: 205 MB
  tracemalloc.start()
  rows = topk.exact_top_k(q, d, 5, tile_scores=1 << 18)[0]  # 1 MB of scores per tile
  peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  assert peak < 12 << 20, peak
  np.testing.assert_array_equal(rows[:20], _untiled_top_k_rows(q[:20], d, 5))
