"""Tests for realm_tf.export.versioning: atomic publishing in TF Serving's layout, versions,
realm_export.json, and the op checks that keep py_function (and ScaNN in stock) out."""
import os
import types

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.export import versioning, warmup


class _PyFuncModule(tf.Module):

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
  def serve(self, x):
    return {"y": tf.py_function(lambda v: v * 2, [x], tf.float32)}


class _PlainModule(tf.Module):

  def __init__(self):
    super().__init__()
    self.w = tf.Variable(3.0)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
  def serve(self, x):
    return {"y": x * self.w}


def test_publish_rejects_py_function_and_leaves_nothing(tmp_path):
  base = str(tmp_path)
  m = _PyFuncModule()
  with pytest.raises(versioning.ServingExportError, match="EagerPyFunc"):
    versioning.publish_saved_model(m, base, "pyfunc", 1, {"serving_default": m.serve})
  assert os.listdir(os.path.join(base, "pyfunc")) == []


def test_publish_layout_versions_and_warmup(tmp_path):
  base = str(tmp_path)
  m = _PlainModule()
  req = warmup.requests("plain", [{"x": np.array([1.0, 2.0], np.float32)}])
  path = versioning.publish_saved_model(m, base, "plain", 3, {"serving_default": m.serve},
                                        warmup_requests=req, info={"note": "x"})
  assert path == os.path.join(base, "plain", "3")
  assert sorted(os.listdir(os.path.join(base, "plain"))) == ["3"]  # no temp dir left
  info = versioning.read_export_info(path)
  assert info["note"] == "x" and info["version"] == 3 and info["signatures"] == ["serving_default"]
  assert versioning.next_version(base, ["plain", "other"]) == 4
  with pytest.raises(versioning.ServingExportError, match="already exists"):
    versioning.publish_saved_model(m, base, "plain", 3, {"serving_default": m.serve})
  with pytest.raises(versioning.ServingExportError, match="positive"):
    versioning.publish_saved_model(m, base, "plain", 0, {"serving_default": m.serve})
  loaded = tf.saved_model.load(path)
  (out,) = warmup.replay(loaded, warmup.read_warmup_file(path))
  np.testing.assert_allclose(out["y"], [3.0, 6.0])
  ops = versioning.check_saved_model_ops(path)
  assert "Mul" in ops
  with pytest.raises(versioning.ServingExportError, match="Mul"):
    versioning.check_saved_model_ops(path, forbidden_prefixes=("Mul",))


def test_versions_ignore_non_numeric_entries(tmp_path):
  base = str(tmp_path)
  assert versioning.list_model_versions(os.path.join(base, "absent")) == []
  assert versioning.next_version(base, ["absent"]) == 1
  for name in ("1", "10", "2", ".tmp-11-abcd", "notes"):
    os.makedirs(os.path.join(base, "m", name))
  assert versioning.list_model_versions(os.path.join(base, "m")) == [1, 2, 10]
  assert versioning.next_version(base, ["m", "absent"]) == 11


def test_variant_model_name_and_save_options():
  assert versioning.variant_model_name("realm_openqa", "stock") == "realm_openqa"
  assert versioning.variant_model_name("realm_openqa", "scann") == "realm_openqa_scann"
  with pytest.raises(versioning.ServingExportError, match="Unknown variant"):
    versioning.variant_model_name("realm_openqa", "both")
  assert list(versioning.save_options("scann").namespace_whitelist) == ["Scann"]
  assert not versioning.save_options("stock").namespace_whitelist


def test_model_info_names_config_corpus_and_bundle():
  model = types.SimpleNamespace(config=types.SimpleNamespace(to_dict=lambda: {"a": 1}),
                                index=types.SimpleNamespace(size=12))
  assert versioning.model_info(model, None) == {"openqa_config": {"a": 1}, "num_blocks": 12}
  bundle = types.SimpleNamespace(path="/idx/3", version=3)
  assert versioning.model_info(model, bundle)["index_bundle"] == "/idx/3"
  assert versioning.model_info(model, bundle)["index_version"] == 3
