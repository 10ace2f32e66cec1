"""The distribution flags: a program that cannot honour --mixed_precision / --jit_compile leaves
them out and still gets its strategy; one that defines them gets the policy it names."""
import pytest
from absl import flags

from realm_tf.launch import distribution_flags


@pytest.fixture
def keras_policy():
  """Restores Keras' global dtype policy after the test."""
  import tf_keras  # pylint: disable=g-import-not-at-top
  yield tf_keras.mixed_precision
  tf_keras.mixed_precision.set_global_policy("float32")


def test_without_precision_flags_only_the_strategy_flags_and_the_strategy(keras_policy):
  fv = flags.FlagValues()
  distribution_flags.define_flags(fv, precision=False)
  assert sorted(fv) == ["num_cpu_devices", "strategy", "tpu"]
  fv(["prog"])
  strategy = distribution_flags.strategy_from_flags(fv)
  assert strategy.num_replicas_in_sync == 1
  assert keras_policy.global_policy().name == "float32"


def test_the_mixed_precision_flag_sets_the_policy(keras_policy):
  fv = flags.FlagValues()
  distribution_flags.define_flags(fv)
  assert {"mixed_precision", "jit_compile"} <= set(fv)
  fv(["prog", "--mixed_precision=bfloat16"])
  distribution_flags.strategy_from_flags(fv)
  assert keras_policy.global_policy().name == "mixed_bfloat16"
