"""Tests for the ScaNN searcher: size-scaled config, agreement with exact search, SavedModel."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from realm_tf.testing import retrieval_fixtures as testing
from realm_tf.retrieval.brute_force import BruteForceSearcher
from realm_tf.retrieval.scann_searcher import ScannConfig, ScannSearcher
from realm_tf.retrieval.searcher import (SearcherError, exact_top_k_numpy, load_searcher,
                                         recall_at_k, save_searcher)


def test_config_scales_with_corpus_size():
  cfg = ScannConfig()
  assert cfg.resolve(19_999).mode == "brute_force"
  assert cfg.resolve(20_000).mode == "ah"
  assert cfg.resolve(99_999).mode == "ah"
  big = cfg.resolve(1_000_000)
  assert big.mode == "tree_ah"
  assert big.num_leaves == 1000                       # ~sqrt(n)
  assert big.num_leaves_to_search == 100
  assert big.reordering_num_neighbors == 100
  assert big.training_sample_size == 250_000
  custom = ScannConfig(num_leaves=50, num_leaves_to_search=5, reordering_num_neighbors=40,
                       brute_force_below=10, tree_above=100).resolve(5000)
  assert (custom.mode, custom.num_leaves, custom.num_leaves_to_search,
          custom.reordering_num_neighbors) == ("tree_ah", 50, 5, 40)
  with pytest.raises(SearcherError, match="Unknown ScaNN mode"):
    ScannConfig(mode="lsh").resolve(10)


@pytest.mark.parametrize("mode", ["brute_force", "ah", "tree_ah"])
def test_scann_agrees_with_exact_on_clustered_data(mode):
  emb, q = testing.clustered(4000, seed=0, num_queries=200)
  # 4k points is far below where auto picks a tree: use 20 leaves (~3 clusters each), search 5.
  scann = ScannSearcher(emb, ScannConfig(mode=mode, num_leaves=20, num_leaves_to_search=5))
  exact = BruteForceSearcher(emb)
  rows, scores = scann.search(q, 10)
  exact_rows, exact_scores = exact.search(q, 10)
  recall = recall_at_k(rows.numpy(), exact_rows.numpy())
  assert recall >= 0.9, (mode, recall)
  if mode == "brute_force":
    assert recall == 1.0
  # Scores are inner products (larger is better), sorted; re-ordered rows get the exact score.
  s = scores.numpy()
  assert np.all(s[:, :-1] >= s[:, 1:] - 1e-4)
  same_top1 = rows.numpy()[:, 0] == exact_rows.numpy()[:, 0]
  assert same_top1.mean() >= 0.9
  np.testing.assert_allclose(s[same_top1, 0], exact_scores.numpy()[same_top1, 0], rtol=1e-4)


def test_search_params_can_be_retuned_without_rebuilding():
  emb, q = testing.clustered(3000, seed=7, num_queries=100)
  exact_rows = exact_top_k_numpy(emb, q, 10)[0]
  searcher = ScannSearcher(emb, ScannConfig(mode="tree_ah", num_leaves=50,
                                            num_leaves_to_search=1, reordering_num_neighbors=10))
  low = recall_at_k(searcher.search(q, 10)[0].numpy(), exact_rows)
  searcher.set_search_params(num_leaves_to_search=50, reordering_num_neighbors=200)
  high = recall_at_k(searcher.search(q, 10)[0].numpy(), exact_rows)
  assert high >= 0.99 and low < high - 0.1, (low, high)
  assert searcher.info()["config"]["num_leaves_to_search"] == 50
  with pytest.raises(SearcherError, match="tree_ah"):
    ScannSearcher(emb[:100], ScannConfig(mode="ah")).set_search_params(num_leaves_to_search=2)


def test_tiny_corpus_tree_needs_enough_points():
  with pytest.raises(SearcherError, match="at least 16"):
    ScannSearcher(testing.clustered(10), ScannConfig(mode="tree_ah"))


def test_saved_model_reloads_in_fresh_process_with_same_neighbours(tmp_path):
  emb, q = testing.clustered(3000, seed=2, num_queries=50)
  searcher = ScannSearcher(emb, ScannConfig(mode="tree_ah", num_leaves=40,
                                            num_leaves_to_search=8))
  rows, scores = searcher.search(q, 10)
  path = str(tmp_path / "scann")
  save_searcher(searcher, path)
  np.save(tmp_path / "q.npy", q)
  script = textwrap.dedent(f"""
      import numpy as np, tensorflow as tf
      from realm_tf.retrieval.searcher import load_searcher
      s = load_searcher({path!r})
      rows, scores = s.search(tf.constant(np.load({str(tmp_path / 'q.npy')!r})), 10)
      np.save({str(tmp_path / 'rows.npy')!r}, rows.numpy())
      np.save({str(tmp_path / 'scores.npy')!r}, scores.numpy())
  """)
  subprocess.run([sys.executable, "-c", script], check=True, env=dict(os.environ),
                 capture_output=True)
  np.testing.assert_array_equal(np.load(tmp_path / "rows.npy"), rows.numpy())
  np.testing.assert_allclose(np.load(tmp_path / "scores.npy"), scores.numpy(), rtol=1e-6)


def test_two_loaded_indexes_do_not_share_a_resource(tmp_path):
  a, b = testing.clustered(300, seed=4), testing.clustered(300, seed=5)
  q = testing.clustered(5, seed=6)
  for name, emb in (("a", a), ("b", b)):
    save_searcher(ScannSearcher(emb, ScannConfig(mode="brute_force")), str(tmp_path / name))
  la, lb = load_searcher(str(tmp_path / "a")), load_searcher(str(tmp_path / "b"))
  np.testing.assert_array_equal(la.search(q, 5)[0].numpy(), exact_top_k_numpy(a, q, 5)[0])
  np.testing.assert_array_equal(lb.search(q, 5)[0].numpy(), exact_top_k_numpy(b, q, 5)[0])
  assert la.info["kind"] == "scann" and la.info["config"]["mode"] == "brute_force"
