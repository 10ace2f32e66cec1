"""A run stopped after a checkpoint and resumed draws the dropout masks an uninterrupted run
draws: its weights are bit-equal (they were not while the masks came from process-local
kernels)."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from realm_tf.training import dropout_rng
from realm_tf.training.trainer import DROPOUT_RNG, Trainer

BATCH = 4


def _model():
  tf_keras.utils.set_random_seed(0)
  inputs = tf_keras.Input([8])
  hidden = tf_keras.layers.Dense(32, activation="relu")(inputs)
  hidden = tf_keras.layers.Dropout(0.5)(hidden)
  return tf_keras.Model(inputs, tf_keras.layers.Dense(1)(hidden))


def _task(model, batch, training):
  loss = tf.square(model(batch["x"], training=training)[:, 0] - batch["y"])
  return loss, {"mse": (tf.reduce_sum(loss), tf.cast(tf.size(loss), tf.float32))}


def _example(index):
  x = tf.random.stateless_normal([8], tf.stack([tf.constant(3, tf.int64), index]))
  return {"x": x, "y": tf.reduce_sum(x[:3]), "index": index}


def _dataset(position, shard=None):
  del shard
  ds = tf.data.Dataset.range(position, 1 << 40).map(_example).batch(BATCH, drop_remainder=True)
  return ds.map(lambda b: dict(b, data_position=tf.fill([BATCH], tf.reduce_max(b.pop("index"))
                                                           + 1)))


def _trainer(model_dir, jit_compile=False):
  return Trainer(_model(), tf_keras.optimizers.SGD(0.05), _task, tf.distribute.get_strategy(),
                 model_dir, BATCH, checkpoint_every=1, log_every=100, jit_compile=jit_compile)


def _weights(trainer):
  return [v.numpy() for v in trainer.model.trainable_variables]


# The XLA-compiled step draws from the same generators (slow: its compile time).
@pytest.mark.parametrize("jit_compile", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_a_resumed_run_ends_with_the_uninterrupted_runs_weights(tmp_path, jit_compile):
  whole = _trainer(str(tmp_path / "whole"), jit_compile)
  whole.train(_dataset, 6)

  def stop_after_3(step):
    if step == 3:
      raise KeyboardInterrupt("stopped")
    return False

  stopped = _trainer(str(tmp_path / "stopped"), jit_compile)
  with pytest.raises(KeyboardInterrupt):
    stopped.train(_dataset, 6, hooks=[stop_after_3])
  resumed = _trainer(str(tmp_path / "stopped"), jit_compile)  # a new process's state
  assert resumed.train(_dataset, 6)["start_step"] == 3
  for a, b in zip(_weights(whole), _weights(resumed)):
    np.testing.assert_array_equal(a, b)
  # Dropout was on: the same steps without it end elsewhere.
  plain = _trainer(str(tmp_path / "plain"), jit_compile)
  plain.model.layers[2].rate = 0.0
  plain.train(_dataset, 6)
  assert not np.array_equal(_weights(plain)[0], _weights(whole)[0])


def test_the_streams_live_in_the_trainers_checkpoint_not_the_models(tmp_path):
  trainer = _trainer(str(tmp_path / "run"))
  trainer.train(_dataset, 1)
  names = tf.train.load_checkpoint(trainer.manager.latest_checkpoint).get_variable_to_shape_map()
  assert any(n.startswith(DROPOUT_RNG + "/") for n in names), sorted(names)
  assert not any("random_generator" in n for n in names if n.startswith("model/")), sorted(names)
  assert len(dropout_rng.dropout_layers(trainer.model)) == 1


def test_a_checkpoint_written_without_streams_still_resumes(tmp_path):
  model_dir = str(tmp_path / "old")
  trainer = _trainer(model_dir)
  trainer.train(_dataset, 2)
  old = tf.train.Checkpoint(model=trainer.model, optimizer=trainer.optimizer, step=trainer.step,
                            data_position=trainer.data_position)
  tf.train.CheckpointManager(old, os.path.join(model_dir, "checkpoints"), max_to_keep=5).save(3)
  resumed = _trainer(model_dir)
  assert resumed.restore() == 2
  for a, b in zip(_weights(trainer), _weights(resumed)):
    np.testing.assert_array_equal(a, b)
