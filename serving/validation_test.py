"""Tests of request validation: each bad input gets its gRPC code and a message naming the input."""
import grpc
import numpy as np
import pytest
import tensorflow as tf

from serving import validation
from serving.validation import ServingError, ValidationConfig

SPECS = {"questions": tf.TensorSpec([None], tf.string),
         "x": tf.TensorSpec([None, 3], tf.float32)}


def proto(value, dtype=None):
  return tf.make_tensor_proto(value, dtype=dtype)


def good_inputs(n=2):
  return {"questions": proto(np.array([b"who wrote it"] * n, dtype=object)),
          "x": proto(np.ones((n, 3), np.float32))}


def check_error(fn, code, *fragments):
  with pytest.raises(ServingError) as info:
    fn()
  assert info.value.code == code, info.value
  for fragment in fragments:
    assert fragment in info.value.message, info.value.message


def test_valid_inputs_decode_to_numpy():
  arrays = validation.decode_inputs(SPECS, good_inputs(3), ValidationConfig())
  assert arrays["questions"].tolist() == [b"who wrote it"] * 3
  np.testing.assert_array_equal(arrays["x"], np.ones((3, 3), np.float32))
  assert validation.batch_size_of(arrays) == 3


def test_missing_and_unexpected_inputs():
  inputs = good_inputs()
  del inputs["x"]
  check_error(lambda: validation.decode_inputs(SPECS, inputs, ValidationConfig()),
              grpc.StatusCode.INVALID_ARGUMENT, "Missing but required: {x}", "Sent extra: {}")
  inputs = good_inputs()
  inputs["y"] = proto(np.ones((2,), np.float32))
  check_error(lambda: validation.decode_inputs(SPECS, inputs, ValidationConfig()),
              grpc.StatusCode.INVALID_ARGUMENT, "Sent extra: {y}", "Missing but required: {}")


def test_wrong_dtype_names_input_and_types():
  inputs = good_inputs()
  inputs["x"] = proto(np.ones((2, 3), np.int32))
  check_error(lambda: validation.decode_inputs(SPECS, inputs, ValidationConfig()),
              grpc.StatusCode.INVALID_ARGUMENT, "input 'x'", "expected dtype float32",
              "got int32")


def test_wrong_rank_and_wrong_dimension():
  inputs = good_inputs()
  inputs["x"] = proto(np.ones((2, 3, 1), np.float32))
  check_error(lambda: validation.decode_inputs(SPECS, inputs, ValidationConfig()),
              grpc.StatusCode.INVALID_ARGUMENT, "input 'x'", "expected rank 2", "got rank 3")
  inputs["x"] = proto(np.ones((2, 4), np.float32))
  check_error(lambda: validation.decode_inputs(SPECS, inputs, ValidationConfig()),
              grpc.StatusCode.INVALID_ARGUMENT, "input 'x'", "[2,4]", "[?,3]")


def test_content_not_filling_shape():
  p = proto(np.ones((2, 3), np.float32))
  p.tensor_shape.dim[0].size = 5
  inputs = good_inputs()
  inputs["x"] = p
  check_error(lambda: validation.decode_inputs(SPECS, inputs, ValidationConfig()),
              grpc.StatusCode.INVALID_ARGUMENT, "input 'x'")


@pytest.mark.parametrize("value,fragment", [
    (b"", "empty"),
    (b"   \t", "empty"),
    (b"a" * 101, "101 bytes, over the limit of 100"),
    (b"\xff\xfe", "not valid UTF-8"),
])
def test_bad_strings(value, fragment):
  inputs = good_inputs()
  inputs["questions"] = proto(np.array([b"fine", value], dtype=object))
  check_error(lambda: validation.decode_inputs(SPECS, inputs,
                                               ValidationConfig(max_string_bytes=100)),
              grpc.StatusCode.INVALID_ARGUMENT, "input 'questions' element [1]", fragment)


def test_string_checks_can_be_relaxed():
  inputs = good_inputs()
  inputs["questions"] = proto(np.array([b"", b"a" * 500], dtype=object))
  config = ValidationConfig(max_string_bytes=0, reject_empty_strings=False)
  arrays = validation.decode_inputs(SPECS, inputs, config)
  assert arrays["questions"].tolist() == [b"", b"a" * 500]


def test_batch_too_large():
  check_error(lambda: validation.decode_inputs(SPECS, good_inputs(5),
                                               ValidationConfig(max_batch_size=4)),
              grpc.StatusCode.INVALID_ARGUMENT, "batch size 5", "maximum batch size 4")
  assert validation.decode_inputs(SPECS, good_inputs(4), ValidationConfig(max_batch_size=4))


def test_batch_size_of_mismatched_or_scalar_inputs_is_none():
  assert validation.batch_size_of({"a": np.zeros((2,)), "b": np.zeros((3, 1))}) is None
  assert validation.batch_size_of({"a": np.zeros(())}) is None


def test_output_filter():
  assert validation.check_output_filter(["b", "a"], []) == ["a", "b"]
  assert validation.check_output_filter(["b", "a"], ["b"]) == ["b"]
  check_error(lambda: validation.check_output_filter(["a"], ["zz"]),
              grpc.StatusCode.INVALID_ARGUMENT, "output tensor alias not found", "zz")


def test_tf_errors_keep_their_code():
  err = validation.from_tf_error(tf.errors.InvalidArgumentError(None, None, "bad thing"))
  assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.message == "bad thing"
  err = validation.from_tf_error(tf.errors.ResourceExhaustedError(None, None, "oom"))
  assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED
  try:  # a real runtime error: the client is told the message, not TensorFlow's internals
    tf.raw_ops.Reshape(tensor=[1, 2, 3], shape=[2])
  except tf.errors.InvalidArgumentError as e:
    err = validation.from_tf_error(e)
  assert err.message == ("Input to reshape is a tensor with 3 values, but the requested shape "
                         "has 2"), err.message


def test_signatures_with_a_row_status_answer_empty_strings_themselves():
  inputs = good_inputs()
  inputs["questions"] = proto(np.array([b"fine", b"", b" \t"], dtype=object))
  inputs["x"] = proto(np.ones((3, 3), np.float32))
  config = ValidationConfig()
  per_row = validation.for_signature(config, ["answers", "status"])
  assert not per_row.reject_empty_strings and per_row.max_string_bytes == config.max_string_bytes
  arrays = validation.decode_inputs(SPECS, inputs, per_row)
  assert arrays["questions"].tolist() == [b"fine", b"", b" \t"]
  # Without a `status` output the request is still refused, naming the element.
  assert validation.for_signature(config, ["answers"]) is config
  check_error(lambda: validation.decode_inputs(SPECS, inputs,
                                               validation.for_signature(config, ["answers"])),
              grpc.StatusCode.INVALID_ARGUMENT, "input 'questions' element [1] is an empty")
  # Other string checks still apply to such signatures.
  inputs["questions"] = proto(np.array([b"fine", b"\xff", b""], dtype=object))
  check_error(lambda: validation.decode_inputs(SPECS, inputs, per_row),
              grpc.StatusCode.INVALID_ARGUMENT, "element [1] is not valid UTF-8")


def test_a_shape_too_large_to_build_is_refused_before_decoding():
  """One float value may describe a shape of 2^40 elements (the last value fills the shape):
  refused by max_input_elements, not a MemoryError."""
  inputs = good_inputs(1)
  p = tf.make_tensor_proto([1.0], dtype=tf.float32)
  p.ClearField("tensor_content")
  p.float_val.append(1.0)
  p.tensor_shape.dim[0].size = 1 << 38
  p.tensor_shape.dim.add().size = 3
  inputs["x"] = p
  inputs["questions"] = proto(np.array([b"q"], dtype=object))
  check_error(lambda: validation.decode_inputs(SPECS, inputs, ValidationConfig()),
              grpc.StatusCode.INVALID_ARGUMENT, "input 'x'", "824633720832 elements",
              "--max_input_elements")
  inputs["x"] = proto(np.ones((4, 3), np.float32))
  small = ValidationConfig(max_input_elements=11)
  check_error(lambda: validation.decode_inputs(SPECS, inputs, small),
              grpc.StatusCode.INVALID_ARGUMENT, "12 elements, over the limit of 11")


def test_unknown_dtype_enum_is_an_invalid_argument():
  inputs = good_inputs()
  inputs["x"].dtype = 77  # no such DataType
  check_error(lambda: validation.decode_inputs(SPECS, inputs, ValidationConfig()),
              grpc.StatusCode.INVALID_ARGUMENT, "input 'x'", "unknown dtype enum 77")
