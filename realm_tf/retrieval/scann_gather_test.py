"""Tests for ScannConfig(rescoring="gather"): ScaNN's hashing candidates re-scored exactly against
the searcher's one float copy of the matrix (ORQA's retrieval), saved and reloaded."""
import numpy as np
import pytest
import tensorflow as tf

from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.retrieval.scann_searcher import ScannConfig, ScannSearcher
from realm_tf.retrieval.searcher import SearcherError, load_searcher, save_searcher
from realm_tf.retrieval.topk import exact_top_k

N, D = 2000, 16


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  return (rng.standard_normal((N, D)).astype(np.float32),
          rng.standard_normal((6, D)).astype(np.float32))


def _config(**changes):
  base = dict(mode="tree_ah", num_leaves=40, num_leaves_to_search=40, training_sample_size=N,
              reordering_num_neighbors=1, rescoring="gather")
  return ScannConfig(**dict(base, **changes))


def _float_bytes(module) -> int:
  return sum(int(np.prod(v.shape)) * 4 for v in module.variables if v.dtype == tf.float32)


def test_holds_one_float_copy(data):
  x, _ = data
  gather = ScannSearcher(x, _config())
  # The matrix once (the `embeddings` variable); ScaNN's state keeps no float copy of its own.
  assert N * D * 4 <= _float_bytes(gather) <= N * D * 4 + 64  # + ScaNN's float scalars
  assert gather.embeddings.shape == (N, D)
  np.testing.assert_array_equal(gather.embeddings.numpy(), x)
  assert int(np.prod(gather.state.dataset.shape)) <= 1
  own = ScannSearcher(x, _config(rescoring="scann"))  # ScaNN's re-ordering: its own copy
  assert int(np.prod(own.state.dataset.shape)) == N * D
  gather.release()
  own.release()


def test_scores_are_exact_and_all_candidates_give_exact_top_k(data):
  x, q = data
  searcher = ScannSearcher(x, _config())
  rows, scores = (t.numpy() for t in searcher.search(tf.constant(q), tf.constant(10)))
  assert rows.shape == (6, 10)
  np.testing.assert_allclose(scores, np.take_along_axis(q @ x.T, rows, 1), rtol=1e-5, atol=1e-5)
  assert np.all(np.diff(scores, axis=1) <= 1e-6)
  searcher.set_search_params(reordering_num_neighbors=N)  # every point a candidate
  rows, scores = (t.numpy() for t in searcher.search(tf.constant(q), tf.constant(10)))
  exact_rows, exact_scores = exact_top_k(q, x, 10)
  np.testing.assert_array_equal(rows, exact_rows)
  np.testing.assert_allclose(scores, exact_scores, rtol=1e-5, atol=1e-5)
  searcher.release()


def test_short_candidate_lists_score_missing_rows_minus_infinity(data):
  x, q = data
  searcher = ScannSearcher(x, _config(num_leaves=100, num_leaves_to_search=1))
  rows, scores = (t.numpy() for t in searcher.search(tf.constant(q), tf.constant(200)))
  valid = rows >= 0
  # One leaf of ~20 points searched: ScaNN finds fewer than k (as with its own re-ordering), and
  # the rows it pads with (-1) score -inf.
  assert rows.shape[0] == 6 and 0 < rows.shape[1] < 200 and valid.sum() > 0
  assert np.all(np.isneginf(scores[~valid]))
  np.testing.assert_allclose(scores[valid], np.take_along_axis(q @ x.T, np.maximum(rows, 0), 1)[
      valid], rtol=1e-5, atol=1e-5)
  searcher.release()


def test_saved_searcher_and_bundle_store_the_matrix_once(data, tmp_path):
  x, q = data
  searcher = ScannSearcher(x, _config())
  rows, _ = searcher.search(tf.constant(q), tf.constant(5))
  info = save_searcher(searcher, str(tmp_path / "searcher"))
  assert info["embeddings_key"] == "embeddings/.ATTRIBUTES/VARIABLE_VALUE"
  assert info["config"]["rescoring"] == "gather"
  loaded = load_searcher(str(tmp_path / "searcher"))
  np.testing.assert_array_equal(loaded.search(tf.constant(q), tf.constant(5))[0].numpy(),
                                rows.numpy())
  loaded.release()
  export = tmp_path / "export"
  export.mkdir()
  (export / "placeholder").write_text("")
  published = bundle_lib.publish(str(tmp_path / "index"), export_dir=str(export),
                                 searcher=searcher, embeddings=x,
                                 block_ids=np.arange(N, dtype=np.int64), manifest={"step": 0})
  assert published.embeddings_in_searcher
  assert not (tmp_path / "index" / "00000001" / bundle_lib.EMBEDDINGS).exists()
  np.testing.assert_array_equal(np.asarray(published.embeddings), x)
  searcher.release()


def test_unknown_rescoring_is_refused():
  with pytest.raises(SearcherError, match="Unknown rescoring 'nope'"):
    ScannConfig(rescoring="nope").for_rows(100)
  # Brute force scores exactly already: nothing to gather.
  assert ScannConfig(mode="brute_force", rescoring="gather").for_rows(100).rescoring == "scann"
