"""Tests of `python -m serving.server`'s command line: flags named as tensorflow_model_server's,
defaulting to ServerOptions', parsed into ServerOptions; the work dir's export by default; bad
combinations are usage errors (serving the models is tested in serving/server_test.py)."""
import dataclasses

import pytest
from absl import app
from absl import flags

from realm_tf.launch import model_server
from realm_tf.testing import cli as testing
from serving import batching, model_config, server


def test_importing_defines_no_flags():
  testing.assert_import_defines_no_flags(['realm_tf.launch.model_server', 'serving.server'], ['port', 'model_name', 'enable_batching'])


def _parsed(*args):
  fv = flags.FlagValues()
  model_server.define_flags(fv)
  fv(["model_server", *args])
  return fv


def test_flags_parse_into_server_options(tmp_path):
  options = model_server.options_from_flags(_parsed("--model_name=m", "--model_base_path=/b"))
  assert options == server.ServerOptions(models=[model_config.ModelConfig("m", "/b")])
  batching_file = tmp_path / "batching.config"
  batching_file.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 500 }\n")
  options = model_server.options_from_flags(_parsed(
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
  assert model_server.options_from_flags(_parsed("--work_dir=/w")).models == [
      model_config.ModelConfig("realm_openqa", "/w/serving/realm_openqa")]
  assert model_server.options_from_flags(_parsed("--work_dir=/w", "--model_name=m")).models == [
      model_config.ModelConfig("m", "/w/serving/m")]


def test_a_model_and_a_config_file_together_are_a_usage_error():
  with pytest.raises(app.UsageError, match="give one of --model_config_file or --model_name"):
    model_server.options_from_flags(_parsed("--model_name=m", "--model_config_file=c"))
