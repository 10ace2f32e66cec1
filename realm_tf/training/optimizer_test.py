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


@pytest.mark.parametrize("multiplier", [0.0, 0.1, 1.0])
def test_scaled_variables_step_at_a_multiple_of_the_rate(multiplier):
  # Adam's first step moves every variable by lr * sign(grad) (up to epsilon), so after one step
  # the scaled variable has moved `multiplier` times as far as the other, whatever the gradients.
  import numpy as np
  import tensorflow as tf
  scaled = tf.Variable([1.0, -2.0], name="scaled_part")
  other = tf.Variable([3.0, 4.0], name="other_part")
  opt = create_optimizer(1e-2, 100, 0, weight_decay_rate=0.0,
                         variable_multipliers=[([scaled], multiplier)])
  opt.apply_gradients([(tf.constant([0.5, -7.0]), scaled), (tf.constant([2.0, 0.1]), other)])
  lr = float(opt.learning_rate(0))
  np.testing.assert_allclose(other.numpy(), [3.0 - lr, 4.0 - lr], rtol=1e-4)
  np.testing.assert_allclose(scaled.numpy(), [1.0 - multiplier * lr, -2.0 + multiplier * lr],
                             rtol=1e-4)


def test_negative_multiplier_is_refused():
  with pytest.raises(ValueError, match="multipliers must be >= 0"):
    create_optimizer(1e-4, 10, 0, variable_multipliers=[([], 1.0), ([], -1.0)])


def test_a_zero_multiplier_holds_the_realm_retriever_and_trains_the_reader():
  # The variables are matched by name: on the real model, every retriever variable (and no
  # reader variable) must be the scaled one.
  import numpy as np
  import tensorflow as tf
  from realm_tf.modeling.realm_pretrainer import RealmPretrainer
  from realm_tf.modeling.realm_pretrainer_test import SMALL, synthetic_batch
  model = RealmPretrainer(SMALL).build_all()
  opt = create_optimizer(1e-3, 10, 0,
                         variable_multipliers=[(model.retriever.trainable_variables, 0.0)])
  before = [v.numpy().copy() for v in model.trainable_variables]
  with tf.GradientTape() as tape:
    loss = -tf.reduce_mean(model.compute_outputs(synthetic_batch(), training=True)
                           ["marginal_log_prob"])
  grads = tape.gradient(loss, model.trainable_variables)
  opt.apply_gradients([(g, v) for g, v in zip(grads, model.trainable_variables)
                       if g is not None])
  retriever = {v.ref() for v in model.retriever.trainable_variables}
  moved = {v.ref(): not np.array_equal(b, v.numpy())
           for b, v in zip(before, model.trainable_variables)}
  assert not any(moved[r] for r in retriever)
  assert sum(m for r, m in moved.items() if r not in retriever) > 10


def test_each_variable_group_steps_at_its_own_multiple_of_the_schedule():
  # Adam's first step moves every variable by about its rate, whatever its gradient's size:
  # the base one by lr, the scaled group by lr * 0.1, the second group by lr * 1000, and a
  # group at 0 not at all (REALM's null bias under a frozen retriever).
  import numpy as np
  import tensorflow as tf
  base, scaled, fast, held = (tf.Variable(1.0, name=n) for n in ("w_base", "w_scaled",
                                                                   "w_fast", "w_held"))
  opt = create_optimizer(1e-4, 10, 0, weight_decay_rate=0.0,
                         variable_multipliers=[([scaled], 0.1), ([fast], 1000.0), ([held], 0.0)])
  opt.apply_gradients([(tf.constant(0.5), v) for v in (base, scaled, fast, held)])
  steps = [1.0 - float(v.numpy()) for v in (base, scaled, fast, held)]
  np.testing.assert_allclose(steps, [1e-4, 1e-5, 1e-1, 0.0], rtol=1e-2, atol=1e-9)

