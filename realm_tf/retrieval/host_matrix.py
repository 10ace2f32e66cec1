"""An index's float32 [N, D] matrix handed to TensorFlow and ScaNN with at most one copy.

Converting a numpy array (or a memory map of a `.npy` file) with `tf.convert_to_tensor` stages
it twice (2x the matrix while converting), and `tf.Variable(array)` copies it once more. At the
released index's 13.35M x 128 rows (6.8 GB) those copies, not the index, set a build's peak
memory. Three ways in, each measured against the matrix's bytes E:

* `to_tensor(array)`: one anonymous copy (E), filled a slice at a time (a memory map's pages are
  dropped behind each slice) into a buffer the tensor shares through DLPack; a tensor is passed
  through as is. `tf.Variable(to_tensor(x))` then holds that same buffer (a variable adopts an
  eager tensor's buffer), so a searcher's variable costs E, not 3E. (Filling a variable slice by
  slice does not do: reading a variable written by a slice assignment copies it.)
* `mapped_tensor(path)`: no copy at all: a tensor over a copy-on-write memory map of a `.npy`
  file (DLPack), whose resident pages are the file's and can be dropped at any time
  (`dropping_pages`). For files its caller owns and does not rewrite while the tensor lives (a
  private staging file): a mapped file cut short under a reader is an error (SIGBUS).
* `dropping_pages(array)`: while a native build (ScaNN's) reads a mapped matrix, drops its
  resident pages every few milliseconds, so the matrix does not count twice (its pages plus the
  builder's own copy).
"""
import contextlib
import threading
from typing import Iterator, Tuple

import numpy as np
import tensorflow as tf

from realm_tf.io.memory import release_pages

ROWS_PER_SLICE = 65_536
DROP_INTERVAL_S = 0.02
ALIGN_BYTES = 64


def to_tensor(embeddings, rows_per_slice: int = ROWS_PER_SLICE) -> tf.Tensor:
  """float32 [N, D] eager tensor of `embeddings` (array-like, memory map, tensor or variable)
  holding one copy: a tensor or variable is returned as is (a variable's value); anything else is
  copied `rows_per_slice` rows at a time into a new buffer that the tensor then shares (DLPack), a
  memory map's pages dropped behind each slice (peak: the matrix plus one slice)."""
  if isinstance(embeddings, (tf.Tensor, tf.Variable)):
    return tf.cast(tf.convert_to_tensor(embeddings), tf.float32)
  shape = tuple(int(d) for d in np.shape(embeddings))
  if len(shape) != 2 or 0 in shape:
    return tf.convert_to_tensor(np.asarray(embeddings, np.float32))  # the caller's checks refuse it
  size = shape[0] * shape[1]
  raw = np.empty(size + ALIGN_BYTES // 4, np.float32)
  start = (-raw.ctypes.data % ALIGN_BYTES) // 4  # TensorFlow's alignment: shared, not copied
  out = raw[start:start + size].reshape(shape)
  for lo in range(0, shape[0], rows_per_slice):
    out[lo:lo + rows_per_slice] = embeddings[lo:lo + rows_per_slice]
    release_pages(embeddings)
  return tf.experimental.dlpack.from_dlpack(out.__dlpack__())


def mapped_tensor(path: str) -> Tuple[tf.Tensor, np.memmap]:
  """(tensor, memory map) of the float32 [N, D] `.npy` file `path` without a copy: the tensor's
  buffer is a copy-on-write map of the file (only pages written to would be copied; nothing here
  writes). Keep the file unchanged while the tensor lives; deleting it is fine."""
  array = np.load(path, mmap_mode="c", allow_pickle=False)
  if array.dtype != np.float32 or array.ndim != 2:
    raise ValueError(f"{path}: expected a float32 matrix, found {array.dtype} {array.shape}.")
  return tf.experimental.dlpack.from_dlpack(array.__dlpack__()), array


@contextlib.contextmanager
def dropping_pages(array, interval_s: float = DROP_INTERVAL_S) -> Iterator[None]:
  """While the block runs, drops the resident pages of the memory-mapped `array` every
  `interval_s` seconds (a reader just maps them in again); a no-op for other arrays."""
  if not isinstance(array, np.memmap):
    yield
    return
  stop = threading.Event()

  def drop():
    while not stop.wait(interval_s):
      release_pages(array)

  thread = threading.Thread(target=drop, name="drop-pages", daemon=True)
  thread.start()
  try:
    yield
  finally:
    stop.set()
    thread.join()
    release_pages(array)
