"""Tests for the reader-free retrieval figures: exact top-k, recall@k and the hub share."""
import numpy as np

from realm_tf.evaluation import recall


def test_top_k_rows_are_the_best_inner_products_best_first():
  q = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
  d = np.array([[0.5, 0.1], [2.0, 0.0], [0.0, 3.0], [1.0, 1.0]], np.float32)
  # Scores: q0 → [0.5, 2, 0, 1]; q1 → [0.1, 0, 3, 1].
  np.testing.assert_array_equal(recall.top_k_rows(q, d, 3), [[1, 3, 0], [2, 3, 0]])


def test_recall_counts_queries_with_any_gold_block():
  retrieved = np.array([[4, 7], [1, 2], [9, 9]])
  assert recall.recall_at_k(retrieved, [{7}, {3}, {9, 5}]) == 2 / 3
  assert recall.recall_at_k(np.zeros([0, 2], np.int64), []) == 0.0


def test_hub_share_is_the_largest_share_of_queries_retrieving_one_block():
  spread = np.array([[1, 2], [3, 4], [5, 6], [7, 8]])
  assert recall.hub_share(spread) == 0.25
  # Block 9 is in three of four rows (twice in one row counts once): a hub.
  collapsed = np.array([[9, 2], [9, 9], [3, 4], [5, 9]])
  assert recall.hub_share(collapsed) == 0.75
  assert recall.hub_share(np.zeros([0, 5], np.int64)) == 0.0


def _untiled_top_k_rows(q, d, k):
  """The whole [Q, N] score matrix, fully sorted by (score desc, row)."""
  scores = q @ d.T
  return np.stack([np.lexsort((np.arange(len(s)), -s))[:k] for s in scores])


def test_tiled_top_k_rows_equal_the_whole_score_matrix_ties_in_row_order(tmp_path):
  rng = np.random.RandomState(0)
  q = rng.randn(300, 16).astype(np.float32)
  d = rng.randn(5000, 16).astype(np.float32)
  want = _untiled_top_k_rows(q, d, 10)
  scores = q @ d.T  # the computation top_k_rows had before it was tiled (no ties here)
  part = np.argpartition(-scores, 9, axis=1)[:, :10]
  order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
  np.testing.assert_array_equal(np.take_along_axis(part, order, axis=1), want)
  for tile in (1 << 21, 3000, 700):  # one tile; several of (256 queries x ...); k-wide tiles
    np.testing.assert_array_equal(recall.top_k_rows(q, d, 10, tile_scores=tile), want)
  # Small integers: exact products, many equal scores, which must come in row order.
  qi = rng.randint(-2, 3, size=(40, 4)).astype(np.float32)
  di = rng.randint(-2, 3, size=(3000, 4)).astype(np.float32)
  np.testing.assert_array_equal(recall.top_k_rows(qi, di, 25, tile_scores=4000),
                                _untiled_top_k_rows(qi, di, 25))
  # A memory-mapped .npy is read a tile at a time, with the same result.
  path = str(tmp_path / "emb.npy")
  np.save(path, d)
  np.testing.assert_array_equal(recall.top_k_rows(q, np.load(path, mmap_mode="r"), 10,
                                                  tile_scores=5000), want)
  assert recall.top_k_rows(q[:2], d[:3], 10).shape == (2, 3)  # k is capped at N


def test_top_k_rows_memory_does_not_grow_with_the_corpus():
  import tracemalloc  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(1)
  q = rng.randn(256, 8).astype(np.float32)
  d = rng.randn(200_000, 8).astype(np.float32)   # the untiled [Q, N] scores: 205 MB
  tracemalloc.start()
  rows = recall.top_k_rows(q, d, 5, tile_scores=1 << 18)  # 1 MB of scores per tile
  peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  assert peak < 12 << 20, peak
  np.testing.assert_array_equal(rows[:20], _untiled_top_k_rows(q[:20], d, 5))
