r"""A tf.data service dispatcher and/or worker that can run the REALM pre-training pipeline.

The pipeline's dataset graph uses TF.Text ops (tokenization in masking) and ScaNN ops (the index
search), so a worker process must register them before it receives the graph; a bare
`tf.data.experimental.service.WorkerServer` fails with "Op type not registered". This entry point
imports both (`realm_tf.data.data_service`), then serves until killed.

The pipeline shards statically (worker i of n makes every n-th batch), so the dispatcher needs the
fixed list of worker addresses, and each worker must announce exactly its entry of that list:

  # dispatcher (one), knowing both workers:
  python -m realm_tf.launch.data_service_worker --dispatcher_port=5050 \
      --worker_addresses=w1.example:5051,w2.example:5051
  # on w1 and w2:
  python -m realm_tf.launch.data_service_worker --dispatcher_address=d.example:5050 \
      --worker_port=5051 --worker_host=w1.example        # (w2.example on w2)
  # trainer:
  python -m realm_tf.launch.pretrain --data_service=grpc://d.example:5050 --work_dir=gs://...

Workers read the index bundle (query embedder weights, ScaNN index, block ids) from the bundle's
path, so --work_dir / --index_dir must be on storage every worker can read (GCS, a shared FS).
One process may run both roles (--dispatcher_port and --worker_port together).
"""
import time

from absl import app, flags

from realm_tf.utils import command_line

HELP = {
    "dispatcher_port": "Start a dispatcher on this port.",
    "worker_addresses": "Dispatcher: host:port of every worker (static sharding needs the full "
                        "list; the pipeline shards with SHARD_HINT).",
    "dispatcher_work_dir": "Dispatcher: directory for its journal, so it recovers its state after "
                           "a restart (fault-tolerant mode).",
    "worker_port": "Start a worker on this port.",
    "dispatcher_address": "Worker: host:port of the dispatcher (default "
                          "localhost:<dispatcher_port> when both run here).",
    "worker_host": "Worker: host name it announces to the dispatcher and clients; must match its "
                   "--worker_addresses entry (default: this host's name).",
}


def define_flags(flag_values=flags.FLAGS):
  """Defines the dispatcher's and the worker's flags: one per `DataServiceConfig` field.

  Called from `__main__` only (and by tests on a fresh FlagValues), so importing this module
  defines no flag (nor imports TensorFlow).
  """
  from realm_tf.data import data_service  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.define_config_flags(data_service.DataServiceConfig, HELP, flag_values=flag_values)
  from realm_tf.launch import validators  # pylint: disable=g-import-not-at-top
  validators.register_ranges(flag_values)


def config_from_flags(flag_values=flags.FLAGS):
  """The DataServiceConfig the parsed flags describe; a usage error (one line `error: ...`, exit
  status 2) when they start nothing or give a worker no dispatcher."""
  from realm_tf.data import data_service  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  try:
    return config_flags.config_from_flags(data_service.DataServiceConfig, flag_values)
  except ValueError as e:
    raise app.UsageError(str(e)) from None


def main(argv):
  """Starts the servers the flags ask for, then serves until killed."""
  del argv
  config = config_from_flags()
  from realm_tf.data import data_service  # pylint: disable=g-import-not-at-top
  servers = data_service.start_servers(config)
  print("tf.data service ready", flush=True)
  # The servers run in background threads as long as they are referenced (here) and the
  # process lives: keep it alive until killed.
  while servers:
    time.sleep(3600)


if __name__ == "__main__":
  define_flags()
  command_line.run(main)
