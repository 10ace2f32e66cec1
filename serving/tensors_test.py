"""Tests that the fast TensorProto codecs agree with TensorFlow's own converters."""
import numpy as np
import pytest
import tensorflow as tf

from serving import tensors

ARRAYS = [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.arange(6, dtype=np.int64).reshape(2, 3, 1),
    np.array([True, False]),
    np.array([1.5, -2.0], np.float16),
    np.array([[b"a", b""], [b"\xff\x00", "é".encode()]], dtype=object),
    np.zeros((0, 3), np.int32),
    np.array(3.25, np.float64),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_round_trip_matches_tensorflow(array):
  proto = tensors.to_proto(array)
  assert proto.dtype == tf.make_tensor_proto(array).dtype
  for decoded in (tensors.to_numpy(proto), tf.make_ndarray(proto)):
    assert decoded.shape == array.shape and decoded.dtype == array.dtype
    assert decoded.tolist() == array.tolist()
  back = tensors.to_numpy(tf.make_tensor_proto(array))
  assert back.dtype == array.dtype and back.tolist() == array.tolist()


def test_unicode_strings_are_utf8_encoded():
  proto = tensors.to_proto(np.array(["café", "x"]))
  assert list(proto.string_val) == ["café".encode(), b"x"]


def test_single_value_fills_shape_and_short_content_is_an_error():
  proto = tf.make_tensor_proto(np.float32(2.0), shape=[2, 2])
  np.testing.assert_array_equal(tensors.to_numpy(proto), np.full((2, 2), 2.0, np.float32))
  proto = tensors.to_proto(np.ones((2, 3), np.float32))
  proto.tensor_shape.dim[0].size = 3
  with pytest.raises(ValueError, match="needs 36"):
    tensors.to_numpy(proto)


def test_string_values_fill_the_shape_as_tensorflow_reads_them():
  """Fewer string values than the shape holds: the last fills the rest; none, or more than the
  shape holds, is a ValueError (the server's INVALID_ARGUMENT), never a non-bytes element."""
  from tensorflow.core.framework import tensor_pb2, types_pb2  # pylint: disable=g-import-not-at-top

  def strings(values, size):
    p = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
    p.tensor_shape.dim.add().size = size
    p.string_val.extend(values)
    return p

  assert tensors.to_numpy(strings([b"a", b"b"], 3)).tolist() == [b"a", b"b", b"b"]
  assert tensors.to_numpy(strings([], 0)).shape == (0,)
  for values, size in (([], 2), ([b"a", b"b", b"c"], 2)):
    with pytest.raises(ValueError, match="string values for shape"):
      tensors.to_numpy(strings(values, size))
