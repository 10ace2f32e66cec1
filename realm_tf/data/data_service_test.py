"""tf.data service servers: a dispatcher and a worker (with the pipeline's ops registered), started
alone or together from a DataServiceConfig (which refuses one that starts nothing),
serve a dataset; a taken port is refused by role and port."""
import socket

import pytest
import tensorflow as tf

from realm_tf.data import data_service
from realm_tf.data.pretrain_pipeline import DataServiceError


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _assert_serves(dispatcher, worker, n):
  """The service reads a range of `n` through `dispatcher` and its worker; both are stopped."""
  ds = tf.data.Dataset.range(n).apply(tf.data.experimental.service.distribute(
      processing_mode="parallel_epochs", service=dispatcher.target))
  assert sorted(int(x) for x in ds) == list(range(n))
  worker.stop()
  dispatcher.stop()


def test_a_dispatcher_and_a_worker_serve_a_dataset():
  dispatcher = data_service.start_dispatcher(_free_port())
  address = dispatcher.target.split("://")[-1]
  worker = data_service.start_worker(address, _free_port(), host="localhost")
  _assert_serves(dispatcher, worker, 10)


def test_a_taken_port_names_the_role_and_the_port():
  with socket.socket() as taken:
    taken.bind(("", 0))
    taken.listen()
    port = taken.getsockname()[1]
    with pytest.raises(DataServiceError, match=f"dispatcher on port {port}.*port in use"):
      data_service.start_dispatcher(port)


def test_start_servers_runs_both_roles_the_worker_serving_its_own_dispatcher():
  config = data_service.DataServiceConfig(dispatcher_port=_free_port(), worker_port=_free_port(),
                                          worker_host="localhost")
  assert config.worker_dispatcher == f"localhost:{config.dispatcher_port}"
  dispatcher, worker = data_service.start_servers(config)
  _assert_serves(dispatcher, worker, 5)


def test_a_config_that_starts_nothing_or_gives_a_worker_no_dispatcher_is_refused():
  with pytest.raises(ValueError, match="Give --dispatcher_port, --worker_port, or both."):
    data_service.DataServiceConfig()
  with pytest.raises(ValueError, match="--worker_port needs --dispatcher_address."):
    data_service.DataServiceConfig(worker_port=5051)
  config = data_service.DataServiceConfig(dispatcher_port=1, worker_port=2,
                                          dispatcher_address="d:5050")
  assert config.worker_dispatcher == "d:5050"
