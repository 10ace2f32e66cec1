"""Tests of server-side batching: config parsing, merging, splitting, fallbacks, padding."""
import os
import threading

import grpc
import numpy as np
import pytest
import tensorflow as tf

from serving import batching
from serving.validation import ServingError

HERE = os.path.dirname(__file__)


def test_shipped_batching_config_parses():
  config = batching.load_batching_config(os.path.join(HERE, "batching.config"))
  assert config == batching.BatchingConfig(max_batch_size=32, batch_timeout_micros=2000,
                                           num_batch_threads=1, max_enqueued_batches=100)


def test_parse_all_fields_and_comments():
  config = batching.parse_batching_config("""
    # comment
    max_batch_size { value: 8 }  # trailing
    batch_timeout_micros { value: 0 }
    num_batch_threads { value: 3 }
    allowed_batch_sizes: 2
    allowed_batch_sizes: 8
    pad_variable_length_inputs: true
  """)
  assert config == batching.BatchingConfig(8, 0, 3, 100, (2, 8))


@pytest.mark.parametrize("text,fragment", [
    ("max_batch_size { value: many }", "max_batch_size must be an integer"),
    ("max_batch_sise { value: 8 }", "unknown batching parameter field 'max_batch_sise'"),
    ("max_batch_size { value: 0 }", "max_batch_size must be >= 1"),
    ("max_batch_size { value: 8 } allowed_batch_sizes: 4", "must equal max_batch_size"),
    ("max_batch_size {", "cannot parse"),
])
def test_parse_errors_name_source(text, fragment):
  with pytest.raises(ValueError) as info:
    batching.parse_batching_config(text, source="my.config")
  assert "my.config" in str(info.value) and fragment in str(info.value)


class CountingModel:
  """A real TF computation (x @ w, row sums) that records the batch sizes it was called with."""

  def __init__(self, gate=None):
    self.w = tf.constant(np.arange(6, dtype=np.float32).reshape(3, 2))
    self.calls = []
    self.gate = gate

  def __call__(self, inputs):
    x = inputs["x"]
    self.calls.append(x.shape[0])
    if self.gate is not None:
      self.gate.wait()
    if np.any(np.isnan(x)):
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "nan in x")
    y = tf.matmul(x, self.w)
    return {"y": y.numpy(), "s": tf.reduce_sum(y, axis=1).numpy()}


def run_concurrently(scheduler, model, requests, key="k"):
  results = [None] * len(requests)

  def call(i):
    try:
      results[i] = scheduler.run(key, model, {"x": requests[i]}, requests[i].shape[0])
    except ServingError as e:
      results[i] = e

  threads = [threading.Thread(target=call, args=(i,)) for i in range(len(requests))]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  return results


def test_concurrent_requests_are_merged_and_split_back():
  gate = threading.Event()
  model = CountingModel(gate)
  scheduler = batching.BatchScheduler(batching.BatchingConfig(
      max_batch_size=16, batch_timeout_micros=200_000, num_batch_threads=1))
  requests = [np.full((1 + i % 3, 3), i, np.float32) for i in range(8)]  # 15 rows in all.
  threading.Timer(0.5, gate.set).start()  # Hold the first call so the rest queue up.
  results = run_concurrently(scheduler, model, requests)
  scheduler.stop()
  w = np.arange(6, dtype=np.float32).reshape(3, 2)
  for x, out in zip(requests, results):
    np.testing.assert_allclose(out["y"], x @ w)
    np.testing.assert_allclose(out["s"], (x @ w).sum(axis=1))
  stats = scheduler.stats
  assert stats.requests == 8 and stats.rows == 15
  assert stats.batches == len(model.calls) < 8
  assert stats.merged_requests >= 2 and max(model.calls) > 3
  assert sum(model.calls) == 15


def test_incompatible_shapes_are_not_merged():
  model = CountingModel()
  scheduler = batching.BatchScheduler(batching.BatchingConfig(
      max_batch_size=8, batch_timeout_micros=100_000, num_batch_threads=1))

  def fn(inputs):
    model.calls.append(inputs["x"].shape)
    return {"y": inputs["x"] * 2}

  requests = [np.ones((1, 3), np.float32), np.ones((1, 4), np.float32),
              np.ones((2, 3), np.float32)]
  results = run_concurrently(scheduler, fn, requests)
  scheduler.stop()
  for x, out in zip(requests, results):
    np.testing.assert_array_equal(out["y"], x * 2)
  assert all(shape[1] in (3, 4) for shape in model.calls)  # Never a ragged concat.
  assert (1, 4) in model.calls


def test_failed_merged_call_is_retried_per_request():
  gate = threading.Event()
  model = CountingModel(gate)
  scheduler = batching.BatchScheduler(batching.BatchingConfig(
      max_batch_size=8, batch_timeout_micros=300_000, num_batch_threads=1))
  requests = [np.ones((1, 3), np.float32) for _ in range(4)]
  requests[2] = np.full((1, 3), np.nan, np.float32)
  gate.set()
  results = run_concurrently(scheduler, model, requests)
  scheduler.stop()
  assert isinstance(results[2], ServingError) and results[2].message == "nan in x"
  for i in (0, 1, 3):
    np.testing.assert_allclose(results[i]["y"], [[6.0, 9.0]])
  assert scheduler.stats.fallbacks >= 1


def test_outputs_that_are_not_batch_major_disable_batching_for_the_key():
  scheduler = batching.BatchScheduler(batching.BatchingConfig(
      max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=1))

  def total(inputs):
    return {"t": np.asarray(inputs["x"].sum())}

  requests = [np.full((1, 3), i, np.float32) for i in range(3)]
  results = run_concurrently(scheduler, total, requests)
  assert [float(r["t"]) for r in results] == [0.0, 3.0, 6.0]
  out = scheduler.run("k", total, {"x": np.ones((2, 3), np.float32)}, 2)
  assert float(out["t"]) == 6.0
  scheduler.stop()


def test_padding_to_allowed_batch_sizes():
  model = CountingModel()
  scheduler = batching.BatchScheduler(batching.BatchingConfig(
      max_batch_size=8, batch_timeout_micros=0, num_batch_threads=1, allowed_batch_sizes=(4, 8)))
  x = np.arange(9, dtype=np.float32).reshape(3, 3)
  out = scheduler.run("k", model, {"x": x}, 3)
  scheduler.stop()
  assert model.calls == [4]
  np.testing.assert_allclose(out["y"], x @ np.arange(6, dtype=np.float32).reshape(3, 2))
  assert scheduler.stats.padded_rows == 1


def test_too_large_and_after_stop():
  scheduler = batching.BatchScheduler(batching.BatchingConfig(max_batch_size=2))
  with pytest.raises(ServingError) as info:
    scheduler.run("k", CountingModel(), {"x": np.ones((3, 3), np.float32)}, 3)
  assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
  scheduler.stop()
  with pytest.raises(ServingError) as info:
    scheduler.run("k", CountingModel(), {"x": np.ones((1, 3), np.float32)}, 1)
  assert info.value.code == grpc.StatusCode.UNAVAILABLE


def test_full_queue_is_unavailable():
  gate = threading.Event()
  model = CountingModel(gate)
  scheduler = batching.BatchScheduler(batching.BatchingConfig(
      max_batch_size=1, batch_timeout_micros=0, num_batch_threads=1, max_enqueued_batches=1))
  x = {"x": np.ones((1, 3), np.float32)}
  first = threading.Thread(target=scheduler.run, args=("k", model, x, 1))
  first.start()
  while not model.calls:  # The only worker is now busy with the first request.
    gate.wait(0.01)
  second = threading.Thread(target=scheduler.run, args=("k", model, x, 1))
  second.start()
  while scheduler._queues.get("k") is None:  # pylint: disable=protected-access
    gate.wait(0.01)
  with pytest.raises(ServingError) as info:
    scheduler.run("k", model, x, 1)
  assert info.value.code == grpc.StatusCode.UNAVAILABLE and "full" in info.value.message
  gate.set()
  first.join()
  second.join()
  scheduler.stop()
  assert model.calls == [1, 1]


def test_request_not_answered_within_its_timeout_is_deadline_exceeded():
  """A request waiting in the queue past its timeout is DEADLINE_EXCEEDED (the server passes
  the client's deadline or --max_request_seconds)."""
  gate = threading.Event()
  model = CountingModel(gate)
  scheduler = batching.BatchScheduler(batching.BatchingConfig(
      max_batch_size=8, batch_timeout_micros=10_000, num_batch_threads=1))
  try:
    with pytest.raises(ServingError) as info:
      scheduler.run("k", model, {"x": np.ones((1, 3), np.float32)}, 1, timeout=0.2)
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED, info.value
    assert "deadline of 0.2 s" in info.value.message
  finally:
    gate.set()
    scheduler.stop()
