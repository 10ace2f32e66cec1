"""`python -m realm_tf.launch.data_service_worker` on bad input: one line, exit status 2."""
import socket

from absl import flags

from realm_tf.launch import data_service_worker
from realm_tf.testing import cli as testing


def test_flags_are_defined_only_by_define_flags():
  assert not flags.FLAGS.flags_by_module_dict().get(data_service_worker.__name__)
  fv = flags.FlagValues()
  data_service_worker.define_flags(fv)
  fv(["data_service_worker", "--dispatcher_port=5050", "--worker_addresses=a:1,b:2"])
  assert (fv.dispatcher_port, fv.worker_addresses, fv.worker_port) == (5050, ["a:1", "b:2"], None)


def test_port_in_use_is_a_one_line_error():
  with socket.socket() as taken:
    taken.bind(("", 0))
    taken.listen()
    port = taken.getsockname()[1]
    proc = testing.run_cli("realm_tf.launch.data_service_worker", f"--dispatcher_port={port}",
                           timeout=120)
  testing.assert_one_line_error(proc, f"tf.data service dispatcher on port {port}",
                                "is the port in use?")
