"""Tests for the one place custom ops are registered."""
import subprocess
import sys
import textwrap


def test_registering_makes_scann_and_text_ops_known_to_tensorflow():
  # A fresh process: nothing else has imported ScaNN or TF.Text yet.
  code = textwrap.dedent("""
      import sys
      from tensorflow.python.framework import op_def_registry
      from realm_tf.utils import custom_ops
      assert op_def_registry.get("Scann>ScannSearchBatched") is None
      custom_ops.register_text_ops()
      assert "tensorflow_text" not in sys.modules  # the libraries only, not the Python package
      custom_ops.register_scann_ops()
      custom_ops.register_scann_ops()  # twice is harmless
      assert op_def_registry.get("Scann>ScannSearchBatched") is not None
      assert custom_ops.scann_ops().scann_search_batched is not None
      print("ok")
  """)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip().endswith("ok")
