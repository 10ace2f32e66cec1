"""`python -m realm_tf.launch.data_service_worker`: flags generated from DataServiceConfig, usage
errors for a config that starts nothing, one line and exit status 2 for a taken port."""
import socket

import pytest
from absl import app
from absl import flags

from realm_tf.data.data_service import DataServiceConfig
from realm_tf.launch import data_service_worker
from realm_tf.testing import cli as testing
from realm_tf.testing.cli import parsed_flags


def test_flags_are_generated_from_the_config_and_parse_into_it():
  assert not flags.FLAGS.flags_by_module_dict().get(data_service_worker.__name__)
  fv = parsed_flags(data_service_worker, "--dispatcher_port=5050", "--worker_addresses=a:1,b:2")
  # Every flag of the program (its --help), with the default a user sees.
  assert {f.name: f.default for f in fv.get_key_flags_for_module(data_service_worker)} == {
      "dispatcher_port": None, "worker_addresses": None, "dispatcher_work_dir": None,
      "worker_port": None, "dispatcher_address": None, "worker_host": None}
  assert (fv.dispatcher_port, fv.worker_addresses, fv.worker_port) == (5050, ["a:1", "b:2"], None)
  assert data_service_worker.config_from_flags(fv) == DataServiceConfig(
      dispatcher_port=5050, worker_addresses=["a:1", "b:2"])
  fv = parsed_flags(data_service_worker, "--worker_port=5051", "--dispatcher_address=d:5050", "--worker_host=w1",
              "--dispatcher_work_dir=/j")
  assert data_service_worker.config_from_flags(fv) == DataServiceConfig(
      worker_port=5051, dispatcher_address="d:5050", worker_host="w1", dispatcher_work_dir="/j")


@pytest.mark.parametrize("args,message", [
    ((), "Give --dispatcher_port, --worker_port, or both."),
    (("--worker_port=5051",), "--worker_port needs --dispatcher_address.")])
def test_a_config_that_starts_nothing_or_no_dispatcher_is_a_usage_error(args, message):
  with pytest.raises(app.UsageError, match=message):
    data_service_worker.config_from_flags(parsed_flags(data_service_worker, *args))


def test_port_in_use_is_a_one_line_error():
  with socket.socket() as taken:
    taken.bind(("", 0))
    taken.listen()
    port = taken.getsockname()[1]
    proc = testing.run_cli("realm_tf.launch.data_service_worker", f"--dispatcher_port={port}",
                           timeout=120)
  testing.assert_one_line_error(proc, f"tf.data service dispatcher on port {port}",
                                "is the port in use?")
