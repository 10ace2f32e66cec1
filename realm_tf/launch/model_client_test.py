"""Tests of `python -m serving.client`'s command line: flags generated from ClientConfig, no
questions a usage error (asking a served model is tested in serving/server_test.py)."""

import pytest
from absl import app
from absl import flags

from realm_tf.launch import model_client
from realm_tf.testing import cli as testing
from serving import client


def test_importing_defines_no_flags():
  testing.assert_import_defines_no_flags(['realm_tf.launch.model_client', 'serving.client'], ['server', 'model_name', 'timeout'])


def test_flags_are_generated_from_the_config_and_parse_into_it():
  fv = flags.FlagValues()
  model_client.define_flags(fv)
  # Every flag of the program (its --help), with the default a user sees.
  assert {f.name: f.default for f in fv.get_key_flags_for_module(model_client)} == {
      "server": "localhost:8500", "model_name": "realm_openqa",
      "signature_name": "serving_default", "input_name": None, "model_version": None,
      "model_version_label": None, "timeout": 30.0, "max_evidence": 3, "snippet_chars": 160}
  fv(["client"])
  assert model_client.config_from_flags(fv) == client.ClientConfig()
  fv(["client", "--server=h:1", "--model_name=m", "--signature_name=s", "--input_name=q",
      "--model_version=2", "--model_version_label=l", "--timeout=1.5", "--max_evidence=1",
      "--snippet_chars=9"])
  assert model_client.config_from_flags(fv) == client.ClientConfig(
      "h:1", "m", "s", "q", 2, "l", 1.5, 1, 9)
  with pytest.raises(app.UsageError, match="give one or more questions"):
    model_client.run(fv, [])
