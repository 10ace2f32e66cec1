r"""`python -m serving.server` (or `python -m realm_tf.launch.model_server`): our gRPC model server
speaking TF Serving's protocol, from the command line.

  python -m serving.server --port=8500 --work_dir=runs/mine   # its serving/realm_openqa
  python -m serving.server --port=8500 --model_config_file=serving/models.config \
      --models_dir=/path/to/exports --enable_batching \
      --batching_parameters_file=serving/batching.config
  python -m serving.server --port=8500 --model_name=realm_openqa \
      --model_base_path=/path/to/exports/realm_openqa

Without --model_config_file or --model_name the server serves `realm_openqa` from
<work_dir>/serving/realm_openqa (what `python -m realm_tf.launch.export --work_dir=...` writes);
--model_name without --model_base_path serves <work_dir>/serving/<model_name>.
The flags are named as `tensorflow_model_server`'s where they overlap; they become one
`serving.server.ServerOptions`, and the server runs until SIGTERM / SIGINT, which stop it
gracefully (in-flight requests get `--shutdown_grace_seconds`). A missing or malformed model or
batching config ends the run with a one-line `error: ...`, exit status 2
(realm_tf/utils/command_line.py).
"""
import os
import signal
import sys
import threading

from realm_tf.utils import command_line  # first: quiets TensorFlow's C++ logs before it is imported

from absl import app  # pylint: disable=g-bad-import-order,wrong-import-order
from absl import flags  # pylint: disable=g-bad-import-order,wrong-import-order
from absl import logging  # pylint: disable=g-bad-import-order,wrong-import-order

FLAGS = flags.FLAGS
DEFAULT_MODEL = "realm_openqa"  # served from <work_dir>/serving when no model is named


def define_flags(flag_values=flags.FLAGS):
  """Defines the server's flags (named as tensorflow_model_server's where they overlap).

  Called from `__main__` only (and by tests on a fresh FlagValues), so importing this module
  defines no flag.
  """
  import dataclasses  # pylint: disable=g-import-not-at-top
  from serving import server as server_lib  # pylint: disable=g-import-not-at-top
  d = {f.name: f.default for f in dataclasses.fields(server_lib.ServerOptions)}
  from serving import validation as validation_lib  # pylint: disable=g-import-not-at-top
  validation_defaults = validation_lib.ValidationConfig()
  from realm_tf.io import work_dir  # pylint: disable=g-import-not-at-top
  fv = {"flag_values": flag_values}
  flags.DEFINE_string("work_dir", work_dir.DEFAULT_ROOT, "Work directory whose serving/ exports "
                      "are served when neither --model_config_file nor --model_base_path says.",
                      **fv)
  flags.DEFINE_integer("port", d["port"], "gRPC port (0 picks a free port).", **fv)
  flags.DEFINE_string("bind_address", d["bind_address"], "Interface to listen on.", **fv)
  flags.DEFINE_string("model_config_file", None, "ModelServerConfig text proto listing the "
                      "models.", **fv)
  flags.DEFINE_string("model_name", None, "Single model to serve (default realm_openqa when "
                      "--model_config_file is not given).", **fv)
  flags.DEFINE_string("model_base_path", None, "Directory holding <version>/ subdirectories "
                      "(default <work_dir>/serving/<model_name>).", **fv)
  flags.DEFINE_string("models_dir", None,
                      "Serve each config entry from <models_dir>/<basename(base_path)>, so the "
                      "Docker-style serving/models.config works on a local export directory.", **fv)
  flags.DEFINE_float("file_system_poll_wait_seconds", d["file_system_poll_wait_seconds"],
                     "Seconds between scans for new versions (0: scan only at start).", **fv)
  flags.DEFINE_bool("enable_batching", False, "Merge concurrent requests server-side.", **fv)
  flags.DEFINE_string("batching_parameters_file", None,
                      "BatchingParameters text proto (default: built-in defaults).", **fv)
  flags.DEFINE_integer("max_string_bytes", 16384,
                       "Longest accepted string element of an input (0: no limit).", **fv)
  flags.DEFINE_bool("allow_empty_strings", False, "Accept empty / whitespace-only strings.", **fv)
  flags.DEFINE_bool("require_utf8", True, "String inputs must be valid UTF-8.", **fv)
  flags.DEFINE_integer("max_input_elements", validation_defaults.max_input_elements,
                       "Most elements one input tensor may hold (0: no limit).", **fv)
  flags.DEFINE_integer("max_batch_size", 0, "Largest batch one request may send (0: batching "
                       "max_batch_size or none).", **fv)
  flags.DEFINE_integer("max_receive_message_bytes", d["max_receive_message_bytes"],
                       "gRPC max receive message size.", **fv)
  flags.DEFINE_integer("max_send_message_bytes", d["max_send_message_bytes"],
                       "gRPC max send message size.", **fv)
  flags.DEFINE_integer("grpc_max_workers", d["grpc_max_workers"], "Threads handling RPCs.", **fv)
  flags.DEFINE_bool("enable_model_warmup", d["enable_model_warmup"],
                    "Replay assets.extra warm-up requests on load.", **fv)
  flags.DEFINE_integer("max_num_load_retries", d["max_num_load_retries"],
                       "Retries of a failed version load.", **fv)
  flags.DEFINE_float("max_request_seconds", d["max_request_seconds"],
                     "Longest a Predict may wait to be answered (0: only the client's deadline; "
                     "a shorter client deadline wins); past it: DEADLINE_EXCEEDED.", **fv)
  flags.DEFINE_float("shutdown_grace_seconds", 10.0, "Grace period for in-flight RPCs on stop.",
                     **fv)
  flags.DEFINE_bool("import_scann", True, "Import ScaNN first so ScaNN-op SavedModels load.", **fv)
  from realm_tf.launch import validators  # pylint: disable=g-import-not-at-top
  validators.register_ranges(flag_values,  # 0 seconds: no cap of the server's own
                             overrides={"max_request_seconds": validators.NON_NEGATIVE,
                                        "max_input_elements": validators.NON_NEGATIVE})


def options_from_flags(flag_values=flags.FLAGS):
  """The `serving.server.ServerOptions` the parsed flags describe (errors name the flag)."""
  from serving import batching as batching_lib  # pylint: disable=g-import-not-at-top
  from serving import model_config  # pylint: disable=g-import-not-at-top
  from serving import server as server_lib  # pylint: disable=g-import-not-at-top
  from serving import validation as validation_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.io import work_dir  # pylint: disable=g-import-not-at-top
  f = flag_values
  if f.model_config_file and f.model_name:
    raise app.UsageError("give one of --model_config_file or --model_name")
  if f.model_config_file:
    models = model_config.load_model_config_file(f.model_config_file, f.models_dir)
  else:
    name = f.model_name or DEFAULT_MODEL
    base = f.model_base_path or os.path.join(work_dir.WorkDir(f.work_dir).serving, name)
    models = [model_config.ModelConfig(name, base)]
  batch_config = None
  if f.enable_batching:
    batch_config = (batching_lib.load_batching_config(f.batching_parameters_file)
                    if f.batching_parameters_file else batching_lib.BatchingConfig())
  return server_lib.ServerOptions(
      models=models, port=f.port, bind_address=f.bind_address,
      file_system_poll_wait_seconds=f.file_system_poll_wait_seconds, batching=batch_config,
      validation=validation_lib.ValidationConfig(max_string_bytes=f.max_string_bytes,
                                                 reject_empty_strings=not f.allow_empty_strings,
                                                 require_utf8=f.require_utf8,
                                                 max_batch_size=f.max_batch_size,
                                                 max_input_elements=f.max_input_elements),
      max_receive_message_bytes=f.max_receive_message_bytes,
      max_send_message_bytes=f.max_send_message_bytes,
      grpc_max_workers=f.grpc_max_workers, enable_model_warmup=f.enable_model_warmup,
      max_num_load_retries=f.max_num_load_retries, max_request_seconds=f.max_request_seconds)


def main(argv):
  """Serves the flags' models until SIGTERM / SIGINT, then stops gracefully and exits."""
  del argv
  from serving import model_manager  # pylint: disable=g-import-not-at-top
  from serving import server as server_lib  # pylint: disable=g-import-not-at-top
  options = options_from_flags()
  if FLAGS.import_scann:
    model_manager.import_scann()
  server = server_lib.ModelServer(options)
  stop = threading.Event()

  def on_signal(signum, frame):
    del frame
    logging.info("Received signal %d, shutting down", signum)
    stop.set()

  signal.signal(signal.SIGTERM, on_signal)
  signal.signal(signal.SIGINT, on_signal)
  server.start()
  for model in options.models:
    logging.info("Serving %s from %s", model.name, model.base_path)
  while not stop.wait(3600):
    pass
  server.stop(FLAGS.shutdown_grace_seconds)
  # Everything is stopped; skip interpreter teardown, which takes seconds with TF loaded.
  logging.flush()
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(0)  # pylint: disable=protected-access


if __name__ == "__main__":
  command_line.keep_keras_out()  # before define_flags imports TensorFlow
  define_flags()
  command_line.run(main)
