"""Small real SavedModels for testing and benchmarking the server without a trained REALM export.

`write_qa_model` mimics `realm_openqa`'s interface (question strings [B] → answers, probabilities,
evidence ids / titles / texts / scores) with real TF string ops, `write_numeric_model` has two
numeric inputs and extra signatures that cannot be batched, and `write_mips_model` does an exact
inner-product search over a random embedding matrix, so its cost (like REALM's stock-ops export)
barely grows with the batch; `write_scann_model` needs ScaNN's custom ops to load, like the ScaNN
`realm_openqa` variant. Versions are published as TF Serving expects: written to a temp
directory beside `<base>/<version>` and renamed into place (`realm_tf.io.publish.publish_dir`).
"""
import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from realm_tf.io import publish as publish_lib

NUM_TITLES = 97


def publish(module: tf.Module, base_path: str, version: int, signatures,
            warmup: Optional[Sequence[predict_pb2.PredictRequest]] = None,
            options: Optional[tf.saved_model.SaveOptions] = None) -> str:
  """Saves `module` as `<base_path>/<version>` via a temp dir and an atomic rename.

  Publishing as TF Serving expects means a polling server never loads half a version; an existing
  version is refused (`realm_tf.io.publish.TargetExistsError`), as servers may have loaded it.
  """
  final = os.path.join(base_path, str(version))
  with publish_lib.publish_dir(final) as tmp:
    tf.saved_model.save(module, tmp, signatures=signatures, options=options)
    if warmup:
      tf.io.gfile.makedirs(os.path.join(tmp, "assets.extra"))
      with tf.io.TFRecordWriter(os.path.join(tmp, "assets.extra",
                                             "tf_serving_warmup_requests")) as w:
        for request in warmup:
          log = prediction_log_pb2.PredictionLog()
          log.predict_log.request.CopyFrom(request)
          w.write(log.SerializeToString())
  return final


class QAModel(tf.Module):
  """Question strings → a deterministic 'answer' and 2 'evidence' blocks, all via TF ops."""

  def __init__(self, version: int):
    super().__init__()
    self.version = tf.Variable(version, dtype=tf.int64, trainable=False)
    self.titles = tf.constant([f"Title {i}" for i in range(NUM_TITLES)])
    self.texts = tf.constant([f"Body text of block {i}, about topic {i % 7}." for i in
                              range(NUM_TITLES)])

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="questions")])
  def answer(self, questions):
    words = tf.strings.split(tf.strings.lower(questions))
    last = tf.strings.reduce_join(words[:, -1:], axis=-1)
    prefix = tf.strings.join(["v", tf.strings.as_string(self.version), ":"])
    answers = tf.strings.join([prefix, tf.strings.upper(last)])
    num_words = tf.cast(words.row_lengths(), tf.float32)
    probabilities = tf.sigmoid(num_words - 3.0)
    first = tf.strings.to_hash_bucket_fast(questions, NUM_TITLES)
    ids = tf.stack([first, (first + self.version) % NUM_TITLES], axis=1)
    scores = tf.cast(ids, tf.float32) / 10.0 + tf.cast(self.version, tf.float32)
    return {"answers": answers, "probabilities": probabilities,
            "evidence_block_ids": ids, "evidence_titles": tf.gather(self.titles, ids),
            "evidence_texts": tf.gather(self.texts, ids), "evidence_scores": scores}


def string_request(model_name: str, questions: Sequence[str],
                   input_name: str = "questions") -> predict_pb2.PredictRequest:
  """A Predict request with a string input (also used as a warm-up record)."""
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = "serving_default"
  request.inputs[input_name].CopyFrom(
      tf.make_tensor_proto(np.array([q.encode() for q in questions], dtype=object)))
  return request


def write_qa_model(base_path: str, version: int = 1, model_name: str = "qa") -> str:
  """Publishes a QAModel version (with a warm-up request) under `base_path`."""
  module = QAModel(version)
  return publish(module, base_path, version, {"serving_default": module.answer},
                 warmup=[string_request(model_name, ["warm up question"])])


class NumericModel(tf.Module):
  """y = (x @ W) * scale + version: two batch inputs, plus signatures that cannot be batched."""

  def __init__(self, version: int):
    super().__init__()
    self.w = tf.Variable(np.arange(6, dtype=np.float32).reshape(3, 2) / 10.0)
    self.version = tf.Variable(float(version))

  @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x"),
                                tf.TensorSpec([None], tf.float32, name="scale")])
  def predict(self, x, scale):
    y = tf.matmul(x, self.w) * scale[:, None] + self.version
    return {"y": y, "total": tf.reduce_sum(y, axis=1)}

  @tf.function(input_signature=[tf.TensorSpec([3], tf.float32, name="x")])
  def single(self, x):
    return {"y": tf.linalg.matvec(self.w, x, transpose_a=True) + self.version}

  @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
  def grand_total(self, x):
    return {"total": tf.reduce_sum(tf.matmul(x, self.w)) + self.version}


def numeric_reference(x: np.ndarray, scale: np.ndarray, version: int) -> np.ndarray:
  """NumPy reference of NumericModel.predict's `y`."""
  w = np.arange(6, dtype=np.float32).reshape(3, 2) / 10.0
  return (x @ w) * scale[:, None] + version


def write_numeric_model(base_path: str, version: int = 1) -> str:
  """Publishes a NumericModel version under `base_path`."""
  module = NumericModel(version)
  return publish(module, base_path, version,
                 {"serving_default": module.predict, "single": module.single,
                  "grand_total": module.grand_total})


class MipsModel(tf.Module):
  """Hashes question words into a 128-d vector, then exact top-k inner-product search."""

  def __init__(self, num_rows: int, dim: int = 128, k: int = 5, seed: int = 0):
    super().__init__()
    rng = np.random.default_rng(seed)
    self.word_table = tf.Variable(rng.standard_normal((4096, dim)).astype(np.float32))
    # Stored transposed [dim, num_rows]: on this CPU `matmul(q, E, transpose_b=True)` is ~20x
    # slower at batch 2-8 than `matmul(q, E_t)` (measured with TF 2.20 on 2 cores).
    self.embeddings_t = tf.Variable(rng.standard_normal((dim, num_rows)).astype(np.float32))
    self.k = k

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="questions")])
  def search(self, questions):
    words = tf.strings.split(tf.strings.lower(questions))
    buckets = tf.strings.to_hash_bucket_fast(words, 4096)
    query = tf.reduce_mean(tf.nn.embedding_lookup(self.word_table, buckets), axis=1)
    scores = tf.matmul(query, self.embeddings_t)
    top = tf.math.top_k(scores, k=self.k)
    return {"evidence_block_ids": tf.cast(top.indices, tf.int64), "evidence_scores": top.values}


def write_mips_model(base_path: str, version: int = 1, num_rows: int = 50000) -> str:
  """Publishes a MipsModel version (with `num_rows` 128-d block embeddings) under `base_path`."""
  module = MipsModel(num_rows)
  return publish(module, base_path, version, {"serving_default": module.search})


class ScannModel(tf.Module):
  """Brute-force ScaNN search over fixed points: a SavedModel that needs ScaNN's custom TF ops."""

  def __init__(self, points: np.ndarray, k: int = 5):
    super().__init__()
    from realm_tf.utils.custom_ops import scann_ops  # pylint: disable=import-outside-toplevel
    self._ops = scann_ops()
    self.state = self._ops.builder(points, k, "dot_product").score_brute_force().build(
        ).serialize_to_module()
    self.k = k

  @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32, name="queries")])
  def search(self, queries):
    s = self.state
    handle = self._ops.tensors_to_scann(
        s.dataset, s.scann_config, s.serialized_partitioner, s.datapoint_to_token, s.ah_codebook,
        s.hashed_dataset, s.int8_dataset, s.int8_multipliers, s.dp_norms,
        shared_name="serving_toy_scann")
    rows, scores = self._ops.scann_search_batched(handle, queries, self.k, -1, -1, False)
    return {"rows": rows, "scores": scores}


def scann_points(seed: int = 0) -> np.ndarray:
  """The 64 x 8 points `write_scann_model` indexes."""
  return np.random.default_rng(seed).standard_normal((64, 8)).astype(np.float32)


def write_scann_model(base_path: str, version: int = 1) -> str:
  """Publishes a ScannModel over `scann_points()` (saved with the Scann op namespace allowed)."""
  module = ScannModel(scann_points())
  return publish(module, base_path, version, {"serving_default": module.search},
                 options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]))
