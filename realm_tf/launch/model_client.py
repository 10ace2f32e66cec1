r"""`python -m serving.client` (or `python -m realm_tf.launch.model_client`): ask a served model
questions over TF Serving's gRPC API and print its answers with their evidence.

  python -m serving.client --server=localhost:8500 --model_name=realm_openqa \
      "who wrote pride and prejudice" "when was the eiffel tower built"

One flag per `serving.client.ClientConfig` field; the questions are the arguments. An unreachable
server, an unknown model or a rejected input ends the run with a one-line `error: ...`, exit
status 2 (realm_tf/utils/command_line.py).
"""
from typing import Sequence

from realm_tf.utils import command_line  # first: quiets TensorFlow's C++ logs before it is imported

from absl import app  # pylint: disable=g-bad-import-order,wrong-import-order
from absl import flags  # pylint: disable=g-bad-import-order,wrong-import-order

FLAGS = flags.FLAGS

HELP = {
    "server": "host:port of the model server.",
    "model_name": "Model to ask.",
    "signature_name": "Signature to call.",
    "input_name": "String input of the signature (default: its only one).",
    "model_version": "Pin this version.",
    "model_version_label": "Pin this version label.",
    "timeout": "RPC timeout in seconds.",
    "max_evidence": "Evidence blocks printed per question.",
    "snippet_chars": "Characters of evidence text printed.",
}


def define_flags(flag_values: flags.FlagValues = FLAGS):
  """Defines the CLI flags (on `flag_values`, the global FLAGS by default): one per ClientConfig
  field. Called from `__main__` only (and by tests), so importing this module defines none."""
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from serving import client  # pylint: disable=g-import-not-at-top
  config_flags.define_config_flags(client.ClientConfig, HELP, flag_values=flag_values)
  from realm_tf.launch import validators  # pylint: disable=g-import-not-at-top
  validators.register_ranges(flag_values)


def config_from_flags(flag_values: flags.FlagValues = FLAGS):
  """The `serving.client.ClientConfig` the parsed flags describe."""
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from serving import client  # pylint: disable=g-import-not-at-top
  return config_flags.config_from_flags(client.ClientConfig, flag_values)


def run(flag_values: flags.FlagValues, questions: Sequence[str]) -> int:
  """The CLI body: the config from the parsed flags, then `serving.client.answer`, printed;
  returns 0. No questions is a usage error; a failed RPC a ServingError."""
  from serving import client  # pylint: disable=g-import-not-at-top
  if not questions:
    raise app.UsageError("give one or more questions as arguments")
  print(client.answer(config_from_flags(flag_values), questions))
  return 0


def main(argv):
  """Asks the questions given as arguments, as the flags say."""
  return run(FLAGS, argv[1:])


if __name__ == "__main__":
  define_flags()
  command_line.run(main)
