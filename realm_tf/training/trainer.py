"""A custom training loop under any tf.distribute strategy, with exact resume.

The loop is shared by ICT, REALM pre-training and open-QA fine-tuning: a `task` supplies the
per-example loss and metrics; the trainer owns the optimizer step (clipping, mixed precision),
checkpoints (model, optimizer, step, data position, dropout streams: a resumed run ends with
the uninterrupted run's weights bit for bit where the kernels are deterministic, as on CPU), NaN
detection, progress lines, TensorBoard summaries, hooks (embedder export, index refresh) and the
done-marker.

With `jit_compile` the replica step is XLA-compiled (forward, backward and the optimizer's apply),
and every dataset the step reads is checked for what TPUs take (`check_device_inputs`). A task
that reads host data in the middle of its step (open-QA's block lookup) is a `HostStagedTask`:
its device parts are compiled and its host part runs between them, outside XLA.
"""
import dataclasses
import functools
import json
import math
import os
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.io import atomic
from realm_tf.io import chief
from realm_tf.io import paths
from realm_tf.io import publish
from realm_tf.io import work_dir
from realm_tf.training import dropout_rng
from realm_tf.utils.progress import ProgressReporter
from realm_tf.utils.strategy import input_pipelines, is_tpu_strategy

DONE_MARKER = work_dir.TRAINING_DONE
STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"  # the step counter's name in a checkpoint
CONFIG_FILE = "config.json"
DROPOUT_RNG = "dropout_rng"  # the checkpoint's key for the dropout streams


# What a TPU step takes as input (int64 ids and strings stay on the host).
DEVICE_DTYPES = (tf.bool, tf.int32, tf.uint32, tf.float32, tf.bfloat16)


class NonFiniteLossError(RuntimeError):
  """Raised when a step's loss or gradient norm is NaN/inf: the run stops before that step's
  checkpoint and hooks (exports, refreshes, held-out evaluations), so the last good checkpoint
  and export stay the newest and nothing from the bad step is written."""


class ConfigMismatchError(ValueError):
  """The model_dir holds checkpoints of a different model configuration."""


def check_or_write_config(model_dir: str, config: Dict, may_change: Sequence[str] = (),
                          config_class=None) -> None:
  """Writes `config.json` on a fresh model_dir (the chief of a multi-worker job; the others only
  check it); on resume, refuses a different configuration.

  Fields named in `may_change` (how often to checkpoint, export or refresh — not what is trained)
  may differ on resume; the new values are recorded. With `config_class` (the ConfigBase class
  whose `to_dict` the record is), a field missing from either record (written before the field
  existed) counts as its default (`ConfigBase.with_defaults`), so adding a field with a default
  does not lock older runs out.
  """
  path = os.path.join(model_dir, CONFIG_FILE)
  config = json.loads(json.dumps(config))
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      old = json.load(f)
    new = config
    if config_class is not None:
      old, new = config_class.with_defaults(old), config_class.with_defaults(config)
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    fixed = [k for k in diff if k not in may_change]
    if fixed:
      raise ConfigMismatchError(
          f"{model_dir} holds checkpoints of another configuration ({path}); differing fields: "
          f"{fixed}. Use a new --model_dir or the same configuration.")
    if not diff:
      return
    logging.info("Resuming %s with changed %s: %s", model_dir, diff,
                 {k: (old.get(k), new.get(k)) for k in diff})
  if chief.is_chief_process():  # a multi-worker job's other workers only check it
    tf.io.gfile.makedirs(model_dir)
    atomic.write_json(path, config)


def check_device_inputs(element_spec, what: str, host_keys: Sequence[str] = ()) -> None:
  """Raises ValueError naming every feature of a step's input that a TPU step cannot take: a
  shape that is not fully defined, or a dtype outside DEVICE_DTYPES. `host_keys` are read on
  the host and never reach the step."""
  bad = []
  items = element_spec.items() if isinstance(element_spec, dict) else \
      enumerate(tf.nest.flatten(element_spec))
  for path, spec in items:
    if path in host_keys:
      continue
    if not isinstance(spec, tf.TensorSpec):
      bad.append(f"{path}: {type(spec).__name__} (dense tensors only)")
    elif not spec.shape.is_fully_defined() or spec.dtype not in DEVICE_DTYPES:
      bad.append(f"{path}: {spec.dtype.name} {spec.shape}")
  if bad:
    raise ValueError(f"{what} feeds the step what XLA/TPU steps cannot take (fully defined "
                     f"shapes of {', '.join(d.name for d in DEVICE_DTYPES)} only): "
                     f"{'; '.join(bad)}.")


def without_keys(dataset: tf.data.Dataset, keys: Sequence[str]) -> tf.data.Dataset:
  """`dataset` with `keys` removed from its (dict) elements: ids that no step reads stay off
  the device."""
  return dataset.map(lambda batch: {k: v for k, v in batch.items() if k not in keys})


@dataclasses.dataclass(frozen=True)
class HostStagedTask:
  """A task whose step reads host-side data between two device parts (the first part's output
  decides what the host reads, e.g. the blocks a retrieval beam names).

  `device_first(model, batch, training) -> dict`, `host(model, batch, first) -> dict` (host
  reads only: never compiled, on TPU outside compilation), `device_second(model, batch, first,
  host, training) -> (per_example_loss, metrics)`. Called as a whole it is a plain task; the
  Trainer's `jit_compile` compiles the two device parts and their gradients, with the host part
  in between.
  """
  device_first: Callable
  host: Callable
  device_second: Callable

  def __call__(self, model, batch, training):
    first = self.device_first(model, batch, training)
    return self.device_second(model, batch, first, self.host(model, batch, first), training)


@dataclasses.dataclass(frozen=True)
class InputShard:
  """What one input pipeline (one per host) reads: share `index` of `count` of the training
  stream (e.g. `corpus.positioned_stream`'s shards), in batches of `batch_size`, its part of the
  global batch (the trainer splits them across the replicas it feeds)."""
  index: int = 0
  count: int = 1
  batch_size: int = 0


class Trainer:
  """Runs `task` on `model` under `strategy`, checkpointing to `model_dir`.

  `task(model, batch, training) -> (per_example_loss [B], metrics)` where metrics maps a name
  to (sum, count) tensors so values aggregate exactly across replicas.

  `jit_compile` XLA-compiles the whole replica step (forward, backward, optimizer's apply) as
  one function; a HostStagedTask's step as its compiled device parts plus the compiled apply.
  With several replicas on CPUs/GPUs (MirroredStrategy), the cross-replica sum and the apply,
  which updates every replica's variables, run uncompiled. TPUStrategy compiles the step itself.
  """

  def __init__(self, model, optimizer, task: Callable, strategy: tf.distribute.Strategy,
               model_dir: str, global_batch_size: int, clip_norm: float = 1.0,
               checkpoint_every: int = 100, max_to_keep: int = 3, log_every: int = 10,
               jit_compile: bool = False, name: str = "train",
               line_keys: Optional[Sequence[str]] = None):
    self.model = model
    self.line_keys = line_keys  # the scalars of the progress line (ProgressReporter)
    self.optimizer = optimizer
    self.task = task
    self.strategy = strategy
    self.model_dir = model_dir
    self.global_batch_size = global_batch_size
    self.clip_norm = clip_norm
    self.checkpoint_every = checkpoint_every
    self.log_every = log_every
    self.name = name
    # One input pipeline per host (strategy.distribute_datasets_from_function), each reading its
    # own share of the stream from its own position; the checkpoint holds every pipeline's.
    self.num_input_pipelines, self._local_pipelines = input_pipelines(strategy)
    if global_batch_size % self.num_input_pipelines:
      raise ValueError(f"[{name}] The global batch {global_batch_size} does not split evenly "
                       f"across {self.num_input_pipelines} input pipelines (hosts).")
    self._positions = np.zeros([self.num_input_pipelines], np.int64)
    with strategy.scope():
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
      self.data_position = tf.Variable(self._positions, trainable=False, name="data_position")
      # The dropout streams are saved with each checkpoint: a resumed run draws the masks an
      # uninterrupted one would (`dropout_rng`).
      self._dropout_rng = dropout_rng.resumable_dropout(model)
    extra = {DROPOUT_RNG: self._dropout_rng} if self._dropout_rng is not None else {}
    self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=self.step,
                                          data_position=self.data_position, **extra)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(model_dir, "checkpoints"), max_to_keep=max_to_keep)
    # Under MultiWorkerMirroredStrategy every client takes part in a save; only the chief writes
    # to model_dir, the others to a scratch directory removed after each save.
    self._is_chief = bool(getattr(strategy.extended, "should_checkpoint", True))
    task_id = getattr(getattr(strategy, "cluster_resolver", None), "task_id", None) or 0
    self._scratch_dir = os.path.join(model_dir, f".checkpoints-worker-{task_id}")
    self.jit_compile = jit_compile
    # TPU steps and XLA steps take the same inputs; the trainer checks each dataset it reads.
    self.checks_inputs = jit_compile or is_tpu_strategy(strategy)
    compile_here = jit_compile and not is_tpu_strategy(strategy)
    staged = compile_here and isinstance(task, HostStagedTask)
    whole = compile_here and not staged and strategy.num_replicas_in_sync == 1
    # The train steps (like the stages' other tf.functions and the pre-training pipeline's maps)
    # are plain TensorFlow ops, with no Python control flow on tensors, so they skip AutoGraph:
    # converting the towers' Keras layers cost a fifth of a short run's CPU time (measured on the
    # DPR end-to-end test: 64 s → 51 s). Smaller tf.data maps elsewhere are still converted.
    jit = functools.partial(tf.function, jit_compile=True, autograph=False)
    self._forward = self._staged_forward(task) if staged else \
        (lambda batch: self.task(self.model, batch, True))
    self._grads_fn = jit(self._compute_grads) if compile_here and not staged and not whole \
        else self._compute_grads
    self._apply_fn = jit(self._apply) if staged and strategy.num_replicas_in_sync == 1 \
        else self._apply
    self._replica_fn = jit(self._replica_step) if whole else self._replica_step
    self._train_step = tf.function(self._distributed_step, autograph=False)
    # A dynamic loss-scale optimizer (float16) expects non-finite gradients now and then: it
    # skips those steps and lowers its scale itself, so only its loss is checked.
    self._checks_grad_norm = not getattr(optimizer, "dynamic", False)

  def _restore_scalar_position(self, latest: str) -> None:
    """Restores a one-host checkpoint written when the data position was one scalar (before
    positions were kept per input pipeline), so existing runs resume where they stopped."""
    scalar = tf.Variable(0, dtype=tf.int64, trainable=False)
    self._training_state(scalar).restore(latest).expect_partial() \
        .assert_existing_objects_matched()
    self.data_position.assign([int(scalar.numpy())])

  def _checkpoint_for(self, path: str) -> tf.train.Checkpoint:
    """The checkpoint object that restores `path`: without the dropout streams when `path` was
    written before they were saved (the run then goes on with fresh streams, as it did before)."""
    if self._dropout_rng is None or any(
        k.startswith(DROPOUT_RNG + "/")
        for k in paths.checkpoint_reader(path).get_variable_to_shape_map()):
      return self.checkpoint
    logging.warning("%s holds no dropout streams (written by an older version): dropout masks "
                    "restart from their seeds.", path)
    return self._training_state(self.data_position)

  def _training_state(self, data_position: tf.Variable) -> tf.train.Checkpoint:
    """The checkpoint of model, optimizer, step and `data_position`, without dropout streams:
    what runs written by older versions hold."""
    return tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, step=self.step,
                               data_position=data_position)

  def restore(self, num_steps: Optional[int] = None) -> int:
    """Restores the newest checkpoint if any; returns the step to continue from. The chief
    first removes what a save killed mid-way left behind (`publish.remove_checkpoint_temps`).
    A run finished at `num_steps` on another number of hosts restores its weights alone: it
    has nothing left to read, so its data positions do not apply."""
    if self._is_chief:
      publish.remove_checkpoint_temps(self.manager.directory)
    latest = self.manager.latest_checkpoint
    if latest:
      paths.verify_checkpoint(latest)  # damage is one clear error now, not one mid-training
      try:
        # Optimizer slots are created after this (`_create_optimizer_state`) and restored then
        # (deferred), so a finished run that only reloads its weights never builds them.
        self._checkpoint_for(latest).restore(latest).expect_partial() \
            .assert_existing_objects_matched()
      except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as e:
        saved = paths.checkpoint_reader(latest).get_variable_to_shape_map().get(
            "data_position/.ATTRIBUTES/VARIABLE_VALUE")
        reader = paths.checkpoint_reader(latest)
        finished = num_steps is not None and reader.has_tensor(STEP_KEY) and \
            int(reader.get_tensor(STEP_KEY)) >= num_steps
        if saved is not None and not list(saved) and self.num_input_pipelines == 1:
          self._restore_scalar_position(latest)
        elif saved is not None and finished:
          stand_in = tf.Variable(tf.zeros(list(saved), tf.int64), trainable=False)
          self._training_state(stand_in).restore(latest).expect_partial() \
              .assert_existing_objects_matched()
          logging.info("%s finished on %d host(s); its weights are restored, its data positions "
                       "are not (nothing is left to train).", latest, (list(saved) or [1])[0])
        elif saved is not None and list(saved) != [self.num_input_pipelines]:
          raise ConfigMismatchError(
              f"Checkpoint {latest} holds data positions of shape {list(saved)}; this run has "
              f"{self.num_input_pipelines} input pipeline(s) (hosts) and needs "
              f"[{self.num_input_pipelines}]. Resume on as many hosts as it was trained on.") from e
        else:
          raise ConfigMismatchError(
              f"Checkpoint {latest} does not match this model (wrong shape or structure): {e}"
          ) from e
      self._positions = self.data_position.numpy().copy()
      logging.info("Restored %s at step %d, data position(s) %s.", latest,
                   int(self.step.numpy()), self._positions.tolist())
    return int(self.step.numpy())

  def _create_optimizer_state(self) -> None:
    """Creates the optimizer's step counter and slots for every trainable variable before the
    first step. Created inside it, they made tf.function trace the whole train step twice (once
    creating variables, then once without; measured on the DPR end-to-end test's three stages:
    16.8 s of tracing, 7.6 s traced once). Called after `restore`, which restores each slot as
    it is created, and only when there are steps to train; a variable that receives no gradient
    (a pooler the loss does not use) gets slots that stay zero."""
    optimizer = getattr(self.optimizer, "inner_optimizer", self.optimizer)
    if hasattr(optimizer, "_create_all_weights"):  # Keras' legacy OptimizerV2 (BERT's AdamW)
      with self.strategy.scope():
        optimizer._create_all_weights(self.model.trainable_variables)  # pylint: disable=protected-access

  def _distribute(self, make_dataset: Callable) -> tf.distribute.DistributedDataset:
    """The input of every replica: `make_dataset(position, InputShard)` once per input pipeline
    this client builds, from that pipeline's own position, split into per-replica batches.

    With several pipelines each element's `data_position` carries its pipeline's id
    (`position * count + id`, read back by `_advance`); with one it is the position itself.
    """
    count, global_batch = self.num_input_pipelines, self.global_batch_size

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
      index = context.input_pipeline_id
      shard = InputShard(index, count, global_batch // count)
      dataset = make_dataset(int(self._positions[index]), shard)
      per_replica = context.get_per_replica_batch_size(global_batch)
      if per_replica != shard.batch_size:
        dataset = dataset.rebatch(per_replica, drop_remainder=True)
      if count > 1:
        dataset = dataset.map(lambda b: dict(b, data_position=b["data_position"] * count + index))
      self.input_element_spec = dataset.element_spec
      return dataset

    return self.strategy.distribute_datasets_from_function(dataset_fn)

  def _advance(self, position) -> None:
    """Records the data position(s) a step's batch reached (its local replicas' pipelines)."""
    values = np.concatenate([np.ravel(t.numpy())
                             for t in self.strategy.experimental_local_results(position)])
    count = self.num_input_pipelines
    pipelines, values = (values % count, values // count) if count > 1 else (0 * values, values)
    for index in np.unique(pipelines):
      self._positions[index] = values[pipelines == index].max()
    self.data_position.assign(self._positions)

  def _all_positions(self) -> np.ndarray:
    """Every pipeline's position: this client's own, the others' gathered from their clients
    (MultiWorkerMirroredStrategy: a collective, so every client calls it at the same step)."""
    if len(self._local_pipelines) == self.num_input_pipelines:
      return self._positions
    mask = np.zeros([self.num_input_pipelines], bool)
    mask[self._local_pipelines] = True
    mine = tf.constant(np.where(mask, self._positions, 0)[None])  # positions are >= 0
    value = self.strategy.experimental_distribute_values_from_function(lambda _: mine)
    return self.strategy.gather(value, axis=0).numpy().max(axis=0)

  def save(self, step: int) -> None:
    """Checkpoints model, optimizer, step and every input pipeline's data position."""
    self._positions = np.asarray(self._all_positions(), np.int64).copy()
    self.data_position.assign(self._positions)
    if self._is_chief:
      publish.save_checkpoint(self.manager, step)  # a full disk: DiskFullError, old ones kept
      return
    tf.train.CheckpointManager(self.checkpoint, self._scratch_dir, max_to_keep=1).save(
        checkpoint_number=step)
    tf.io.gfile.rmtree(self._scratch_dir)

  def _staged_forward(self, task: HostStagedTask) -> Callable:
    """The forward pass of a HostStagedTask with its device parts XLA-compiled (a gradient tape
    around it differentiates through them; their gradients are compiled too)."""
    @functools.partial(tf.function, jit_compile=True, autograph=False)
    def device_first(batch):
      return task.device_first(self.model, batch, True)

    @functools.partial(tf.function, jit_compile=True, autograph=False)
    def device_second(batch, first, host):
      return task.device_second(self.model, batch, first, host, True)

    def forward(batch):
      first = device_first(batch)
      return device_second(batch, first, task.host(self.model, batch, first))
    return forward

  def _compute_grads(self, batch):
    with tf.GradientTape() as tape:
      per_example_loss, metrics = self._forward(batch)
      loss = tf.reduce_sum(per_example_loss) / self.global_batch_size
      scaled = loss
      if hasattr(self.optimizer, "get_scaled_loss"):
        scaled = self.optimizer.get_scaled_loss(loss)
    grads = tape.gradient(scaled, self.model.trainable_variables)
    return per_example_loss, metrics, grads

  def _replica_step(self, batch):
    return self._apply_fn(*self._grads_fn(batch))

  def _apply(self, per_example_loss, metrics, grads):
    variables = self.model.trainable_variables
    if hasattr(self.optimizer, "get_unscaled_gradients"):
      grads = self.optimizer.get_unscaled_gradients(grads)
    pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
    if not pairs:
      raise ValueError(f"[{self.name}] No trainable variable receives a gradient from the loss "
                       f"(is every trained part frozen, or is the gradient cut?).")
    # Sum across replicas first, then clip the global norm of the summed gradient, so the
    # update is the same for any number of replicas (clipping per replica would not be).
    summed = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, [tf.convert_to_tensor(g) for g, _ in pairs])
    grads, norm = tf.clip_by_global_norm(summed, self.clip_norm)
    self.optimizer.apply_gradients(zip(grads, [v for _, v in pairs]),
                                   experimental_aggregate_gradients=False)
    out = {"loss": (tf.reduce_sum(per_example_loss), tf.cast(tf.size(per_example_loss), tf.float32)),
           "grad_norm": (norm / self.strategy.num_replicas_in_sync,
                         tf.constant(1.0) / self.strategy.num_replicas_in_sync)}
    out.update(metrics)
    return out

  def _distributed_step(self, batch):
    per_replica = self.strategy.run(self._replica_fn, args=(batch,))
    return tf.nest.map_structure(
        lambda t: self.strategy.reduce(tf.distribute.ReduceOp.SUM, t, axis=None), per_replica)

  def train(self, make_dataset: Callable[[int], tf.data.Dataset], num_steps: int,
            hooks: Optional[List[Callable[[int], bool]]] = None,
            extra_scalars: Optional[Callable[[int], Dict[str, float]]] = None,
            on_resume: Optional[Callable[[int], None]] = None) -> Dict[str, float]:
    """Trains until `num_steps`. `make_dataset(data_position, shard)` builds one input
    pipeline's batches (`shard`: an InputShard) from that pipeline's position; a hook returning
    True after a step asks for the input to be rebuilt (e.g. new index). A step's checkpoint is
    written before its hooks run, so a run stopped in between restores a step whose hooks did
    not finish: `on_resume(step)` runs after a restore, before the input is built, to finish
    them.
    Returns the last step's scalars, its progress line and `start_step` (0 unless it resumed),
    so a caller that times the call knows which steps the time covers."""
    hooks = hooks or []
    start = self.restore(num_steps)
    if start < num_steps:
      self._create_optimizer_state()
    if start and on_resume is not None:
      on_resume(start)
    # TensorBoard: the chief's (the other workers of a multi-worker job only log their lines).
    summaries = os.path.join(self.model_dir, "summaries", self.name) if self._is_chief else None
    reporter = ProgressReporter(num_steps, self.global_batch_size, self.log_every, summaries,
                                self.name, line_keys=self.line_keys)
    reporter.start(start)
    last = {}
    iterator = None
    while int(self.step.numpy()) < num_steps:
      if iterator is None:
        dataset = self._distribute(make_dataset)
        if self.checks_inputs:
          check_device_inputs(self.input_element_spec, f"[{self.name}] The input dataset",
                              host_keys=("data_position",))
        iterator = iter(dataset)
      try:
        batch = next(iterator)
      except StopIteration:
        raise RuntimeError(f"Input ran out at step {int(self.step.numpy())}; "
                           "the dataset must repeat.")
      position = batch.pop("data_position")
      sums = self._train_step(batch)
      step = int(self.step.assign_add(1).numpy())
      self._advance(position)
      scalars = {k: float(s.numpy()) / max(float(c.numpy() if hasattr(c, "numpy") else c), 1e-9)
                 for k, (s, c) in sums.items()}
      self._check_finite(step, scalars)
      if extra_scalars:
        scalars.update(extra_scalars(step))
      scalars["learning_rate"] = float(self._learning_rate(step))
      reporter.update(step, scalars)
      last = scalars
      if step % self.checkpoint_every == 0 or step == num_steps:
        self.save(step)
      rebuild = False
      for hook in hooks:
        rebuild = bool(hook(step)) or rebuild
      if rebuild:
        iterator = None
    # Unique temporary name: jobs that share a finished stage (e.g. one ICT run) all rewrite it.
    atomic.write_json(os.path.join(self.model_dir, DONE_MARKER),
                      {"step": int(self.step.numpy())}, indent=None, sort_keys=False, unique=True)
    last["progress_line"] = reporter.last_line
    last["start_step"] = start
    return last

  def _check_finite(self, step: int, scalars: Dict[str, float]) -> None:
    """Stops the run (NonFiniteLossError) at a step whose loss or gradient global norm is NaN
    or inf, before its checkpoint and hooks: a non-finite gradient with a finite loss (an
    overflow) has already made the weights NaN, and saving them would replace the last good
    checkpoint and export."""
    loss, norm = scalars["loss"], scalars.get("grad_norm", 0.0)
    if math.isfinite(loss) and (math.isfinite(norm) or not self._checks_grad_norm):
      return
    what = "loss" if not math.isfinite(loss) else "gradient norm"
    message = (f"[{self.name}] Non-finite {what} at step {step} (loss {loss}, gradient norm "
               f"{norm}): training stopped; the last good checkpoint "
               f"({self.manager.latest_checkpoint}) is kept and nothing of step {step} was "
               f"written. Resume from it with a lower learning rate or fix the input.")
    logging.error("%s", message)
    raise NonFiniteLossError(message)

  def _learning_rate(self, step):
    lr = self.optimizer.learning_rate
    return lr(step) if callable(lr) else lr
