"""Dropout whose random stream is saved with a run's checkpoint.

Keras draws dropout masks from stateful random kernels ("legacy_stateful") whose position lives in
the process, not in any variable. A run resumed from step k then drew the masks a fresh process
draws first, not those an uninterrupted run draws at step k + 1, so its weights differed from the
uninterrupted run's after every mid-run stop (measured on REALM with inline refresh, killed after
its step-3 checkpoint: 130 of 264 checkpoint tensors differed at step 4; with dropout off, none).

`resumable_dropout` gives each Dropout layer of a model its own `tf.random.Generator` and returns
their states as one trackable for the trainer's checkpoint, so a restore puts every stream back
where the checkpointed step left it. The model's own checkpoint layout is unchanged (the
generators are reachable only through the returned object), so earlier checkpoints and every
reader of a model's weights still load.
"""
from typing import List, Optional

from absl import logging
import tensorflow as tf
import tf_keras
from tf_keras.src import backend as keras_backend


def dropout_layers(model) -> List[tf_keras.layers.Layer]:
  """Every Dropout layer reachable from `model` (nested layers and networks included), in a fixed
  order, once each."""
  if not isinstance(model, tf_keras.layers.Layer):
    return []
  return [layer for layer in model._flatten_layers(include_self=True, recursive=True)  # pylint: disable=protected-access
          if isinstance(layer, tf_keras.layers.Dropout)]


def resumable_dropout(model) -> Optional[tf.train.Checkpoint]:
  """Moves every Dropout layer of `model` that draws from a process-local stateful kernel onto
  its own `tf.random.Generator`; returns a Checkpoint holding those generators (None when there
  are none) for the caller's checkpoint.

  Call it in the strategy's scope (a generator made there gives each replica its own stream),
  after `tf_keras.utils.set_random_seed`: the generators' seeds are drawn from Python's `random`,
  so a run started twice with the same seed draws the same masks.
  """
  generators = []
  for layer in dropout_layers(model):
    current = getattr(layer, "_random_generator", None)
    if current is None or current._rng_type != current.RNG_LEGACY_STATEFUL:  # pylint: disable=protected-access
      continue  # a seeded or already generator-backed layer keeps what it has
    rng = keras_backend.RandomGenerator(seed=current._seed, rng_type="stateful")  # pylint: disable=protected-access
    rng._maybe_init()  # pylint: disable=protected-access  # the state variable exists now, not at the first trace
    # Plain assignment would track the generator under the model too (changing the layout of
    # its checkpoints and SavedModels); the trainer's checkpoint holds it instead.
    object.__setattr__(layer, "_random_generator", rng)
    generators.append(rng._generator)  # pylint: disable=protected-access
  if not generators:
    return None
  logging.info("Dropout: %d layer(s) draw from generators saved with the checkpoint.",
               len(generators))
  return tf.train.Checkpoint(generators=generators)
