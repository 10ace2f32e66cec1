"""Tests for the ScaNN searcher: size-scaled config, agreement with exact search, SavedModel,
and that a released (or collected) searcher gives its native index's memory back."""
import gc
import os
import subprocess
import sys
import textwrap
import weakref

import numpy as np
import pytest

from realm_tf.io import memory
from realm_tf.testing import retrieval_fixtures as testing
from realm_tf.retrieval.brute_force import BruteForceSearcher
from realm_tf.retrieval.scann_searcher import ScannConfig, ScannSearcher
from realm_tf.retrieval.searcher import (SearcherError, load_searcher, read_searcher_embeddings,
                                         save_searcher)
from realm_tf.retrieval.recall_check import neighbour_recall
from realm_tf.retrieval.topk import exact_top_k


def _rss_bytes() -> int:
  """Resident memory of this process after trimming malloc's free lists (no garbage collection:
  what a dropped searcher leaves to Python's cyclic collector counts)."""
  memory.return_free_memory()
  return memory.rss_bytes()


def test_config_scales_with_corpus_size():
  cfg = ScannConfig()
  assert cfg.for_rows(19_999).mode == "brute_force"
  assert cfg.for_rows(20_000).mode == "ah"
  assert cfg.for_rows(99_999).mode == "ah"
  big = cfg.for_rows(1_000_000)
  assert big.mode == "tree_ah"
  assert big.num_leaves == 1000                       # ~sqrt(n)
  assert big.num_leaves_to_search == 100
  assert big.reordering_num_neighbors == 100
  assert big.training_sample_size == 250_000
  custom = ScannConfig(num_leaves=50, num_leaves_to_search=5, reordering_num_neighbors=40,
                       brute_force_below=10, tree_above=100).for_rows(5000)
  assert (custom.mode, custom.num_leaves, custom.num_leaves_to_search,
          custom.reordering_num_neighbors) == ("tree_ah", 50, 5, 40)
  with pytest.raises(SearcherError, match="Unknown ScaNN mode"):
    ScannConfig(mode="lsh").for_rows(10)


@pytest.mark.parametrize("mode", ["brute_force", "ah", "tree_ah"])
def test_scann_agrees_with_exact_on_clustered_data(mode):
  emb, q = testing.clustered(4000, seed=0, num_queries=200)
  # 4k points is far below where auto picks a tree: use 20 leaves (~3 clusters each), search 5.
  scann = ScannSearcher(emb, ScannConfig(mode=mode, num_leaves=20, num_leaves_to_search=5))
  exact = BruteForceSearcher(emb)
  rows, scores = scann.search(q, 10)
  exact_rows, exact_scores = exact.search(q, 10)
  recall = neighbour_recall(rows.numpy(), exact_rows.numpy())
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
  exact_rows = exact_top_k(q, emb, 10)[0]
  searcher = ScannSearcher(emb, ScannConfig(mode="tree_ah", num_leaves=50,
                                            num_leaves_to_search=1, reordering_num_neighbors=10))
  low = neighbour_recall(searcher.search(q, 10)[0].numpy(), exact_rows)
  searcher.set_search_params(num_leaves_to_search=50, reordering_num_neighbors=200)
  high = neighbour_recall(searcher.search(q, 10)[0].numpy(), exact_rows)
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
  np.testing.assert_array_equal(la.search(q, 5)[0].numpy(), exact_top_k(q, a, 5)[0])
  np.testing.assert_array_equal(lb.search(q, 5)[0].numpy(), exact_top_k(q, b, 5)[0])
  assert la.info["kind"] == "scann" and la.info["config"]["mode"] == "brute_force"


def test_search_after_release_rebuilds_the_index(tmp_path):
  emb, q = testing.clustered(2000, seed=8, num_queries=20)
  searcher = ScannSearcher(emb, ScannConfig(mode="ah"))
  assert not searcher.release()  # nothing searched yet: no index to free
  rows = searcher.search(q, 5)[0].numpy()
  save_searcher(searcher, str(tmp_path / "s"))
  assert searcher.release() and not searcher.release()
  np.testing.assert_array_equal(searcher.search(q, 5)[0].numpy(), rows)
  loaded = load_searcher(str(tmp_path / "s"))
  np.testing.assert_array_equal(loaded.search(q, 5)[0].numpy(), rows)
  assert loaded.release() and not loaded.release()
  np.testing.assert_array_equal(loaded.search(q, 5)[0].numpy(), rows)
  assert searcher.release() and loaded.release()  # each copy had its own index


def test_release_runs_eagerly_while_a_graph_is_being_built():
  """A finalizer can fire inside a TF1-style graph (as it did during the demo's export): the
  release must still run, not print an 'Exception ignored' traceback."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  emb, q = testing.clustered(2000, seed=9, num_queries=4)
  searcher = ScannSearcher(emb, ScannConfig(mode="ah"))
  searcher.search(q, 5)
  with tf.Graph().as_default():
    assert searcher.release()
  assert not searcher.release()  # already freed inside the graph


def test_dropped_searcher_frees_its_variables_without_the_cyclic_collector(tmp_path):
  """With the cyclic collector off, the last reference to a searcher dropped frees its variables
  (the indexed matrix) at once: built (searched and saved, as the refresher does), exact, and
  loaded. The graphs `search` traced captured the variables' handles and sat in reference cycles,
  so the matrix used to live until Python's collector happened to run."""
  emb, q = testing.clustered(2000, seed=11, num_queries=8)
  path = str(tmp_path / "s")
  makers = {"scann": lambda: ScannSearcher(emb, ScannConfig(mode="ah")),
            "exact": lambda: BruteForceSearcher(emb),
            "loaded": lambda: load_searcher(path)}
  gc.collect()
  gc.disable()
  try:
    for kind, make in makers.items():
      searcher = make()
      searcher.search(q, 5)
      if kind == "scann":
        save_searcher(searcher, path)
      variables = (searcher.variables if kind != "loaded" else
                   [searcher.state.dataset, searcher.state.hashed_dataset])
      handles = [weakref.ref(v.handle) for v in variables]
      del variables
      assert handles, kind
      alive = weakref.ref(searcher)
      del searcher
      assert alive() is None, kind
      assert [h() for h in handles if h() is not None] == [], kind
  finally:
    gc.enable()


def test_rebuilds_and_reloads_free_their_index(tmp_path):
  """10 builds and 10 loads of a 70k x 128 AH index in one process: RSS stays within one index's
  bytes of what it was after the first (when nothing freed the native indexes, every build and
  every load kept its copy). Even iterations call release(); odd ones only drop the searcher and
  leave it to its finalizer. Nothing calls gc.collect(): a searcher in a reference cycle would hold
  its matrix until the cyclic collector happened to run. At 35.8 MB the matrix is above glibc's largest mmap threshold
  (32 MB), so a freed copy goes back to the system as at full scale rather than staying in
  malloc's heap. A small, plain AH training keeps each build near a second."""
  emb, q = testing.clustered(70_000, seed=9, num_queries=32)
  config = ScannConfig(mode="ah", training_sample_size=2000, dimensions_per_block=4,
                       anisotropic_quantization_threshold=float("nan"))
  path = str(tmp_path / "scann")
  rss = []
  for i in range(10):
    searcher = ScannSearcher(emb, config)
    searcher.search(q, 10)
    if i == 0:
      save_searcher(searcher, path)
    if i % 2 == 0:
      searcher.release()
    del searcher
    rss.append(_rss_bytes())
  for i in range(10):
    loaded = load_searcher(path)
    loaded.search(q, 10)
    if i % 2 == 0:
      loaded.release()
    del loaded
    rss.append(_rss_bytes())
  mb = [round(r / 2**20) for r in rss]
  assert rss[9] <= rss[0] + emb.nbytes, f"RSS (MB) after each build: {mb[:10]}"
  assert rss[19] <= rss[0] + emb.nbytes, f"RSS (MB) after each build, then load: {mb}"


@pytest.mark.parametrize("mode", ["brute_force", "tree_ah"])
def test_saved_searcher_holds_the_matrix_in_row_order(tmp_path, mode):
  emb = testing.clustered(500, seed=10)
  info = save_searcher(ScannSearcher(emb, ScannConfig(mode=mode, num_leaves=10)),
                       str(tmp_path / "s"))
  assert info["embeddings_key"] == ScannSearcher.embeddings_key
  mapped = read_searcher_embeddings(str(tmp_path / "s"))
  assert isinstance(mapped, np.memmap) and mapped.dtype == np.float32
  np.testing.assert_array_equal(mapped, emb)
  np.testing.assert_array_equal(read_searcher_embeddings(str(tmp_path / "s"), mmap=False), emb)
