"""Tests for realm_tf.export.warmup: the warm-up file round-trips and replays on a SavedModel."""
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from realm_tf.export import warmup


class _Echo(tf.Module):

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="questions")])
  def serve(self, questions):
    return {"length": tf.strings.length(questions, unit="UTF8_CHAR")}


def test_string_requests_encode_utf8_and_batch():
  reqs = warmup.string_requests("m", "questions", ["où est zürich", "b", "c"])
  assert len(reqs) == 2
  assert reqs[0].model_spec.name == "m" and reqs[0].model_spec.signature_name == "serving_default"
  assert tf.make_ndarray(reqs[0].inputs["questions"]).tolist() == ["où est zürich".encode()]
  assert tf.make_ndarray(reqs[1].inputs["questions"]).shape == (3,)
  assert len(warmup.string_requests("m", "q", ["only"])) == 1
  with pytest.raises(ValueError, match="No warm-up texts"):
    warmup.string_requests("m", "q", [])


def test_write_read_replay(tmp_path):
  path = str(tmp_path / "model")
  module = _Echo()
  tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
  reqs = warmup.string_requests("echo", "questions", ["zürich", "abc"])
  file = warmup.write_warmup_file(path, reqs)
  assert file == os.path.join(path, "assets.extra", "tf_serving_warmup_requests")
  # The file is TFRecord of PredictionLog protos, as TF Serving reads it.
  records = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
             for r in tf.data.TFRecordDataset(file)]
  assert [r.WhichOneof("log_type") for r in records] == ["predict_log"] * 2
  assert warmup.read_warmup_file(path) == reqs
  outs = warmup.replay(tf.saved_model.load(path), warmup.read_warmup_file(path))
  np.testing.assert_array_equal(outs[0]["length"], [6])
  np.testing.assert_array_equal(outs[1]["length"], [6, 3])
  bad = warmup.requests("echo", [{"questions": ["x"]}], signature_name="nope")
  with pytest.raises(ValueError, match="signature 'nope'"):
    warmup.replay(tf.saved_model.load(path), bad)
  with pytest.raises(ValueError, match="at most 1000"):
    warmup.write_warmup_file(path, reqs * 501)
  assert warmup.read_warmup_file(str(tmp_path)) == []
