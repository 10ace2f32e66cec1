"""The tf.distribute flags every training or embedding entry point shares, defined once.

`--tpu`, `--strategy`, `--num_cpu_devices`, `--mixed_precision` and `--jit_compile` mean the same
in pretrain, finetune and refresh_index; defining them here also lets those modules be imported
into one process (absl refuses a flag defined twice).
"""
from absl import flags

flags.DEFINE_string("tpu", None, "TPU name or grpc:// address (TPUStrategy).")
flags.DEFINE_enum("strategy", "default", ["default", "one_device", "mirrored",
                                          "multi_worker_mirrored", "tpu"], "tf.distribute strategy.")
flags.DEFINE_integer("num_cpu_devices", None, "Split the CPU into N logical devices (testing).")
flags.DEFINE_enum("mixed_precision", None, ["bfloat16", "float16"], "Mixed precision policy.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the forward/backward pass.")

FLAGS = flags.FLAGS


def strategy_from_flags():
  """Builds the strategy named by the flags and sets the mixed-precision policy."""
  import tf_keras  # pylint: disable=g-import-not-at-top
  from realm_tf.training.strategy import get_strategy  # pylint: disable=g-import-not-at-top
  strategy = get_strategy(FLAGS.tpu, FLAGS.strategy, FLAGS.num_cpu_devices)
  if FLAGS.mixed_precision:
    tf_keras.mixed_precision.set_global_policy(f"mixed_{FLAGS.mixed_precision}")
  return strategy
