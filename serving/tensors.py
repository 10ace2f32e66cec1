"""Fast numpy <-> TensorProto conversion for the Predict hot path.

`tf.make_tensor_proto` / `tf.make_ndarray` are general but cost ~100-200 us per tensor in Python;
a served request converts every input and output, so at batch 1 they were a large share of the
server's overhead. Numeric tensors travel as raw `tensor_content` bytes and strings as `string_val`,
which is how TF Serving itself encodes them; anything else falls back to TensorFlow's converters.
"""
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2


def to_proto(array) -> tensor_pb2.TensorProto:
  """Encodes a numpy array (object arrays of bytes → DT_STRING) as a TensorProto."""
  array = np.asarray(array)
  if array.dtype == object or array.dtype.kind in "SU":
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
    flat = array.ravel().tolist()
    if array.dtype.kind == "U" or any(isinstance(s, str) for s in flat):
      flat = [s.encode("utf-8") if isinstance(s, str) else s for s in flat]
    proto.string_val.extend(flat)
  else:
    try:
      dtype = tf.dtypes.as_dtype(array.dtype)
    except TypeError:
      return tf.make_tensor_proto(array)
    proto = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum)
    proto.tensor_content = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")
                                                ).tobytes()
  proto.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
      dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape]))
  return proto


def to_numpy(proto: tensor_pb2.TensorProto) -> np.ndarray:
  """Decodes a TensorProto; raises ValueError when its content does not fill its shape."""
  shape = [d.size for d in proto.tensor_shape.dim]
  size = int(np.prod(shape, dtype=np.int64))
  if proto.dtype == types_pb2.DT_STRING:
    values = list(proto.string_val)
    if len(values) > size or (size and not values):
      raise ValueError(f"{len(values)} string values for shape {shape} ({size} elements)")
    array = np.empty(size, dtype=object)
    array[:len(values)] = values
    array[len(values):] = values[-1] if values else b""  # as TensorFlow: the last value fills
    return array.reshape(shape)                            # the rest of the shape
  elif proto.tensor_content:
    dtype = tf.dtypes.as_dtype(proto.dtype).as_numpy_dtype
    itemsize = np.dtype(dtype).itemsize
    if len(proto.tensor_content) != size * itemsize:
      raise ValueError(f"tensor_content has {len(proto.tensor_content)} bytes, shape "
                       f"{shape} of {np.dtype(dtype).name} needs {size * itemsize}")
    return np.frombuffer(proto.tensor_content, dtype=np.dtype(dtype).newbyteorder("<")
                         ).astype(dtype, copy=False).reshape(shape)
  return tf.make_ndarray(proto)  # Typed *_val fields, or a single value filling the shape.
