"""Tests of `python -m serving.server`'s command line: flags named as tensorflow_model_server's,
defaulting to ServerOptions', parsed into ServerOptions; the work dir's export by default; bad
combinations are usage errors (serving the models is tested in serving/server_test.py)."""
import dataclasses

import pytest
from absl import app

from realm_tf.launch import model_server
from realm_tf.testing import cli as testing
from realm_tf.testing.cli import parsed_flags
from serving import batching, model_config, server


def test_importing_defines_no_flags():
  testing.assert_import_defines_no_flags(['realm_tf.launch.model_server', 'serving.server'], ['port', 'model_name', 'enable_batching'])


def test_flags_parse_into_server_options(tmp_path):
  options = model_server.options_from_flags(parsed_flags(model_server, "--model_name=m", "--model_base_path=/b"))
  assert options == server.ServerOptions(models=[model_config.ModelConfig("m", "/b")])
  batching_file = tmp_path / "batching.config"
  batching_file.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 500 }\n")
  options = model_server.options_from_flags(parsed_flags(model_server, 
      "--model_name=m", "--model_base_path=/b", "--port=0", "--bind_address=127.0.0.1",
      "--enable_batching", f"--batching_parameters_file={batching_file}",
      "--max_string_bytes=10", "--allow_empty_strings", "--grpc_max_workers=4",
      "--noenable_model_warmup"))
  assert (options.port, options.bind_address, options.grpc_max_workers,
          options.enable_model_warmup) == (0, "127.0.0.1", 4, False)
  assert options.batching == dataclasses.replace(batching.BatchingConfig(), max_batch_size=8,
                                                 batch_timeout_micros=500)
  assert (options.validation.max_string_bytes, options.validation.reject_empty_strings) == (
      10, False)


def test_without_a_model_it_serves_the_work_dirs_open_qa_export():
  assert model_server.options_from_flags(parsed_flags(model_server, "--work_dir=/w")).models == [
      model_config.ModelConfig("realm_openqa", "/w/serving/realm_openqa")]
  assert model_server.options_from_flags(parsed_flags(model_server, "--work_dir=/w", "--model_name=m")).models == [
      model_config.ModelConfig("m", "/w/serving/m")]


def test_a_model_and_a_config_file_together_are_a_usage_error():
  with pytest.raises(app.UsageError, match="give one of --model_config_file or --model_name"):
    model_server.options_from_flags(parsed_flags(model_server, "--model_name=m", "--model_config_file=c"))


# The server's own process, as `python -m serving.server` starts it (its __main__ and the CLI's),
# stopped by --helpshort once its flags parse; then the ops its exports need are loaded.
_SERVER_PROCESS = """
import runpy, sys
sys.argv = ["serving.server", "--helpshort"]
try:
  runpy.run_module("serving.server", run_name="__main__")
except SystemExit:
  pass
from serving import model_manager
model_manager.import_scann()
from tensorflow.python.framework import op_def_registry
print(op_def_registry.get("FastWordpieceTokenizeWithOffsets") is not None,
      op_def_registry.get("Scann>ScannSearchBatched") is not None,
      sorted({m.split(".")[0] for m, v in sys.modules.items() if v is not None} &
             {"keras", "tf_keras", "tensorflow_text", "sklearn"}))
"""


def test_the_server_process_loads_tf_text_and_scann_ops_without_keras():
  """A SavedModel server needs TensorFlow and the exports' ops, not Keras (which TensorFlow's
  import would otherwise bring, with scikit-learn: about 100 MB of RSS in every server)."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  done = subprocess.run([sys.executable, "-c", _SERVER_PROCESS], capture_output=True, text=True,
                        timeout=300, check=True)
  assert done.stdout.strip().splitlines()[-1] == "True True []", done.stdout + done.stderr
