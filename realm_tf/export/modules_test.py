"""Tests for realm_tf.export.modules: the searcher module, saved and reloaded, in both variants.

The embedders and the reader need a model; components_test.py exports them from a micro model
and checks them in a fresh process.
"""
import numpy as np
import pytest
import tensorflow as tf

from realm_tf.export import modules, versioning, warmup


def test_searcher_export_stock_is_exact_and_scann_matches(tmp_path):
  rng = np.random.default_rng(0)
  emb = rng.normal(size=(40, 8)).astype(np.float32)
  ids = rng.permutation(1000)[:40].astype(np.int64)
  q = rng.normal(size=(3, 8)).astype(np.float32)
  exact = np.argsort(-(q @ emb.T), axis=1, kind="stable")[:, :5]
  for variant in ("stock", "scann"):
    name = versioning.variant_model_name(modules.SEARCHER, variant)
    m = modules.SearcherModule(emb, ids, k=5, variant=variant)
    path = versioning.publish_saved_model(
        m, str(tmp_path), name, 1, m.signatures(), options=versioning.save_options(variant),
        warmup_requests=warmup.requests(name, [{"query_embeddings": q[:1]}]))
    ops = versioning.check_saved_model_ops(path)
    assert any(op.startswith("Scann") for op in ops) == (variant == "scann")
    loaded = tf.saved_model.load(path)
    for key in ("rows", "block_ids", "scores"):  # batch-major, so servers can batch requests
      spec = loaded.signatures["serving_default"].structured_outputs[key]
      assert spec.shape.as_list() == [None, 5], (variant, key)
    out = loaded.signatures["serving_default"](query_embeddings=tf.constant(q))
    np.testing.assert_array_equal(out["rows"].numpy(), exact, err_msg=variant)
    np.testing.assert_array_equal(out["block_ids"].numpy(), ids[exact], err_msg=variant)
    np.testing.assert_allclose(out["scores"].numpy(),
                               np.take_along_axis(q @ emb.T, exact, axis=1), rtol=1e-4)
    out2 = loaded.signatures["search_k"](query_embeddings=tf.constant(q), k=tf.constant(2))
    np.testing.assert_array_equal(out2["rows"].numpy(), exact[:, :2])
    with pytest.raises(tf.errors.InvalidArgumentError, match="k exceeds"):
      loaded.signatures["search_k"](query_embeddings=tf.constant(q), k=tf.constant(41))
  versioning.check_saved_model_ops(str(tmp_path / "realm_searcher" / "1"),
                                   forbidden_prefixes=("Scann",))


def test_searcher_rejects_mismatched_ids():
  with pytest.raises(versioning.ServingExportError, match="3 embeddings but 2 block ids"):
    modules.SearcherModule(np.zeros([3, 4], np.float32), np.array([1, 2]), k=2, variant="stock")
