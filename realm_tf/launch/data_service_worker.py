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

from realm_tf.launch import cli

FLAGS = flags.FLAGS


def define_flags(flag_values=flags.FLAGS):
  """Defines the dispatcher's and the worker's flags (ports, addresses; no config dataclass).

  Called from `__main__` only (and by tests on a fresh FlagValues), so importing this module
  defines no flag.
  """
  fv = flag_values
  flags.DEFINE_integer("dispatcher_port", None, "Start a dispatcher on this port.", flag_values=fv)
  flags.DEFINE_list("worker_addresses", None, "Dispatcher: host:port of every worker (static "
                    "sharding needs the full list; the pipeline shards with SHARD_HINT).",
                    flag_values=fv)
  flags.DEFINE_string("dispatcher_work_dir", None, "Dispatcher: directory for its journal, so it "
                      "recovers its state after a restart (fault-tolerant mode).", flag_values=fv)
  flags.DEFINE_integer("worker_port", None, "Start a worker on this port.", flag_values=fv)
  flags.DEFINE_string("dispatcher_address", None, "Worker: host:port of the dispatcher "
                      "(default localhost:<dispatcher_port> when both run here).", flag_values=fv)
  flags.DEFINE_string("worker_host", None, "Worker: host name it announces to the dispatcher and "
                      "clients; must match its --worker_addresses entry (default: this host's "
                      "name).", flag_values=fv)


def main(argv):
  """Starts the servers the flags ask for, then serves until killed."""
  del argv
  if FLAGS.dispatcher_port is None and FLAGS.worker_port is None:
    raise app.UsageError("Give --dispatcher_port, --worker_port, or both.")
  from realm_tf.data import data_service  # pylint: disable=g-import-not-at-top
  servers = []
  if FLAGS.dispatcher_port is not None:
    servers.append(data_service.start_dispatcher(FLAGS.dispatcher_port, FLAGS.worker_addresses,
                                    FLAGS.dispatcher_work_dir))
  if FLAGS.worker_port is not None:
    dispatcher = FLAGS.dispatcher_address or (
        f"localhost:{FLAGS.dispatcher_port}" if FLAGS.dispatcher_port is not None else None)
    if not dispatcher:
      raise app.UsageError("--worker_port needs --dispatcher_address.")
    servers.append(data_service.start_worker(dispatcher, FLAGS.worker_port, FLAGS.worker_host))
  print("tf.data service ready", flush=True)
  while True:  # Servers run in background threads; keep the process alive until killed.
    time.sleep(3600)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
