"""Server-side batching: merge concurrent Predict requests into one model call.

TF Serving's `--enable_batching` queues requests per (model, version, signature), closes a batch
when it holds `max_batch_size` rows or `batch_timeout_micros` after its first request arrived, runs
it on one of `num_batch_threads` threads, and splits the outputs back by rows. This module does the
same for the Python server, reading the same `--batching_parameters_file` text proto, so one config
file works for both servers. Batching pays when a model call costs much less per row at batch 32
than at batch 1 (MIPS reads the block-embedding matrix once per call; bigger matmuls use the cores
better); benchmarks/serving_bench.py measures how much.

Requests are merged only when their inputs have the same dtypes and the same shapes apart from
dimension 0; others wait for a later batch. A merged call that fails is retried request by request,
so one bad request cannot fail its neighbours.
"""
import collections
import concurrent.futures
import dataclasses
import re
import threading
import time
from typing import Callable, Dict, Hashable, List, Mapping, Optional, Tuple

import grpc
import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.config_base import ConfigBase
from serving.validation import ServingError

Arrays = Dict[str, np.ndarray]
ModelFn = Callable[[Mapping[str, np.ndarray]], Arrays]

# BatchingParameters fields (tensorflow_serving/servables/tensorflow/session_bundle_config.proto).
_WRAPPED_INT_FIELDS = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                       "num_batch_threads")
_IGNORED_FIELDS = ("thread_pool_name", "enable_large_batch_splitting", "max_execution_batch_size",
                   "batch_padding_policy", "pad_variable_length_inputs",
                   "mixed_priority_batching_policy", "low_priority_max_batch_size",
                   "low_priority_batch_timeout_micros", "low_priority_allowed_batch_sizes",
                   "low_priority_max_enqueued_batches", "enable_priority_queue")


@dataclasses.dataclass(frozen=True)
class BatchingConfig(ConfigBase):
  """Batching parameters (the subset of TF Serving's BatchingParameters this server implements).

  Attributes:
    max_batch_size: most rows in one merged call; also the largest batch one request may send.
    batch_timeout_micros: how long the first request of a batch waits for company.
    num_batch_threads: threads running merged calls in parallel.
    max_enqueued_batches: queue bound, in batches; a full queue answers UNAVAILABLE.
    allowed_batch_sizes: if set, a merged batch is padded (repeating its last row) up to the
      smallest allowed size, so the model only sees a few shapes; the last must equal
      `max_batch_size`.
  """
  max_batch_size: int = 32
  batch_timeout_micros: int = 2000
  num_batch_threads: int = 2
  max_enqueued_batches: int = 100
  allowed_batch_sizes: Tuple[int, ...] = ()

  def __post_init__(self):
    if self.max_batch_size < 1:
      raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
    if self.batch_timeout_micros < 0:
      raise ValueError(f"batch_timeout_micros must be >= 0, got {self.batch_timeout_micros}")
    if self.num_batch_threads < 1:
      raise ValueError(f"num_batch_threads must be >= 1, got {self.num_batch_threads}")
    if self.max_enqueued_batches < 1:
      raise ValueError(f"max_enqueued_batches must be >= 1, got {self.max_enqueued_batches}")
    sizes = self.allowed_batch_sizes
    if sizes:
      if list(sizes) != sorted(set(sizes)) or sizes[0] < 1:
        raise ValueError(f"allowed_batch_sizes must be increasing positive ints, got {sizes}")
      if sizes[-1] != self.max_batch_size:
        raise ValueError(f"the last allowed_batch_sizes entry ({sizes[-1]}) must equal "
                         f"max_batch_size ({self.max_batch_size})")


def parse_batching_config(text: str, source: str = "<string>") -> BatchingConfig:
  """Parses a BatchingParameters text proto (as given to `--batching_parameters_file`).

  Raises:
    ValueError: naming `source` and the field, for unknown fields or bad values.
  """
  text = re.sub(r"#[^\n]*", "", text)
  values = {}
  allowed = []
  pos = 0
  token = re.compile(r"\s*(\w+)\s*(?:\{\s*value\s*:\s*([^\s}]+)\s*\}|:\s*([^\s{}]+))\s*")
  while pos < len(text):
    if not text[pos:].strip():
      break
    m = token.match(text, pos)
    if not m:
      raise ValueError(f"{source}: cannot parse batching parameters near {text[pos:pos + 40]!r}")
    name, wrapped, plain = m.group(1), m.group(2), m.group(3)
    value = wrapped if wrapped is not None else plain
    pos = m.end()
    if name in _WRAPPED_INT_FIELDS:
      try:
        values[name] = int(value)
      except ValueError:
        raise ValueError(f"{source}: field {name} must be an integer, got {value!r}") from None
    elif name == "allowed_batch_sizes":
      try:
        allowed.append(int(value))
      except ValueError:
        raise ValueError(f"{source}: field {name} must be an integer, got {value!r}") from None
    elif name in _IGNORED_FIELDS:
      logging.warning("%s: batching field %s is not implemented by this server; ignored", source,
                      name)
    else:
      raise ValueError(f"{source}: unknown batching parameter field {name!r}")
  try:
    return BatchingConfig(allowed_batch_sizes=tuple(allowed), **values)
  except ValueError as e:
    raise ValueError(f"{source}: {e}") from None


def load_batching_config(path: str) -> BatchingConfig:
  """Reads and parses a `--batching_parameters_file`."""
  with tf.io.gfile.GFile(path) as f:
    return parse_batching_config(f.read(), source=path)


def merge_key(arrays: Mapping[str, np.ndarray]) -> Hashable:
  """Requests with equal keys can be concatenated along dimension 0."""
  return tuple(sorted((k, a.dtype.str, a.shape[1:]) for k, a in arrays.items()))


class _Task:
  __slots__ = ("inputs", "size", "key", "future", "enqueued")

  def __init__(self, inputs, size):
    self.inputs = inputs
    self.size = size
    self.key = merge_key(inputs)
    self.future = concurrent.futures.Future()
    self.enqueued = time.monotonic()


class _Queue:
  __slots__ = ("fn", "tasks", "rows")

  def __init__(self, fn):
    self.fn = fn
    self.tasks = collections.deque()
    self.rows = 0


class _NotSplittable(Exception):
  pass


@dataclasses.dataclass
class BatchStats:
  """Counters describing what the scheduler did (read by tests, logged at shutdown)."""
  requests: int = 0           # requests that went through the scheduler
  batches: int = 0            # model calls made for them
  merged_batches: int = 0     # calls that served two or more requests
  merged_requests: int = 0    # requests served by such a call
  rows: int = 0               # real rows run
  padded_rows: int = 0        # rows added for allowed_batch_sizes
  max_requests_in_batch: int = 0
  fallbacks: int = 0          # merged calls retried request by request

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


class BatchScheduler:
  """Shared batch scheduler: queues per key, `num_batch_threads` workers serving all queues.

  `run(key, fn, inputs, size)` blocks the calling (gRPC handler) thread until its rows come back.
  `fn` maps a dict of numpy arrays with a leading batch dimension to a dict of output arrays whose
  dimension 0 is the same batch; tasks under one key must share `fn`.
  """

  def __init__(self, config: BatchingConfig):
    self.config = config
    self._cv = threading.Condition()
    self._queues: Dict[Hashable, _Queue] = {}
    self._unsplittable = set()
    self._stopping = False
    self._stats = BatchStats()
    self._threads = [
        threading.Thread(target=self._worker, name=f"batch-{i}", daemon=True)
        for i in range(config.num_batch_threads)
    ]
    for t in self._threads:
      t.start()

  @property
  def stats(self) -> BatchStats:
    with self._cv:
      return dataclasses.replace(self._stats)

  def run(self, key: Hashable, fn: ModelFn, inputs: Mapping[str, np.ndarray], size: int,
          timeout: Optional[float] = None) -> Arrays:
    """Runs `fn` on `inputs` (batch `size`), possibly merged with concurrent requests.

    A request not answered within `timeout` seconds (None: no limit) is DEADLINE_EXCEEDED; its
    rows still run with their batch.
    """
    if size > self.config.max_batch_size:
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                         f"batch size {size} is larger than max_batch_size "
                         f"{self.config.max_batch_size}")
    if key in self._unsplittable:
      return fn(inputs)
    task = _Task(dict(inputs), size)
    with self._cv:
      if self._stopping:
        raise ServingError(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
      queue = self._queues.get(key)
      if queue is None:
        queue = self._queues[key] = _Queue(fn)
      limit = self.config.max_enqueued_batches * self.config.max_batch_size
      if queue.rows + size > limit:
        raise ServingError(grpc.StatusCode.UNAVAILABLE,
                           "The batch scheduling queue to which this task was submitted is full")
      queue.tasks.append(task)
      queue.rows += size
      self._stats.requests += 1
      self._cv.notify()
    try:
      return task.future.result(timeout)
    except concurrent.futures.TimeoutError:
      raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                         f"request not answered within its deadline of {timeout:.3g} s "
                         "(the client's deadline or --max_request_seconds)") from None

  def stop(self) -> None:
    """Runs what is queued, then stops the worker threads."""
    with self._cv:
      self._stopping = True
      self._cv.notify_all()
    for t in self._threads:
      t.join()

  # Scheduling (under self._cv).

  def _take_ready(self, now: float):
    """Returns (key, queue, tasks) for the most urgent ready batch, or (None, deadline)."""
    timeout = self.config.batch_timeout_micros / 1e6
    best = None
    deadline = None
    for key, queue in self._queues.items():
      if not queue.tasks:
        continue
      head = queue.tasks[0]
      chosen, rows, full = [], 0, False
      for t in queue.tasks:
        if t.key != head.key:
          continue
        if rows + t.size > self.config.max_batch_size:
          full = True
          break
        chosen.append(t)
        rows += t.size
      full = full or rows == self.config.max_batch_size
      due = head.enqueued + timeout
      if full or due <= now or self._stopping:
        if best is None or head.enqueued < best[2][0].enqueued:
          best = (key, queue, chosen)
      elif deadline is None or due < deadline:
        deadline = due
    if best is None:
      return None, deadline
    key, queue, chosen = best
    ids = set(map(id, chosen))
    queue.tasks = collections.deque(t for t in queue.tasks if id(t) not in ids)
    queue.rows -= sum(t.size for t in chosen)
    if not queue.tasks:
      del self._queues[key]
    return best, None

  def _worker(self):
    while True:
      with self._cv:
        while True:
          batch, deadline = self._take_ready(time.monotonic())
          if batch is not None:
            break
          if self._stopping and not self._queues:
            return
          wait = None if deadline is None else max(0.0, deadline - time.monotonic())
          self._cv.wait(wait)
      self._execute(*batch)

  # Execution (outside the lock).

  def _pad(self, inputs: Arrays, rows: int) -> Tuple[Arrays, int]:
    sizes = self.config.allowed_batch_sizes
    if not sizes:
      return inputs, rows
    target = next(s for s in sizes if s >= rows)
    if target == rows:
      return inputs, rows
    pad = target - rows
    return {k: np.concatenate([a, np.repeat(a[-1:], pad, axis=0)], axis=0)
            for k, a in inputs.items()}, target

  def _execute(self, key, queue: _Queue, tasks: List[_Task]):
    rows = sum(t.size for t in tasks)
    merged = len(tasks) > 1
    try:
      if not merged and not self.config.allowed_batch_sizes:
        outputs, padded = queue.fn(tasks[0].inputs), rows
      else:
        inputs = {name: np.concatenate([t.inputs[name] for t in tasks], axis=0)
                  for name in tasks[0].inputs}
        inputs, padded = self._pad(inputs, rows)
        outputs = queue.fn(inputs)
      for name, value in outputs.items():
        if value.ndim == 0 or value.shape[0] != padded:
          raise _NotSplittable(f"output {name!r} has shape {list(value.shape)}, not batch-major "
                               f"for a batch of {padded}")
    except Exception as e:  # pylint: disable=broad-except
      if isinstance(e, _NotSplittable):
        logging.warning("batching disabled for %s: %s", key, e)
        self._unsplittable.add(key)
      if not merged and not isinstance(e, _NotSplittable):
        self._record(tasks, rows, 0, fallback=False)
        tasks[0].future.set_exception(e)
        return
      self._record(tasks, rows, 0, fallback=True)
      for t in tasks:  # Retry alone, so one bad request cannot fail its neighbours.
        try:
          t.future.set_result(queue.fn(t.inputs))
        except Exception as e2:  # pylint: disable=broad-except
          t.future.set_exception(e2)
      return
    self._record(tasks, rows, padded - rows, fallback=False)
    offset = 0
    for t in tasks:
      t.future.set_result({name: value[offset:offset + t.size] for name, value in outputs.items()})
      offset += t.size

  def _record(self, tasks, rows, padded_rows, fallback):
    with self._cv:
      s = self._stats
      s.batches += 1
      s.rows += rows
      s.padded_rows += padded_rows
      s.fallbacks += int(fallback)
      if len(tasks) > 1:
        s.merged_batches += 1
        s.merged_requests += len(tasks)
      s.max_requests_in_batch = max(s.max_requests_in_batch, len(tasks))
