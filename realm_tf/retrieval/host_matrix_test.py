"""Tests for host_matrix: the index matrix enters TensorFlow with one copy at most."""
import os
import time

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.io import memory
from realm_tf.retrieval import host_matrix
from realm_tf.retrieval.brute_force import BruteForceSearcher

ROWS, WIDTH = 131_072, 128  # 64 MB: large enough that a copy stands out of the process's noise
E = ROWS * WIDTH * 4


class _Capsule:
  """Wraps a DLPack capsule for np.from_dlpack."""

  def __init__(self, capsule):
    self.capsule = capsule

  def __dlpack__(self, stream=None):  # pylint: disable=unused-argument
    return self.capsule

  def __dlpack_device__(self):
    return (1, 0)  # CPU


def _address(tensor) -> int:
  """Address of an eager CPU tensor's buffer (no copy: DLPack shares it)."""
  return np.from_dlpack(_Capsule(tf.experimental.dlpack.to_dlpack(tensor))).ctypes.data


def _peak_growth(fn) -> float:
  """The process's peak resident memory while `fn` runs, above its resident size before, in
  copies of the matrix (the kernel's high-water mark, reset first)."""
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM to the current RSS
  before = memory.process_memory()["VmRSS"]
  result = fn()
  return (memory.process_memory()["VmHWM"] - before) / E, result


@pytest.fixture(scope="module")
def npy(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("m") / "emb.npy")
  rng = np.random.default_rng(0)
  with open(path, "wb") as f:  # plain writes: nothing of it resident in this process
    np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                             "shape": (ROWS, WIDTH)})
    for _ in range(ROWS // 16_384):
      f.write(rng.standard_normal((16_384, WIDTH), np.float32).tobytes())
  # Warm-up: TensorFlow's first ops (thread pools, allocator arenas) must not count below.
  small = np.load(path, mmap_mode="r")[:8192]
  warm = BruteForceSearcher(host_matrix.to_tensor(small, rows_per_slice=4096))
  warm.search(tf.constant(small[:2]), tf.constant(1))
  del warm
  return path


def test_to_tensor_of_a_memory_map_holds_one_copy(npy):
  mapped = np.load(npy, mmap_mode="r")
  growth, tensor = _peak_growth(lambda: host_matrix.to_tensor(mapped, rows_per_slice=4096))
  # One copy plus a slice; tf.convert_to_tensor stages the matrix twice (2x) and the mapped pages
  # would add a third.
  assert growth < 1.4, growth
  np.testing.assert_array_equal(tensor.numpy()[[0, 7, ROWS - 1]], mapped[[0, 7, ROWS - 1]])
  same = tf.Variable(tensor, trainable=False)  # a variable adopts the buffer
  assert _address(same.read_value()) == _address(tensor)


def test_brute_force_searcher_holds_one_copy_of_an_array(npy):
  mapped = np.load(npy, mmap_mode="r")
  growth, searcher = _peak_growth(lambda: BruteForceSearcher(mapped))
  # One copy plus one slice of the map's pages (65,536 rows: half the matrix here); was 3x:
  # tf.convert_to_tensor's two copies and the variable's one.
  assert growth < 1 + host_matrix.ROWS_PER_SLICE / ROWS + 0.2, growth
  rows, _ = searcher.search(tf.constant(mapped[[5]]), tf.constant(1))
  assert int(rows.numpy()[0, 0]) == 5


def test_mapped_tensor_is_the_files_pages(npy):
  tensor, mapped = host_matrix.mapped_tensor(npy)
  assert tensor.shape == (ROWS, WIDTH) and tensor.dtype == tf.float32
  assert _address(tensor) == mapped.ctypes.data  # no copy
  searcher = BruteForceSearcher(tensor)
  assert _address(searcher.embeddings.read_value()) == mapped.ctypes.data
  np.testing.assert_array_equal(searcher.embeddings[3].numpy(), np.load(npy)[3])


def test_mapped_tensor_refuses_a_non_float_matrix(tmp_path):
  path = str(tmp_path / "ids.npy")
  np.save(path, np.arange(6, dtype=np.int64).reshape(2, 3))
  with pytest.raises(ValueError, match="ids.npy: expected a float32 matrix"):
    host_matrix.mapped_tensor(path)


def test_dropping_pages_keeps_the_map_from_staying_resident(npy):
  mapped = np.load(npy, mmap_mode="r")

  def read_all():  # an eighth at a time, pausing between (as a native reader drops the GIL)
    total = 0.0
    with host_matrix.dropping_pages(mapped, interval_s=0.005):
      for lo in range(0, ROWS, ROWS // 8):
        total += float(np.asarray(mapped[lo:lo + ROWS // 8]).sum())
        time.sleep(0.05)
    return total

  growth, total = _peak_growth(read_all)
  assert np.isfinite(total)
  assert growth < 0.5, growth  # reading it all without dropping leaves 1x resident
  with host_matrix.dropping_pages(np.zeros([2, 2], np.float32)):  # not mapped: a no-op
    pass
  assert os.path.exists(npy)
