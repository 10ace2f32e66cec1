"""Tests of realm_tf.io.errors on errors TensorFlow itself raises."""
import tensorflow as tf

from realm_tf.io import errors


def _raised(fn) -> tf.errors.OpError:
  try:
    fn()
  except tf.errors.OpError as e:
    return e
  raise AssertionError("no TensorFlow error was raised")


def _assert_clean(text: str) -> None:
  for internal in ("function_node", "{{", "[[", "[Op:", "name:", "\n", "user-defined function"):
    assert internal not in text, text


def test_an_eager_op_error_keeps_only_its_message():
  e = _raised(lambda: tf.raw_ops.Reshape(tensor=[1, 2, 3], shape=[2]))
  assert "{{function_node" in e.message and "[Op:Reshape]" in e.message  # what is stripped
  text = errors.error_text(e)
  assert text == "Input to reshape is a tensor with 3 values, but the requested shape has 2"


def test_a_tf_data_error_loses_the_iterator_node_and_the_graph_location(tmp_path):
  path = str(tmp_path / "x.tfr")
  with tf.io.TFRecordWriter(path) as w:
    w.write(b"not a tf.Example")
  ds = tf.data.TFRecordDataset(path).map(
      lambda x: tf.io.parse_single_example(x, {"a": tf.io.FixedLenFeature([], tf.int64)}))
  e = _raised(lambda: list(ds))
  assert "[[{{node" in e.message and "MapDataset" in e.message
  text = errors.error_text(e)
  _assert_clean(text)
  assert text.startswith("Could not parse example input"), text


def test_a_truncated_tfrecord_and_plain_exceptions():
  e = tf.errors.DataLossError(
      None, None, "{{function_node __wrapped__IteratorGetNext_output_types_1_device_/job:"
      "localhost/replica:0/task:0/device:CPU:0}} truncated record at 16500' failed with Read "
      "less bytes than requested [Op:IteratorGetNext] name: ")
  assert errors.error_text(e) == ("truncated record at 16500' failed with Read less bytes than "
                                  "requested")
  assert errors.error_text(ValueError("two\n  lines")) == "two lines"
  assert errors.error_text(tf.errors.UnknownError(None, None, "")) == "UnknownError"
