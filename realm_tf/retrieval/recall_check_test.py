"""Tests for the refresher's recall check: a searcher is kept only at the required recall."""
import numpy as np
import pytest

from realm_tf.data import corpus as corpus_lib
from realm_tf.retrieval import recall_check
from realm_tf.retrieval.scann_searcher import ScannConfig
from realm_tf.testing import retrieval_fixtures as testing


def test_exact_searchers_pass_and_a_coarse_one_is_refused():
  points, queries = testing.clustered(3000, dim=32, num_clusters=16, seed=1, num_queries=200)
  searcher, recall, k = recall_check.build_and_check(points, queries,
                                                     ScannConfig(mode="brute_force"), 0.99)
  assert (recall, k) == (1.0, recall_check.RECALL_K)
  searcher.release()
  # One leaf of 64 searched: most true neighbours sit in other leaves.
  coarse = ScannConfig(mode="tree_ah", num_leaves=64, num_leaves_to_search=1,
                       reordering_num_neighbors=10)
  with pytest.raises(recall_check.RecallTooLowError, match=r"recall@10 = 0\.\d+ .* 200 queries "
                                                           r"is below --min_recall=0.99"):
    recall_check.build_and_check(points, queries, coarse, 0.99)
  # Fewer rows than 10: recall is measured at k = the number of rows.
  _, recall, k = recall_check.build_and_check(points[:4], queries[:3],
                                              ScannConfig(mode="brute_force"), 1.0)
  assert (recall, k) == (1.0, 4)


def test_query_sample_is_the_query_tower_on_block_bodies(tmp_path):
  from realm_tf.retrieval import embedder_export as ee  # pylint: disable=g-import-not-at-top
  corpus_dir = str(tmp_path / "corpus")
  testing.make_corpus(corpus_dir, (5, 5), seed=3)
  embedder = ee.load_embedder(ee.export_embedder(testing.make_retriever(seed=2),
                                                 str(tmp_path / "model"), 1))
  shards = corpus_lib.shard_paths(corpus_dir)
  a = recall_check.sample_query_embeddings(embedder, shards, 7, seed=0)
  b = recall_check.sample_query_embeddings(embedder, shards, 7, seed=0)
  assert a.shape == (7, embedder.embedding_dim) and a.dtype == np.float32
  np.testing.assert_array_equal(a, b)  # a fixed seed: the same sample every time
  assert recall_check.sample_query_embeddings(embedder, shards, 50).shape[0] == 10
