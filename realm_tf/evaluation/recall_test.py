"""Tests for the reader-free retrieval figures: recall@k against gold blocks and the hub share."""
import numpy as np

from realm_tf.evaluation import recall


def test_recall_counts_queries_with_any_gold_block():
  retrieved = np.array([[4, 7], [1, 2], [9, 9]])
  np.testing.assert_array_equal(recall.gold_hits(retrieved, [{7}, {3}, {9, 5}]),
                                [[False, True], [False, False], [True, True]])
  assert recall.gold_recall(retrieved, [{7}, {3}, {9, 5}]) == 2 / 3
  assert recall.gold_recall(retrieved[:, :1], [{7}, {3}, {9, 5}]) == 1 / 3
  assert recall.gold_recall(np.zeros([0, 2], np.int64), []) == 0.0


def test_hub_share_is_the_largest_share_of_queries_retrieving_one_block():
  spread = np.array([[1, 2], [3, 4], [5, 6], [7, 8]])
  assert recall.hub_share(spread) == 0.25
  # Block 9 is in three of four rows (twice in one row counts once): a hub.
  collapsed = np.array([[9, 2], [9, 9], [3, 4], [5, 9]])
  assert recall.hub_share(collapsed) == 0.75
  assert recall.hub_share(np.zeros([0, 5], np.int64)) == 0.0
