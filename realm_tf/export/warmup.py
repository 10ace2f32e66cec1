"""TF Serving warm-up requests: `assets.extra/tf_serving_warmup_requests` in a SavedModel.

TF Serving (and `serving.server`) replays these PredictionLog records after loading a version and
before marking it AVAILABLE, so the first real request does not pay for one-time work: kernel and
thread-pool initialisation, the TF.Text tokenizer's tables, and for the ScaNN variant the
searcher's in-graph build from its serialized state (`TensorsToScann`, first call only). The file
is a TFRecord of serialized `tensorflow.serving.PredictionLog` protos holding `predict_log`s
(TF Serving reads at most 1,000).
"""
import os
from typing import Dict, Iterable, List, Mapping, Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_RECORDS = 1000  # TF Serving's limit.

# Generic questions for the warm-up of question-taking models.
DEFAULT_QUESTIONS = (
    "who wrote the novel pride and prejudice",
    "what is the capital of france",
    "when was the eiffel tower built",
    "which river flows through vienna",
)


def _to_array(value) -> np.ndarray:
  """Lists of str become object arrays of UTF-8 bytes; anything else goes through numpy."""
  if isinstance(value, (list, tuple)) and value and isinstance(
      np.asarray(value, dtype=object).ravel()[0], str):
    return np.vectorize(lambda s: s.encode("utf-8"), otypes=[object])(np.asarray(value,
                                                                                 dtype=object))
  array = np.asarray(value)
  if array.dtype.kind == "U":
    return np.vectorize(lambda s: s.encode("utf-8"), otypes=[object])(array)
  return array


def predict_request(model_name: str, inputs: Mapping[str, object],
                    signature_name: str = "serving_default") -> predict_pb2.PredictRequest:
  """A PredictRequest for `inputs` (name → list of str, or numpy array)."""
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature_name
  for name, value in inputs.items():
    request.inputs[name].CopyFrom(tf.make_tensor_proto(_to_array(value)))
  return request


def requests(model_name: str, batches: Iterable[Mapping[str, object]],
             signature_name: str = "serving_default") -> List[predict_pb2.PredictRequest]:
  """One PredictRequest per input dict in `batches`."""
  return [predict_request(model_name, b, signature_name) for b in batches]


def string_requests(model_name: str, input_name: str, texts: Sequence[str],
                    signature_name: str = "serving_default") -> List[predict_pb2.PredictRequest]:
  """Warm-up for a one-string-input signature: a batch of 1 and a batch of all `texts`."""
  texts = list(texts)
  if not texts:
    raise ValueError("No warm-up texts given.")
  batches = [{input_name: texts[:1]}]
  if len(texts) > 1:
    batches.append({input_name: texts})
  return requests(model_name, batches, signature_name)


def write_warmup_file(export_dir: str, warmup_requests: Sequence[predict_pb2.PredictRequest]
                      ) -> str:
  """Writes `<export_dir>/assets.extra/tf_serving_warmup_requests`; returns its path."""
  if len(warmup_requests) > MAX_RECORDS:
    raise ValueError(f"{len(warmup_requests)} warm-up requests; TF Serving reads at most "
                     f"{MAX_RECORDS}.")
  directory = os.path.join(export_dir, WARMUP_DIR)
  tf.io.gfile.makedirs(directory)
  path = os.path.join(directory, WARMUP_FILE)
  with tf.io.TFRecordWriter(path) as writer:
    for request in warmup_requests:
      log = prediction_log_pb2.PredictionLog()
      log.predict_log.request.CopyFrom(request)
      writer.write(log.SerializeToString())
  return path


def read_warmup_file(export_dir: str) -> List[predict_pb2.PredictRequest]:
  """The PredictRequests stored in an export's warm-up file ([] when it has none)."""
  path = os.path.join(export_dir, WARMUP_DIR, WARMUP_FILE)
  if not tf.io.gfile.exists(path):
    return []
  out = []
  for i, record in enumerate(tf.data.TFRecordDataset(path)):
    log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
    if log.WhichOneof("log_type") != "predict_log":
      raise ValueError(f"{path}: record {i} is not a predict_log.")
    out.append(log.predict_log.request)
  return out


def replay(loaded, warmup_requests: Sequence[predict_pb2.PredictRequest]) -> List[Dict]:
  """Runs each request on a loaded SavedModel's signatures (as a server's warm-up does) and
  returns the outputs as numpy dicts; an error names the record."""
  outputs = []
  for i, request in enumerate(warmup_requests):
    name = request.model_spec.signature_name or "serving_default"
    if name not in loaded.signatures:
      raise ValueError(f"Warm-up record {i} calls signature {name!r}, not in "
                       f"{sorted(loaded.signatures)}.")
    fn = loaded.signatures[name]
    specs = fn.structured_input_signature[1]
    feeds = {k: tf.constant(tf.make_ndarray(v), dtype=specs[k].dtype)
             for k, v in request.inputs.items()}
    outputs.append({k: v.numpy() for k, v in fn(**feeds).items()})
  return outputs
