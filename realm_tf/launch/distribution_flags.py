"""The tf.distribute flags of the programs that train or embed, and the strategy they name.

`--tpu`, `--strategy`, `--num_cpu_devices`, `--mixed_precision` and `--jit_compile` mean the same
in pretrain, ict, finetune and refresh_index: each of those calls `define_flags()` from its own
`define_flags()`, so the names, defaults and help texts are written once, here. A program that
runs a loaded SavedModel rather than building the model in Python (refresh_index embeds with the
exported embedder, whose dtypes and compilation were fixed at export) cannot honour
`--mixed_precision` or `--jit_compile`, so it leaves them out (`precision=False`) and a user who
passes them is told the flag is unknown instead of having it silently ignored.
"""
from typing import Sequence

from absl import flags

# Flags defined from here are the calling CLI's key flags (its --help lists them).
flags.disclaim_key_flags()

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")


def define_flags(flag_values=flags.FLAGS, precision: bool = True,
                 batch_flags: Sequence[str] = ()) -> None:
  """Defines the distribution flags on `flag_values` (once per program: absl refuses a flag
  defined twice); `--mixed_precision` and `--jit_compile` only with `precision`.

  `batch_flags`: the program's global batch sizes (defined already), refused as the flags are
  parsed when they do not divide among the replicas the flags name (`validators`).
  """
  from realm_tf.launch import validators  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("tpu", None, "TPU name or grpc:// address (TPUStrategy).",
                      flag_values=flag_values)
  flags.DEFINE_enum("strategy", "default", list(STRATEGIES), "tf.distribute strategy.",
                    flag_values=flag_values)
  flags.DEFINE_integer("num_cpu_devices", None, "Split the CPU into N logical devices (testing).",
                       flag_values=flag_values)
  if batch_flags:
    validators.register_replica_batches(flag_values, batch_flags)
  if not precision:
    return
  flags.DEFINE_enum("mixed_precision", None, ["bfloat16", "float16"], "Mixed precision policy.",
                    flag_values=flag_values)
  flags.DEFINE_bool("jit_compile", False, "XLA-compile the train step (forward, backward, optimizer apply).",
                    flag_values=flag_values)


def strategy_from_flags(flag_values=flags.FLAGS, batch_flags: Sequence[str] = ()):
  """Builds the strategy the (parsed) flags name and sets the mixed-precision policy they name
  (when the program defines --mixed_precision).

  Then refuses (`app.UsageError`: one line, exit status 2) a global batch size among
  `batch_flags` that does not divide among the strategy's replicas: the check the flags could
  not make while parsed (GPUs, TPUs, several workers). Call it first, before any work.
  """
  import tf_keras  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import validators  # pylint: disable=g-import-not-at-top
  from realm_tf.utils.strategy import get_strategy  # pylint: disable=g-import-not-at-top
  strategy = get_strategy(flag_values.tpu, flag_values.strategy, flag_values.num_cpu_devices)
  validators.check_replicas(flag_values, batch_flags, strategy.num_replicas_in_sync)
  if "mixed_precision" in flag_values and flag_values.mixed_precision:
    tf_keras.mixed_precision.set_global_policy(f"mixed_{flag_values.mixed_precision}")
  return strategy
