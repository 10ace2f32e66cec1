"""BERT's optimizer: AdamW (decoupled weight decay) with linear warm-up and linear decay."""
import tf_keras
from official.nlp import optimization


def create_optimizer(learning_rate: float = 3e-5, num_train_steps: int = 200_000,
                     num_warmup_steps: int = 10_000, weight_decay_rate: float = 0.01,
                     end_lr: float = 0.0) -> tf_keras.optimizers.Optimizer:
  """AdamWeightDecay (no decay on LayerNorm/bias) with a warm-up + linear-decay schedule.

  Under the `mixed_float16` policy the optimizer is wrapped in a dynamic loss-scale optimizer:
  float16 gradients underflow without one. (bfloat16 has float32's range and needs none.) Every
  trainer gets its optimizer here, so no stage can forget the wrapper.
  """
  schedule = tf_keras.optimizers.schedules.PolynomialDecay(
      initial_learning_rate=learning_rate, decay_steps=max(num_train_steps, 1),
      end_learning_rate=end_lr, power=1.0)
  if num_warmup_steps:
    schedule = optimization.WarmUp(initial_learning_rate=learning_rate,
                                   decay_schedule_fn=schedule, warmup_steps=num_warmup_steps)
  optimizer = optimization.AdamWeightDecay(
      learning_rate=schedule, weight_decay_rate=weight_decay_rate, beta_1=0.9, beta_2=0.999,
      epsilon=1e-6, exclude_from_weight_decay=["LayerNorm", "layer_norm", "bias"],
      gradient_clip_norm=0.0)  # the Trainer clips the cross-replica gradient itself
  if tf_keras.mixed_precision.global_policy().name == "mixed_float16":
    optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
  return optimizer
