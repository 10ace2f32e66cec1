"""Picks the tf.distribute strategy from flags, so one code path runs on CPU, GPUs and TPUs."""
from typing import List, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")


def configure_cpu_devices(num_devices: int) -> None:
  """Splits the host CPU into `num_devices` logical devices (must run before TF initialises).

  Lets multi-replica code (MirroredStrategy, strategy.run) be exercised on one CPU host.
  """
  cpus = tf.config.list_physical_devices("CPU")
  current = tf.config.get_logical_device_configuration(cpus[0])
  if current and len(current) == num_devices:
    return
  tf.config.set_logical_device_configuration(
      cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)])


def get_strategy(tpu: Optional[str] = None, strategy: str = "default",
                 num_cpu_devices: Optional[int] = None) -> tf.distribute.Strategy:
  """Returns the strategy named by the flags.

  Args:
    tpu: a TPU name or `grpc://host:port` address (or "local" on a TPU VM); implies TPUStrategy.
    strategy: one of STRATEGIES.
    num_cpu_devices: if set (>1), split the CPU into that many logical devices first, so
      `mirrored` runs several replicas on a CPU-only machine.
  """
  if num_cpu_devices and num_cpu_devices > 1:
    configure_cpu_devices(num_cpu_devices)
  if tpu or strategy == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    result = tf.distribute.TPUStrategy(resolver)
  elif strategy == "mirrored":
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    result = tf.distribute.MirroredStrategy(devices=devices)
  elif strategy == "multi_worker_mirrored":
    result = tf.distribute.MultiWorkerMirroredStrategy()
  elif strategy == "one_device":
    gpus = tf.config.list_logical_devices("GPU")
    result = tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
  elif strategy == "default":
    result = tf.distribute.get_strategy()
  else:
    raise ValueError(f"Unknown --strategy={strategy!r}; choose from {STRATEGIES}.")
  logging.info("Using %s with %d replica(s).", type(result).__name__,
               result.num_replicas_in_sync)
  return result


def is_tpu_strategy(strategy: tf.distribute.Strategy) -> bool:
  """Whether `strategy` runs its replica steps on TPUs (it then compiles them itself)."""
  return isinstance(strategy, (tf.distribute.TPUStrategy, tf.distribute.experimental.TPUStrategy))


def input_pipelines(strategy: tf.distribute.Strategy) -> Tuple[int, List[int]]:
  """How many input pipelines `strategy.distribute_datasets_from_function` builds (one per host)
  and the ids of those this client builds: all of them in a single client (one host, or a TPU
  pod driven from one client), only its own under MultiWorkerMirroredStrategy (a client per
  host). Asked of the strategy itself by building a one-element probe dataset."""
  contexts = []

  def probe(context):
    contexts.append(context)
    return tf.data.Dataset.from_tensors(tf.zeros([1]))

  strategy.distribute_datasets_from_function(probe)
  if not contexts:
    return 1, [0]
  return contexts[0].num_input_pipelines, sorted(c.input_pipeline_id for c in contexts)


def agreed_minimum(strategy: tf.distribute.Strategy, value: int) -> int:
  """The smallest of every client's `value` under MultiWorkerMirroredStrategy (a collective:
  every client calls it at the same step), so that all act on one choice, such as the newest
  index bundle all of them have seen; `value` itself under any single-client strategy."""
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return int(value)
  mine = tf.constant([[int(value)]], tf.int64)
  gathered = strategy.gather(strategy.experimental_distribute_values_from_function(
      lambda _: mine), axis=0)
  return int(np.min(gathered.numpy()))
