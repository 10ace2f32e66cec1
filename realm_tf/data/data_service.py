"""tf.data service servers that can run the REALM pre-training pipeline's dataset graph.

The graph uses TF.Text ops (tokenization in masking) and ScaNN ops (the index search), so a
worker must register them before it receives the graph; a bare
`tf.data.experimental.service.WorkerServer` fails with "Op type not registered". The pipeline
shards statically (worker i of n makes every n-th batch), so the dispatcher takes the fixed list
of worker addresses and each worker announces exactly its entry of that list. `start_servers`
starts what a `DataServiceConfig` asks for; the command line,
`python -m realm_tf.launch.data_service_worker`, builds that config from its flags.
"""
import contextlib
import dataclasses
import socket
from typing import List, Optional

from absl import logging

from realm_tf.config_base import ConfigBase


@dataclasses.dataclass
class DataServiceConfig(ConfigBase):
  """Which servers one process runs: a dispatcher (`dispatcher_port`), a worker (`worker_port`)
  or both.

  The dispatcher takes every worker's host:port (`worker_addresses`: static sharding needs the
  full list) and, with `dispatcher_work_dir`, journals its state there to recover after a
  restart. A worker serves `dispatcher_address` (default: this process's dispatcher) and
  announces `worker_host` (default: this host's name), which must match its entry of the
  dispatcher's list. A config that starts nothing, or a worker without a dispatcher, is refused
  when built (ValueError, naming the command line's flags, which have the fields' names).
  """
  dispatcher_port: Optional[int] = None
  worker_addresses: Optional[List[str]] = None
  dispatcher_work_dir: Optional[str] = None
  worker_port: Optional[int] = None
  dispatcher_address: Optional[str] = None
  worker_host: Optional[str] = None

  def __post_init__(self):
    if self.dispatcher_port is None and self.worker_port is None:
      raise ValueError("Give --dispatcher_port, --worker_port, or both.")
    if self.worker_port is not None and not self.worker_dispatcher:
      raise ValueError("--worker_port needs --dispatcher_address.")

  @property
  def worker_dispatcher(self) -> Optional[str]:
    """host:port of the dispatcher the worker serves: `dispatcher_address`, else this process's
    own dispatcher (localhost:<dispatcher_port>)."""
    if self.dispatcher_address:
      return self.dispatcher_address
    return f"localhost:{self.dispatcher_port}" if self.dispatcher_port is not None else None


def register_pipeline_ops() -> None:
  """Registers the custom ops the pre-training dataset graph uses: TF.Text and ScaNN."""
  import tensorflow_text  # pylint: disable=g-import-not-at-top,unused-import
  from realm_tf.utils.custom_ops import register_scann_ops  # pylint: disable=g-import-not-at-top
  register_scann_ops()
  del tensorflow_text


@contextlib.contextmanager
def _bind_errors(role: str, port: int):
  """TF's bare "Could not start gRPC server" → a DataServiceError naming the role and port."""
  try:
    yield
  except RuntimeError as e:
    from realm_tf.data.pretrain_pipeline import DataServiceError  # pylint: disable=g-import-not-at-top
    raise DataServiceError(f"Could not start the tf.data service {role} on port {port} ({e}); "
                           "is the port in use?") from e


def start_dispatcher(port: int, worker_addresses: Optional[List[str]] = None,
                     work_dir: Optional[str] = None):
  """Starts a tf.data service dispatcher on `port`; returns the DispatchServer."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  config = tf.data.experimental.service.DispatcherConfig(
      port=port, worker_addresses=list(worker_addresses or []) or None, work_dir=work_dir,
      fault_tolerant_mode=bool(work_dir))
  with _bind_errors("dispatcher", port):
    server = tf.data.experimental.service.DispatchServer(config)
  logging.info("tf.data service dispatcher at %s (workers: %s)", server.target,
               worker_addresses or "any")
  return server


def start_worker(dispatcher_address: str, port: int, host: Optional[str] = None):
  """Registers the pipeline's ops, then starts a worker on `port`; returns the WorkerServer."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  register_pipeline_ops()
  host = host or socket.gethostname()
  with _bind_errors("worker", port):
    server = tf.data.experimental.service.WorkerServer(
        tf.data.experimental.service.WorkerConfig(
            dispatcher_address=dispatcher_address, worker_address=f"{host}:{port}", port=port))
  logging.info("tf.data service worker %s:%d serving dispatcher %s", host, port,
               dispatcher_address)
  return server


def start_servers(config: DataServiceConfig) -> List:
  """Starts the servers `config` asks for (the dispatcher first); returns them.

  They serve from background threads for as long as they (and this process) live; a taken port
  raises DataServiceError naming the role and the port.
  """
  servers = []
  if config.dispatcher_port is not None:
    servers.append(start_dispatcher(config.dispatcher_port, config.worker_addresses,
                                    config.dispatcher_work_dir))
  if config.worker_port is not None:
    servers.append(start_worker(config.worker_dispatcher, config.worker_port,
                                config.worker_host))
  return servers
