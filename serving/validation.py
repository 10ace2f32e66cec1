"""Request validation for the TF Serving-protocol server.

Every check raises `ServingError` carrying the gRPC status code TF Serving would use (NOT_FOUND for
an unknown model or version, FAILED_PRECONDITION for an unknown signature key, INVALID_ARGUMENT for
bad inputs), so bad requests fail fast with a message naming the offending input instead of
surfacing as an opaque TensorFlow error from deep inside the model.

One exception: a signature with a per-row `status` output (ROW_STATUS_OUTPUT, e.g. `realm_openqa`)
answers an empty question itself, in its own row, so empty strings are passed through to it
(`for_signature`) and the other questions of the request are answered.
"""
import dataclasses
import math
from typing import Dict, Mapping, Optional, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from realm_tf.config_base import ConfigBase
from realm_tf.io.errors import error_text
from serving import tensors


class ServingError(Exception):
  """An error to return to the client as a gRPC status (code + message)."""

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code
    self.message = message

  def __repr__(self):
    return f"ServingError({self.code.name}, {self.message!r})"


def invalid_argument(message: str) -> ServingError:
  """Shorthand for an INVALID_ARGUMENT `ServingError`."""
  return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


# TensorFlow error codes are absl status codes, the same numbers gRPC uses.
_GRPC_CODE_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def from_tf_error(err: tf.errors.OpError) -> ServingError:
  """Maps a TensorFlow runtime error to the gRPC status with the same code."""
  code = _GRPC_CODE_BY_VALUE.get(err.error_code, grpc.StatusCode.INTERNAL)
  return ServingError(code, error_text(err))


ROW_STATUS_OUTPUT = "status"


@dataclasses.dataclass(frozen=True)
class ValidationConfig(ConfigBase):
  """Limits applied to every Predict request.

  Attributes:
    max_string_bytes: longest accepted element of a string input (0: no limit).
    reject_empty_strings: an empty or whitespace-only string element is INVALID_ARGUMENT (a question
      with no text has no answer; the tokenizer would produce an input of only special tokens).
    require_utf8: string elements must be valid UTF-8 (the TF.Text tokenizers inside REALM exports
      expect text, not arbitrary bytes).
    max_batch_size: largest accepted dimension 0 of any input (0: no limit). The server sets this to
      the batching `max_batch_size` when batching is enabled, as TF Serving does.
    max_input_elements: most elements one input may hold (0: no limit). A TensorProto may give
      fewer values than its shape holds (the last one fills the rest), so a small message can
      describe a tensor too large for memory; this refuses it before it is built.
  """
  max_string_bytes: int = 16384
  reject_empty_strings: bool = True
  require_utf8: bool = True
  max_batch_size: int = 0
  max_input_elements: int = 1 << 24


def for_signature(config: ValidationConfig, output_names) -> ValidationConfig:
  """The checks for one signature: `config`, except that empty strings are accepted when the
  signature has a per-row `status` output (it answers an empty question in that row, with its
  own status, instead of the whole request failing)."""
  if config.reject_empty_strings and ROW_STATUS_OUTPUT in output_names:
    return dataclasses.replace(config, reject_empty_strings=False)
  return config


def _fmt_shape(shape) -> str:
  return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def _fmt_names(names) -> str:
  return "{" + ", ".join(sorted(names)) + "}"


def check_input_keys(input_specs: Mapping[str, tf.TensorSpec], sent: Sequence[str]) -> None:
  """Checks that `sent` names exactly the signature's inputs (TF Serving's message shape)."""
  expected = set(input_specs)
  got = set(sent)
  if expected == got:
    return
  missing = expected - got
  extra = got - expected
  raise invalid_argument(
      f"input size does not match signature: {len(got)}!={len(expected)} "
      f"len({_fmt_names(got)}) != len({_fmt_names(expected)}). "
      f"Sent extra: {_fmt_names(extra)}. Missing but required: {_fmt_names(missing)}.")


def tensor_proto_to_numpy(name: str, proto: tensor_pb2.TensorProto,
                          spec: tf.TensorSpec, max_elements: int = 0) -> np.ndarray:
  """Checks dtype and shape of one input TensorProto against `spec` (and its element count
  against `max_elements`, 0: no limit), then decodes it."""
  want = spec.dtype.as_datatype_enum
  if proto.dtype != want:
    try:
      got_name = tf.dtypes.as_dtype(proto.dtype).name if proto.dtype else "DT_INVALID"
    except TypeError:
      got_name = f"an unknown dtype enum {proto.dtype}"
    raise invalid_argument(
        f"input '{name}': expected dtype {spec.dtype.name} but got {got_name}")
  if proto.tensor_shape.unknown_rank:
    raise invalid_argument(f"input '{name}': tensor_shape must be fully defined, got unknown rank")
  shape = [d.size for d in proto.tensor_shape.dim]
  if any(d < 0 for d in shape):
    raise invalid_argument(f"input '{name}': tensor_shape has a negative dimension {shape}")
  if spec.shape.rank is not None and len(shape) != spec.shape.rank:
    raise invalid_argument(
        f"input '{name}': expected rank {spec.shape.rank} "
        f"(shape {_fmt_shape(spec.shape.as_list())})"
        f" but got rank {len(shape)} (shape {_fmt_shape(shape)})")
  if not spec.shape.is_compatible_with(shape):
    raise invalid_argument(
        f"input '{name}': shape {_fmt_shape(shape)} is incompatible with the signature's "
        f"{_fmt_shape(spec.shape.as_list())}")
  elements = math.prod(shape)
  if max_elements and elements > max_elements:
    raise invalid_argument(
        f"input '{name}': shape {_fmt_shape(shape)} holds {elements} elements, over the limit of "
        f"{max_elements} (--max_input_elements)")
  try:
    array = tensors.to_numpy(proto)
  except (ValueError, TypeError) as e:
    raise invalid_argument(f"input '{name}': cannot decode tensor content: {e}") from None
  if list(array.shape) != shape:
    raise invalid_argument(
        f"input '{name}': tensor content has {array.size} values, which does not fill shape "
        f"{_fmt_shape(shape)}")
  return array


def check_strings(name: str, array: np.ndarray, config: ValidationConfig) -> None:
  """Rejects empty / whitespace-only, oversized and non-UTF-8 string elements."""
  for index, value in np.ndenumerate(array):
    where = f"input '{name}' element {list(index)}"
    if config.max_string_bytes and len(value) > config.max_string_bytes:
      raise invalid_argument(
          f"{where} is {len(value)} bytes, over the limit of {config.max_string_bytes} bytes "
          "(--max_string_bytes)")
    if config.require_utf8:
      try:
        text = value.decode("utf-8")
      except UnicodeDecodeError as e:
        raise invalid_argument(f"{where} is not valid UTF-8: {e}") from None
    else:
      text = value.decode("utf-8", errors="replace")
    if config.reject_empty_strings and not text.strip():
      raise invalid_argument(f"{where} is an empty (or whitespace-only) string")


def batch_size_of(arrays: Mapping[str, np.ndarray]) -> Optional[int]:
  """The common dimension 0 of all inputs; None if some input is a scalar or the sizes differ."""
  sizes = {a.shape[0] if a.ndim else None for a in arrays.values()}
  if len(sizes) != 1 or None in sizes:
    return None
  return sizes.pop()


def decode_inputs(input_specs: Mapping[str, tf.TensorSpec],
                  inputs: Mapping[str, tensor_pb2.TensorProto],
                  config: ValidationConfig) -> Dict[str, np.ndarray]:
  """Validates a Predict request's inputs against a signature and returns them as numpy arrays.

  Raises:
    ServingError: INVALID_ARGUMENT naming the input and the problem.
  """
  check_input_keys(input_specs, list(inputs))
  arrays = {}
  for name in sorted(inputs):
    spec = input_specs[name]
    array = tensor_proto_to_numpy(name, inputs[name], spec, config.max_input_elements)
    if spec.dtype == tf.string:
      check_strings(name, array, config)
    if config.max_batch_size and array.ndim and array.shape[0] > config.max_batch_size:
      raise invalid_argument(
          f"input '{name}': batch size {array.shape[0]} is larger than the maximum batch size "
          f"{config.max_batch_size}")
    arrays[name] = array
  return arrays


def check_output_filter(output_names: Sequence[str], output_filter: Sequence[str]) -> list:
  """Returns the outputs to send back; unknown names in `output_filter` are INVALID_ARGUMENT."""
  if not output_filter:
    return sorted(output_names)
  unknown = [n for n in output_filter if n not in output_names]
  if unknown:
    raise invalid_argument(
        f"output tensor alias not found in signature: {', '.join(unknown)}. Outputs expected to be "
        f"in the set {_fmt_names(output_names)}.")
  if len(set(output_filter)) != len(output_filter):
    raise invalid_argument(f"duplicate output tensor alias in output_filter: {list(output_filter)}")
  return list(output_filter)
