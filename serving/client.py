r"""A TF Serving gRPC client: `PredictClient`, and `answer` that asks `realm_openqa` questions.

Usage (the command line is realm_tf/launch/model_client.py):
  python -m serving.client --server=localhost:8500 --model_name=realm_openqa \
      "who wrote pride and prejudice" "when was the eiffel tower built"

The questions go as one string tensor [B] to the signature's single string input (found through
GetModelMetadata, or named with --input_name). For each question the top answer is printed with its
probability and the evidence blocks (title, retrieval score, a text snippet) when the model has
those outputs; any other model's outputs are printed tensor by tensor. Works against this
project's server and against stock `tensorflow_model_server` alike.
"""
import dataclasses
import runpy
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from realm_tf.utils import command_line  # first: quiets TensorFlow's C++ logs before it is imported

import grpc  # pylint: disable=g-bad-import-order,wrong-import-order
import numpy as np  # pylint: disable=g-bad-import-order,wrong-import-order
import tensorflow as tf  # pylint: disable=g-bad-import-order,wrong-import-order
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from realm_tf.config_base import ConfigBase  # pylint: disable=g-bad-import-order
from serving import tensors
from serving.validation import ServingError

MiB = 1 << 20
STATE_NAMES = {v: k for k, v in get_model_status_pb2.ModelVersionStatus.State.items()}

# Output names recognised as the open-QA interface (first match wins).
ANSWER_KEYS = ("answers", "answer", "top_answers", "top_answer", "predicted_answers")
PROBABILITY_KEYS = ("probabilities", "probability", "answer_probabilities",
                    "answer_probability", "answer_probs")
TITLE_KEYS = ("evidence_titles", "titles", "block_titles")
TEXT_KEYS = ("evidence_texts", "texts", "block_texts", "evidence_text")
SCORE_KEYS = ("evidence_scores", "retrieval_scores", "block_scores")
ID_KEYS = ("evidence_block_ids", "evidence_ids", "block_ids")
STATUS_KEYS = ("status",)  # per-row status: "ok", or why the row has no answer


class PredictClient:
  """Calls one model on a TF Serving-protocol server.

  Args:
    server: "host:port".
    model_name: the model to call.
    signature_name: signature for `predict` (default serving_default).
    version / version_label: pin a version (default: the newest the server has).
    timeout: seconds per RPC.
    max_message_bytes: gRPC send/receive limit of the channel.
  """

  def __init__(self, server: str, model_name: str, signature_name: str = "serving_default",
               version: Optional[int] = None, version_label: Optional[str] = None,
               timeout: float = 30.0, max_message_bytes: int = 64 * MiB):
    self.model_name = model_name
    self.signature_name = signature_name
    self.version = version
    self.version_label = version_label
    self.timeout = timeout
    self._channel = grpc.insecure_channel(
        server, options=[("grpc.max_receive_message_length", max_message_bytes),
                         ("grpc.max_send_message_length", max_message_bytes)])
    self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
    self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

  def _fill_spec(self, spec, signature: bool = True):
    spec.name = self.model_name
    if self.version is not None:
      spec.version.value = self.version
    elif self.version_label:
      spec.version_label = self.version_label
    if signature:
      spec.signature_name = self.signature_name

  def build_request(self, inputs: Mapping[str, np.ndarray],
                    output_filter: Sequence[str] = ()) -> predict_pb2.PredictRequest:
    """A PredictRequest for numpy (or str/bytes list) inputs."""
    request = predict_pb2.PredictRequest()
    self._fill_spec(request.model_spec)
    for name, value in inputs.items():
      request.inputs[name].CopyFrom(tensors.to_proto(value))
    request.output_filter.extend(output_filter)
    return request

  def predict_with_spec(self, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()
                        ) -> Tuple[Dict[str, np.ndarray], predict_pb2.PredictResponse]:
    """Returns (outputs as numpy arrays, the raw response with its model_spec/version)."""
    response = self._predict.Predict(self.build_request(inputs, output_filter),
                                     timeout=self.timeout)
    return {k: tensors.to_numpy(v) for k, v in response.outputs.items()}, response

  def predict(self, inputs: Mapping[str, np.ndarray],
              output_filter: Sequence[str] = ()) -> Dict[str, np.ndarray]:
    """Runs the signature; string outputs come back as object arrays of bytes."""
    return self.predict_with_spec(inputs, output_filter)[0]

  def metadata(self) -> Dict[str, dict]:
    """Signature name → {"inputs"|"outputs": {name: (dtype name, shape list; -1 unknown)}}."""
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    self._fill_spec(request.model_spec, signature=False)
    request.metadata_field.append("signature_def")
    response = self._predict.GetModelMetadata(request, timeout=self.timeout)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sig_map)

    def describe(infos):
      return {name: (tf.dtypes.as_dtype(info.dtype).name,
                     None if info.tensor_shape.unknown_rank else
                     [d.size for d in info.tensor_shape.dim]) for name, info in infos.items()}

    return {key: {"inputs": describe(sig.inputs), "outputs": describe(sig.outputs)}
            for key, sig in sig_map.signature_def.items() if not key.startswith("__")}

  def status(self) -> List[dict]:
    """Each version's {"version", "state" (e.g. "AVAILABLE"), "error_code", "error_message"}."""
    request = get_model_status_pb2.GetModelStatusRequest()
    self._fill_spec(request.model_spec, signature=False)
    response = self._models.GetModelStatus(request, timeout=self.timeout)
    return [{"version": s.version, "state": STATE_NAMES.get(s.state, str(s.state)),
             "error_code": s.status.error_code, "error_message": s.status.error_message}
            for s in response.model_version_status]

  def close(self):
    self._channel.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def find_string_input(metadata: Mapping[str, dict], signature_name: str) -> str:
  """The name of the signature's one string input (ValueError when there is not exactly one)."""
  if signature_name not in metadata:
    raise ValueError(f"signature {signature_name!r} not in the model's signatures "
                     f"{sorted(metadata)}")
  inputs = metadata[signature_name]["inputs"]
  strings = [n for n, (dtype, _) in inputs.items() if dtype == "string"]
  if len(strings) != 1 or len(inputs) != 1:
    raise ValueError(f"signature {signature_name!r} has inputs {inputs}; pass --input_name for "
                     "its question input")
  return strings[0]


def _text(value) -> str:
  return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _pick(outputs: Mapping[str, np.ndarray], keys: Sequence[str]) -> Optional[np.ndarray]:
  for key in keys:
    if key in outputs:
      return outputs[key]
  return None


def _top(row):
  """The first (top-ranked) element of a per-question row, or the row itself if scalar."""
  row = np.asarray(row)
  return row.reshape(-1)[0] if row.ndim else row.item()


def format_answers(questions: Sequence[str], outputs: Mapping[str, np.ndarray],
                   max_evidence: int = 3, snippet_chars: int = 160) -> str:
  """Renders open-QA outputs per question, or every output tensor for other models."""
  answers = _pick(outputs, ANSWER_KEYS)
  if answers is None or answers.ndim == 0 or answers.shape[0] != len(questions):
    return format_outputs(outputs)
  probs = _pick(outputs, PROBABILITY_KEYS)
  titles = _pick(outputs, TITLE_KEYS)
  texts = _pick(outputs, TEXT_KEYS)
  scores = _pick(outputs, SCORE_KEYS)
  ids = _pick(outputs, ID_KEYS)
  status = _pick(outputs, STATUS_KEYS)
  lines = []
  for i, question in enumerate(questions):
    lines.append(f"Q: {question}")
    row_status = _text(np.asarray(status[i]).item()) if status is not None else "ok"
    if row_status != "ok":  # the model answered this row with nothing, and said why
      lines.append(f"A: (no answer: {row_status})")
      continue
    answer = f"A: {_text(_top(answers[i]))}"
    if probs is not None:
      answer += f"  (p={float(_top(probs[i])):.3f})"
    lines.append(answer)
    evidence = [x for x in (titles, texts, scores, ids) if x is not None]
    if evidence:
      n = min(max_evidence, min(np.asarray(x[i]).reshape(-1).shape[0] for x in evidence))
      if n:
        lines.append("   evidence:")
      for j in range(n):
        parts = [f"[{j + 1}]"]
        if scores is not None:
          parts.append(f"score={float(np.asarray(scores[i]).reshape(-1)[j]):.3f}")
        if ids is not None:
          parts.append(f"block={int(np.asarray(ids[i]).reshape(-1)[j])}")
        if titles is not None:
          parts.append(_text(np.asarray(titles[i]).reshape(-1)[j]))
        lines.append("     " + " ".join(parts))
        if texts is not None:
          snippet = " ".join(_text(np.asarray(texts[i]).reshape(-1)[j]).split())
          if len(snippet) > snippet_chars:
            snippet = snippet[:snippet_chars - 3].rstrip() + "..."
          lines.append(f"         {snippet}")
  return "\n".join(lines)


def format_outputs(outputs: Mapping[str, np.ndarray]) -> str:
  """Every output tensor: name, dtype, shape and values."""
  lines = []
  for name in sorted(outputs):
    value = outputs[name]
    if value.dtype == object:
      value = np.vectorize(_text, otypes=[object])(value) if value.size else value
    lines.append(f"{name} ({outputs[name].dtype}, shape {list(value.shape)}):")
    lines.append(np.array2string(np.asarray(value), threshold=200, max_line_width=100))
  return "\n".join(lines)


def ask(client: PredictClient, questions: Sequence[str], input_name: Optional[str] = None,
        **format_kwargs) -> str:
  """Sends `questions` to the client's model and returns the formatted answers."""
  if not questions:
    raise ValueError("no questions given")
  if input_name is None:
    input_name = find_string_input(client.metadata(), client.signature_name)
  array = np.array([q.encode("utf-8") for q in questions], dtype=object)
  return format_answers(questions, client.predict({input_name: array}), **format_kwargs)


@dataclasses.dataclass
class ClientConfig(ConfigBase):
  """Which model `answer` asks, and how its answers are printed: the CLI's settings as plain
  values (the CLI generates one flag per field), so a program or test can ask without absl."""
  server: str = "localhost:8500"
  model_name: str = "realm_openqa"
  signature_name: str = "serving_default"
  input_name: Optional[str] = None
  model_version: Optional[int] = None
  model_version_label: Optional[str] = None
  timeout: float = 30.0
  max_evidence: int = 3
  snippet_chars: int = 160


def answer(config: ClientConfig, questions: Sequence[str]) -> str:
  """Asks `config`'s model `questions` and returns the formatted answers.

  A failed RPC (server unreachable, unknown model, rejected input) raises a ServingError
  "<server>: <CODE>: <details>", which `command_line.run` prints as a one-line error (exit status 2).
  """
  with PredictClient(config.server, config.model_name, config.signature_name,
                     version=config.model_version, version_label=config.model_version_label,
                     timeout=config.timeout) as client:
    try:
      return ask(client, questions, config.input_name, max_evidence=config.max_evidence,
                 snippet_chars=config.snippet_chars)
    except grpc.RpcError as e:
      raise ServingError(e.code(), f"{config.server}: {e.code().name}: {e.details()}") from None


if __name__ == "__main__":  # `python -m serving.client`: the command line lives in realm_tf/launch
  runpy.run_module("realm_tf.launch.model_client", run_name="__main__")
