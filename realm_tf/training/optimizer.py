"""BERT's optimizer: AdamW (decoupled weight decay) with linear warm-up and linear decay."""
import re
from typing import Iterable, Mapping, Optional, Sequence, Tuple

import tf_keras
from official.nlp import optimization

_REPLICA_SUFFIX = re.compile(r"/replica_\d+(?=:\d+$)")


class ScaledAdamWeightDecay(optimization.AdamWeightDecay):
  """AdamWeightDecay whose step (and weight decay) on some variables is a fixed multiple of the
  schedule's learning rate.

  REALM trains two parts with very different needs: a reader that must learn to read retrieved
  text, and a retriever whose ranking a noisy marginal-likelihood gradient can wreck. One
  schedule with a per-part multiplier keeps one optimizer, one checkpoint layout and one
  warm-up/decay. Gradient scaling cannot do this: Adam's step does not depend on the gradient's
  scale.
  """

  def __init__(self, name_multipliers: Optional[Mapping[str, float]] = None, **kwargs):
    super().__init__(**kwargs)
    self._multipliers = {k: float(v) for k, v in (name_multipliers or {}).items()}

  def _scaled_state(self, var, apply_state):
    """`apply_state` with `var`'s learning rates times its multiplier (unchanged if it has none)."""
    # Mirrored replicas' components are named "<name>/replica_<i>:0".
    multiplier = self._multipliers.get(_REPLICA_SUFFIX.sub("", var.name))
    if multiplier is None:
      return apply_state
    key = (var.device, var.dtype.base_dtype)
    coefficients = (apply_state or {}).get(key) or self._fallback_apply_state(*key)
    # Adam's dense step reads "lr_t", its sparse (embedding) step the bias-corrected "lr".
    coefficients = dict(coefficients, lr_t=coefficients["lr_t"] * multiplier,
                        lr=coefficients["lr"] * multiplier)
    state = dict(apply_state or {})
    state[key] = coefficients
    return state

  def _resource_apply_dense(self, grad, var, apply_state=None):
    return super()._resource_apply_dense(grad, var, self._scaled_state(var, apply_state))

  def _resource_apply_sparse(self, grad, var, indices, apply_state=None):
    return super()._resource_apply_sparse(grad, var, indices, self._scaled_state(var, apply_state))


def create_optimizer(learning_rate: float = 3e-5, num_train_steps: int = 200_000,
                     num_warmup_steps: int = 10_000, weight_decay_rate: float = 0.01,
                     end_lr: float = 0.0,
                     variable_multipliers: Sequence[Tuple[Iterable, float]] = ()
                     ) -> tf_keras.optimizers.Optimizer:
  """AdamWeightDecay (no decay on LayerNorm/bias) with a warm-up + linear-decay schedule.

  The variables of each (variables, multiplier) in `variable_multipliers` (e.g. REALM's
  retriever, its null bias) step at that multiple of the schedule's rate; the rest at the rate.

  Under the `mixed_float16` policy the optimizer is wrapped in a dynamic loss-scale optimizer:
  float16 gradients underflow without one. (bfloat16 has float32's range and needs none.) Every
  trainer gets its optimizer here, so no stage can forget the wrapper.
  """
  if any(m < 0 for _, m in variable_multipliers):
    raise ValueError("learning-rate multipliers must be >= 0, got "
                     f"{[m for _, m in variable_multipliers]}.")
  schedule = tf_keras.optimizers.schedules.PolynomialDecay(
      initial_learning_rate=learning_rate, decay_steps=max(num_train_steps, 1),
      end_learning_rate=end_lr, power=1.0)
  if num_warmup_steps:
    schedule = optimization.WarmUp(initial_learning_rate=learning_rate,
                                   decay_schedule_fn=schedule, warmup_steps=num_warmup_steps)
  optimizer = ScaledAdamWeightDecay(
      name_multipliers={v.name: m for variables, m in variable_multipliers for v in variables},
      learning_rate=schedule, weight_decay_rate=weight_decay_rate, beta_1=0.9, beta_2=0.999,
      epsilon=1e-6, exclude_from_weight_decay=["LayerNorm", "layer_norm", "bias"],
      gradient_clip_norm=0.0)  # the Trainer clips the cross-replica gradient itself
  if tf_keras.mixed_precision.global_policy().name == "mixed_float16":
    optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
  return optimizer
