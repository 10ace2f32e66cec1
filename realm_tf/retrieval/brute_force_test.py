"""Tests for the tiled exact searcher: equals NumPy, saves and reloads in a fresh process."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.testing import retrieval_fixtures as testing
from realm_tf.retrieval.brute_force import BruteForceConfig, BruteForceSearcher
from realm_tf.retrieval.searcher import load_searcher, save_searcher
from realm_tf.retrieval.topk import exact_top_k


@pytest.mark.parametrize("tile_size", [7, 64, 100, 4096])  # ragged, even, exact, single tile
def test_exact_search_equals_numpy(tile_size):
  rng = np.random.default_rng(0)
  emb = rng.normal(size=(100, 128)).astype(np.float32)
  q = rng.normal(size=(9, 128)).astype(np.float32)
  searcher = BruteForceSearcher(emb, BruteForceConfig(tile_size=tile_size))
  rows, scores = searcher.search(q, 10)
  ref_rows, ref_scores = exact_top_k(q, emb, 10)
  assert rows.dtype == tf.int32 and scores.dtype == tf.float32
  assert rows.shape == (9, 10)
  np.testing.assert_array_equal(rows.numpy(), ref_rows)
  np.testing.assert_allclose(scores.numpy(), ref_scores, rtol=1e-5, atol=1e-5)


def test_k_equal_to_rows_and_k_too_large():
  emb = testing.clustered(20, dim=128, seed=3)
  searcher = BruteForceSearcher(emb, BruteForceConfig(tile_size=6))
  rows, _ = searcher.search(emb[:2], 20)
  assert sorted(rows.numpy()[0].tolist()) == list(range(20))
  with pytest.raises(tf.errors.InvalidArgumentError, match="k exceeds"):
    searcher.search(emb[:2], 21)


def test_saved_model_reloads_in_fresh_process(tmp_path):
  emb = testing.clustered(500, seed=4)
  q = testing.clustered(6, seed=5)
  searcher = BruteForceSearcher(emb, BruteForceConfig(tile_size=128))
  path = str(tmp_path / "searcher")
  save_searcher(searcher, path)
  np.save(tmp_path / "q.npy", q)
  expected = searcher.search(q, 10)[0].numpy()
  loaded = load_searcher(path)  # keep a reference: variables die with the loaded object
  in_process = loaded.search(q, 10)[0].numpy()
  np.testing.assert_array_equal(in_process, expected)
  script = textwrap.dedent(f"""
      import numpy as np, tensorflow as tf
      loaded = tf.saved_model.load({path!r})   # stock TF only: no realm_tf, no ScaNN import
      rows = loaded.signatures["serving_default"](
          query_embeddings=tf.constant(np.load({str(tmp_path / 'q.npy')!r})), k=tf.constant(10))
      np.save({str(tmp_path / 'rows.npy')!r}, rows["rows"].numpy())
  """)
  subprocess.run([sys.executable, "-c", script], check=True, env=dict(os.environ),
                 capture_output=True)
  np.testing.assert_array_equal(np.load(tmp_path / "rows.npy"), expected)
