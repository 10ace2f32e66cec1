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
