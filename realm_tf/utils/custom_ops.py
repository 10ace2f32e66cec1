"""The custom TensorFlow ops realm_tf's graphs use, registered in one place: ScaNN's (`Scann>*`,
in ScaNN searchers and the ScaNN serving variants) and TF.Text's (the exports' tokenizer).

A SavedModel or tf.data graph holding such ops loads only in a process where they are registered;
importing the op modules registers them, and registering twice is harmless.
"""
import glob
import importlib.util
import os
import sys


def scann_ops():
  """ScaNN's TF op module (`scann.scann_ops.py.scann_ops`); importing it registers the ops."""
  from scann.scann_ops.py import scann_ops as ops  # pylint: disable=g-import-not-at-top
  return ops


def register_scann_ops() -> None:
  """Registers ScaNN's TF ops, so SavedModels and graphs using `Scann>*` ops load."""
  scann_ops()


def register_text_ops() -> None:
  """Registers TF.Text's ops (the exports tokenize) without importing its Python modules.

  Loads the package's op libraries directly: its Keras layers would otherwise bring Keras into a
  process that only serves SavedModels (`command_line.keep_keras_out`). Once `tensorflow_text`
  is imported its ops are registered, and nothing is loaded twice.
  """
  if "tensorflow_text" in sys.modules:
    return
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  spec = importlib.util.find_spec("tensorflow_text")
  if spec is None or not spec.submodule_search_locations:
    raise ImportError("tensorflow_text is not installed; the exports' tokenizer needs its ops")
  ops_dir = os.path.join(spec.submodule_search_locations[0], "python", "ops")
  for library in sorted(glob.glob(os.path.join(ops_dir, "*.so"))):
    tf.load_op_library(library)
