"""Tests for the searcher helpers: NumPy references, recall, save/load errors."""
import numpy as np
import pytest

from realm_tf.retrieval import searcher as searcher_lib
from realm_tf.retrieval.brute_force import BruteForceSearcher, exact_top_k_tiled


def test_exact_top_k_numpy_matches_full_sort():
  rng = np.random.default_rng(1)
  emb = rng.normal(size=(300, 16)).astype(np.float32)
  q = rng.normal(size=(7, 16)).astype(np.float32)
  rows, scores = searcher_lib.exact_top_k_numpy(emb, q, 5)
  full = q @ emb.T
  np.testing.assert_array_equal(rows, np.argsort(-full, axis=1)[:, :5])
  np.testing.assert_allclose(scores, -np.sort(-full, axis=1)[:, :5], rtol=1e-6)


def test_exact_top_k_tiled_matches_untiled():
  rng = np.random.default_rng(2)
  emb = rng.normal(size=(1000, 8)).astype(np.float32)
  q = rng.normal(size=(5, 8)).astype(np.float32)
  ref_rows, ref_scores = searcher_lib.exact_top_k_numpy(emb, q, 10)
  rows, scores = exact_top_k_tiled(emb, q, 10, tile_size=37)  # ragged last tile, tiles < k ok
  np.testing.assert_array_equal(rows, ref_rows)
  np.testing.assert_allclose(scores, ref_scores, rtol=1e-6)
  with pytest.raises(searcher_lib.SearcherError, match="k=1001"):
    exact_top_k_tiled(emb, q, 1001)


def test_recall_at_k():
  exact = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
  approx = np.array([[3, 2, 9, 9], [4, 5, 6, 7]])
  assert searcher_lib.recall_at_k(approx, exact) == pytest.approx(6 / 8)
  assert searcher_lib.recall_at_k(approx, exact, k=2) == pytest.approx(2 / 4)


def test_empty_matrix_is_rejected():
  with pytest.raises(searcher_lib.SearcherError, match="empty"):
    BruteForceSearcher(np.zeros([0, 128], np.float32))


def test_load_searcher_names_missing_path(tmp_path):
  with pytest.raises(searcher_lib.SearcherError, match=str(tmp_path / "nope")):
    searcher_lib.load_searcher(str(tmp_path / "nope"))
