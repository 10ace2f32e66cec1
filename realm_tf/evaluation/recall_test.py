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
