"""`python -m realm_tf.launch.data_service_worker` on bad input: one line, exit status 2."""
import socket

from realm_tf.launch import testing


def test_port_in_use_is_a_one_line_error():
  with socket.socket() as taken:
    taken.bind(("", 0))
    taken.listen()
    port = taken.getsockname()[1]
    proc = testing.run_cli("realm_tf.launch.data_service_worker", f"--dispatcher_port={port}",
                           timeout=120)
  testing.assert_one_line_error(proc, f"tf.data service dispatcher on port {port}",
                                "is the port in use?")
