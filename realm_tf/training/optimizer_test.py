"""Tests of the shared optimizer factory."""
import pytest
import tf_keras

from realm_tf.training.optimizer import create_optimizer


@pytest.fixture
def policy():
  """Restores the global mixed-precision policy after the test."""
  old = tf_keras.mixed_precision.global_policy()
  yield tf_keras.mixed_precision.set_global_policy
  tf_keras.mixed_precision.set_global_policy(old)


def test_float16_gets_a_dynamic_loss_scale(policy):
  # Every trainer (ICT, reader warm-up, REALM, fine-tuning) takes its optimizer from here; under
  # float16 an unscaled loss underflows its gradients.
  policy("mixed_float16")
  opt = create_optimizer(1e-4, 100, 10)
  assert isinstance(opt, tf_keras.mixed_precision.LossScaleOptimizer)
  assert opt.dynamic


@pytest.mark.parametrize("name", ["float32", "mixed_bfloat16"])
def test_other_policies_need_no_loss_scale(policy, name):
  policy(name)
  assert not isinstance(create_optimizer(1e-4, 100, 10),
                        tf_keras.mixed_precision.LossScaleOptimizer)
