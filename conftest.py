"""Pytest set-up shared by every test: quiet TensorFlow logs, CPU only."""
import gc
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# The shared fixtures (`tok`, ...): realm_tf/testing/fixtures.py.
pytest_plugins = ["realm_tf.testing.fixtures"]


def pytest_collection_finish(session):  # pylint: disable=unused-argument
  """Moves what exists once tests are collected (TensorFlow, every imported module, the test
  modules) out of the cyclic garbage collector's reach: it lives until the process ends anyway,
  and each later collection (Python's own, and the explicit one after an index is saved) then
  scans only what the tests create. Measured: the searcher save's collection went from ~0.8 s
  to ~0.05 s."""
  gc.collect()
  gc.freeze()
