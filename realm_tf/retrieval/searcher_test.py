"""Tests for the searcher helpers: the exact reference, neighbour recall, save/load errors."""
import numpy as np
import pytest

from realm_tf.retrieval import searcher as searcher_lib
from realm_tf.retrieval.brute_force import BruteForceSearcher
from realm_tf.retrieval.recall_check import neighbour_recall
from realm_tf.retrieval.topk import exact_top_k


def test_exact_top_k_matches_full_sort():
  rng = np.random.default_rng(1)
  emb = rng.normal(size=(300, 16)).astype(np.float32)
  q = rng.normal(size=(7, 16)).astype(np.float32)
  rows, scores = exact_top_k(q, emb, 5)
  full = q @ emb.T
  np.testing.assert_array_equal(rows, np.argsort(-full, axis=1)[:, :5])
  np.testing.assert_allclose(scores, -np.sort(-full, axis=1)[:, :5], rtol=1e-6)


def test_exact_top_k_tiled_matches_untiled():
  rng = np.random.default_rng(2)
  emb = rng.normal(size=(1000, 8)).astype(np.float32)
  q = rng.normal(size=(5, 8)).astype(np.float32)
  ref_rows, ref_scores = exact_top_k(q, emb, 10)
  # 37 rows a tile: a ragged last tile, tiles narrower than k.
  rows, scores = exact_top_k(q, emb, 10, tile_scores=37 * len(q))
  np.testing.assert_array_equal(rows, ref_rows)
  np.testing.assert_allclose(scores, ref_scores, rtol=1e-6)
  assert exact_top_k(q, emb, 1001)[0].shape == (5, 1000)  # k is capped at N


def test_neighbour_recall():
  exact = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
  approx = np.array([[3, 2, 9, 9], [4, 5, 6, 7]])
  assert neighbour_recall(approx, exact) == pytest.approx(6 / 8)
  assert neighbour_recall(approx, exact, k=2) == pytest.approx(2 / 4)


def test_empty_matrix_is_rejected():
  with pytest.raises(searcher_lib.SearcherError, match="empty"):
    BruteForceSearcher(np.zeros([0, 128], np.float32))


def test_load_searcher_names_missing_path(tmp_path):
  with pytest.raises(searcher_lib.SearcherError, match=str(tmp_path / "nope")):
    searcher_lib.load_searcher(str(tmp_path / "nope"))
