"""Readers of the released evidence files, streaming and checked.

* `blocks.tfr` / `titles.tfr`: uncompressed TFRecord files whose records are raw UTF-8 strings
  (not tf.Examples), row i the same block in both. `record_batches` streams them in batches of
  bytes; TFRecord's length and CRC framing makes a record cut short (or corrupted) an error that
  names the file, the damaged record's index and the records read before it.
* `encoded.ckpt`: a TF1 checkpoint whose one variable `block_emb` is float32 [N, D] in the same
  row order. `embeddings_shape` checks it from the checkpoint's index alone; `copy_embeddings`
  restores it slice by slice (`RestoreV2` with a row range) into a `.npy` file written with plain
  writes, so the process never holds more than one slice of the 6.8 GB matrix.
"""
import os
from typing import Iterator, Tuple

import numpy as np
import tensorflow as tf

from realm_tf.data.corpus import CorpusError
from realm_tf.io import paths
from realm_tf.io.errors import error_text

EMBEDDINGS_VARIABLE = "block_emb"


class ReleaseError(CorpusError):
  """A released file is missing, malformed, or does not fit the other files."""


def record_batches(path: str, batch_size: int = 4096, fn=None) -> Iterator:
  """Yields the raw records of the uncompressed TFRecord file `path` as numpy arrays of bytes,
  `batch_size` at a time, in file order; with `fn` (string batch -> tuple of tensors, mapped in
  tf.data) its outputs as numpy arrays instead. Raises ReleaseError naming the file when it is
  missing, and on one line the damaged record's index and the good records before it when a
  record is cut short or fails its CRC (`<file>: record 250 is cut short or corrupt (records
  0–249 read)`), or the batch's records when `fn` fails on them."""
  if not tf.io.gfile.exists(path):
    raise ReleaseError(f"{path}: no such file.")
  ds = tf.data.TFRecordDataset(path, buffer_size=8 << 20).batch(batch_size)
  if fn is not None:
    ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.prefetch(2)
  done = 0
  it = iter(ds)
  while True:
    try:
      batch = next(it)
    except StopIteration:
      return
    except (tf.errors.DataLossError, tf.errors.OutOfRangeError, tf.errors.InvalidArgumentError) as e:
      raise ReleaseError(_damage_message(path, done, batch_size, e)) from None
    if fn is None:
      batch = batch.numpy()
      done += len(batch)
    else:
      batch = tuple(t.numpy() for t in batch)
      done += len(batch[0])
    yield batch


def _damage_message(path: str, done: int, batch_size: int, error: Exception) -> str:
  """One line for a batch that failed after `done` good records: the raw records after them are
  read one by one (at most a batch) to find the first damaged one; when they all read, the
  failure was `fn`'s on the batch's records."""
  good = done
  try:
    for _ in tf.data.TFRecordDataset(path).skip(done).take(batch_size):
      good += 1
  except (tf.errors.DataLossError, tf.errors.OutOfRangeError,
          tf.errors.InvalidArgumentError) as e:
    read = f"records 0–{good - 1} read" if good else "no record read"
    return (f"{path}: record {good} is cut short or corrupt ({read}; not a complete TFRecord "
            f"file): {error_text(e)}")
  records = f"records {done}–{good - 1}" if good > done else f"the records from record {done}"
  return f"{path}: {records} cannot be processed: {error_text(error)}"


def embeddings_shape(prefix: str, variable: str = EMBEDDINGS_VARIABLE) -> Tuple[int, int]:
  """(rows, width) of `variable` in the TF1 checkpoint `prefix`, read from its index only.

  Raises ReleaseError naming the checkpoint when it is missing, lacks the variable, or holds it
  as anything but a float32 matrix.
  """
  if not tf.io.gfile.exists(prefix + ".index"):
    raise ReleaseError(f"{prefix}: no TF checkpoint there (no {prefix}.index).")
  try:
    reader = paths.checkpoint_reader(prefix)
  except (tf.errors.OpError, ValueError) as e:
    raise ReleaseError(f"{prefix}: not a readable TF checkpoint ({error_text(e)}).") from None
  shapes = reader.get_variable_to_shape_map()
  if variable not in shapes:
    raise ReleaseError(f"{prefix}: the checkpoint has no variable {variable!r} (it holds "
                       f"{sorted(shapes)[:5]}); expected the released encoded.ckpt.")
  shape, dtype = shapes[variable], reader.get_variable_to_dtype_map()[variable]
  if len(shape) != 2 or dtype != tf.float32:
    raise ReleaseError(f"{prefix}: {variable} is {dtype.name} {shape}; expected float32 "
                       "[num_blocks, width].")
  return int(shape[0]), int(shape[1])


def restore_rows(prefix: str, shape: Tuple[int, int], start: int, count: int,
                 variable: str = EMBEDDINGS_VARIABLE) -> np.ndarray:
  """Rows [start, start + count) of the checkpoint's float32 [N, D] `variable`, read alone."""
  spec = f"{shape[0]} {shape[1]} {start},{count}:-"
  (rows,) = tf.raw_ops.RestoreV2(prefix=prefix, tensor_names=[variable],
                                 shape_and_slices=[spec], dtypes=[tf.float32])
  return rows.numpy()


def copy_embeddings(prefix: str, out_path: str, rows_per_slice: int = 65_536,
                    variable: str = EMBEDDINGS_VARIABLE) -> Tuple[int, int]:
  """Writes the checkpoint's `variable` to the `.npy` file `out_path`, `rows_per_slice` rows at a
  time (plain writes, no memory map: nothing but one slice is resident); returns its shape."""
  shape = embeddings_shape(prefix, variable)
  with open(out_path, "wb") as f:
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False,
            "shape": shape})
    for start in range(0, shape[0], rows_per_slice):
      rows = restore_rows(prefix, shape, start, min(rows_per_slice, shape[0] - start), variable)
      f.write(memoryview(np.ascontiguousarray(rows, "<f4")))
      del rows
  if os.path.getsize(out_path) < 4 * shape[0] * shape[1]:
    raise ReleaseError(f"{prefix}: wrote fewer bytes than {variable} {shape} holds.")
  return shape
