"""The tf.distribute flags of the programs that train or embed, and the strategy they name.

`--tpu`, `--strategy`, `--num_cpu_devices`, `--mixed_precision` and `--jit_compile` mean the same
in pretrain, ict, finetune and refresh_index: each of those calls `define_flags()` from its own
`define_flags()`, so the names, defaults and help texts are written once, here. A program that
runs a loaded SavedModel rather than building the model in Python (refresh_index embeds with the
exported embedder, whose dtypes and compilation were fixed at export) cannot honour
`--mixed_precision` or `--jit_compile`, so it leaves them out (`precision=False`) and a user who
passes them is told the flag is unknown instead of having it silently ignored.
"""
from absl import flags

# Flags defined from here are the calling CLI's key flags (its --help lists them).
flags.disclaim_key_flags()

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")


def define_flags(flag_values=flags.FLAGS, precision: bool = True) -> None:
  """Defines the distribution flags on `flag_values` (once per program: absl refuses a flag
  defined twice); `--mixed_precision` and `--jit_compile` only with `precision`."""
  flags.DEFINE_string("tpu", None, "TPU name or grpc:// address (TPUStrategy).",
                      flag_values=flag_values)
  flags.DEFINE_enum("strategy", "default", list(STRATEGIES), "tf.distribute strategy.",
                    flag_values=flag_values)
  flags.DEFINE_integer("num_cpu_devices", None, "Split the CPU into N logical devices (testing).",
                       flag_values=flag_values)
  if not precision:
    return
  flags.DEFINE_enum("mixed_precision", None, ["bfloat16", "float16"], "Mixed precision policy.",
                    flag_values=flag_values)
  flags.DEFINE_bool("jit_compile", False, "XLA-compile the train step (forward, backward, optimizer apply).",
                    flag_values=flag_values)


def strategy_from_flags(flag_values=flags.FLAGS):
  """Builds the strategy the (parsed) flags name and sets the mixed-precision policy they name
  (when the program defines --mixed_precision)."""
  import tf_keras  # pylint: disable=g-import-not-at-top
  from realm_tf.training.strategy import get_strategy  # pylint: disable=g-import-not-at-top
  strategy = get_strategy(flag_values.tpu, flag_values.strategy, flag_values.num_cpu_devices)
  if "mixed_precision" in flag_values and flag_values.mixed_precision:
    tf_keras.mixed_precision.set_global_policy(f"mixed_{flag_values.mixed_precision}")
  return strategy
