"""Tests for realm_tf.export.mips: exact stock search, and the variant switch."""
import numpy as np
import pytest
import tensorflow as tf

from realm_tf.export import mips
from realm_tf.export.versioning import ServingExportError


def test_stock_mips_is_exact_top_k():
  rng = np.random.default_rng(0)
  emb = rng.normal(size=(30, 6)).astype(np.float32)
  q = rng.normal(size=(2, 6)).astype(np.float32)
  m = mips.make_mips(emb, "stock")
  assert isinstance(m, mips.StockMips) and (m.num_rows, m.dim) == (30, 6)
  rows, scores = m.search(tf.constant(q), 4)
  exact = np.argsort(-(q @ emb.T), axis=1, kind="stable")[:, :4]
  np.testing.assert_array_equal(rows.numpy(), exact)
  np.testing.assert_allclose(scores.numpy(), np.take_along_axis(q @ emb.T, exact, axis=1),
                             rtol=1e-5)


def test_make_mips_rejects_unknown_variant():
  with pytest.raises(ServingExportError, match="Unknown variant 'both'"):
    mips.make_mips(np.zeros([2, 2], np.float32), "both")


def test_stock_mips_searches_a_given_variable_without_copying_it():
  """The open-QA export passes the model's index variable: the export process holds it once."""
  emb = np.random.default_rng(1).normal(size=(10, 4)).astype(np.float32)
  var = tf.Variable(emb, trainable=False)
  m = mips.make_mips(emb, "stock", variable=var)
  assert m.embeddings is var and (m.num_rows, m.dim) == (10, 4)
  var.assign(-emb)  # searches what the variable holds now
  rows, _ = m.search(tf.constant(emb[:1]), 1)
  assert rows.numpy()[0, 0] == np.argmax(-emb[:1] @ emb.T)
  with pytest.raises(ServingExportError, match="float32 .N, D. variable"):
    mips.StockMips(tf.Variable(np.zeros([3], np.float32)))
