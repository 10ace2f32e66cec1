"""Atomic single-file writes, on local disks and object stores alike (through `tf.io.gfile`).

A file is written under a temporary name beside its target (`<path>.tmp`, or `<path>.tmp-<hex>`
where several writers may race) and renamed onto the target only once it is complete. A reader, or
a job restarted after a crash, therefore sees either the old file or the whole new one, never a
half-written one; and a write that fails leaves the old file as it was and removes its temporary.

Publishing a whole directory (a checkpoint, an index bundle, a SavedModel) is the same idea one
level up and lives beside this module in `realm_tf.io.publish` (`publish_dir`, and
`publish_next_version` for numbered versions). The Beam corpus builders publish shard by shard
with a manifest instead (`data/corpus_pipeline.py` says why).
"""
import contextlib
import errno
import json
import uuid
from typing import Any, Iterator, Optional

import tensorflow as tf
from absl import logging

from realm_tf.io.errors import error_text

TEMP_SUFFIX = ".tmp"

# How TensorFlow's file system layer words an ENOSPC (it raises ResourceExhaustedError).
_NO_SPACE = "No space left on device"


class DiskFullError(OSError):
  """A write ran out of disk space (ENOSPC); names the file or directory being written.

  Raised instead of TensorFlow's `ResourceExhaustedError` / Python's `OSError(ENOSPC)` by the
  atomic writers here and in `realm_tf.io.publish`, whose failed writes leave the previously
  published file or directory as it was.
  """

  def __init__(self, path: str, cause: BaseException):
    detail = error_text(cause)
    super().__init__(errno.ENOSPC, f"Disk full (no space left on device) writing {path}: the "
                     f"previous version is kept; free space and run again ({detail[:300]}).")
    self.path = path

  def __str__(self) -> str:
    return self.strerror


def is_disk_full(exc: BaseException) -> bool:
  """True when `exc` is an out-of-space error: OSError ENOSPC, or TensorFlow's wording of it."""
  if isinstance(exc, DiskFullError):
    return True
  if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
    return True
  return isinstance(exc, tf.errors.OpError) and _NO_SPACE in str(exc)


@contextlib.contextmanager
def disk_full_as_error(path: str) -> Iterator[None]:
  """Turns an out-of-space error raised in the body into a `DiskFullError` naming `path`; other
  errors propagate unchanged."""
  try:
    yield
  except DiskFullError:
    raise
  except (OSError, tf.errors.OpError) as e:
    if is_disk_full(e):
      raise DiskFullError(path, e) from e
    raise


def temp_path(path: str, unique: bool = False) -> str:
  """The temporary name `path` is written under before its rename: `<path>.tmp`.

  `unique=True` appends a random tag (`<path>.tmp-1a2b3c4d`) so that concurrent writers of the same
  target never write into each other's temporary file.
  """
  return f"{path}{TEMP_SUFFIX}-{uuid.uuid4().hex[:8]}" if unique else path + TEMP_SUFFIX


@contextlib.contextmanager
def atomic_path(path: str, unique: bool = False) -> Iterator[str]:
  """Yields a temporary path to write `path`'s new contents to; publishes it when the body ends.

  For writers that need a file name rather than a file object (e.g. `tf.io.TFRecordWriter`):
  when the body returns, the temporary is renamed onto `path` (replacing any old file); when the
  body (or the rename) raises, the temporary is removed, `path` is left untouched, and the
  exception propagates (an out-of-space error as a `DiskFullError` naming `path`). The body
  must close what it opened on the temporary before it ends.
  """
  tmp = temp_path(path, unique)
  try:
    with disk_full_as_error(path):
      yield tmp
      tf.io.gfile.rename(tmp, path, overwrite=True)
  except BaseException:
    _remove_quietly(tmp)
    raise


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", unique: bool = False) -> Iterator[Any]:
  """Opens a `tf.io.gfile.GFile` for writing `path` ("w" text or "wb" bytes) atomically.

  The file object writes to a temporary (see `atomic_path`): it is closed and renamed onto `path`
  when the `with` body returns, and closed and removed if the body raises, so a streaming writer
  (e.g. a JSON-lines file written as results arrive) never leaves a partial `path` behind.
  """
  if mode not in ("w", "wb"):
    raise ValueError(f"atomic_open writes a whole new file: mode 'w' or 'wb', not {mode!r}.")
  with atomic_path(path, unique) as tmp:
    with tf.io.gfile.GFile(tmp, mode) as f:
      yield f


def write_text(path: str, text: str, unique: bool = False) -> None:
  """Replaces `path` with `text` atomically; an empty `text` still creates an (empty) file."""
  with atomic_open(path, "w", unique) as f:
    f.write(text)


def write_bytes(path: str, data: bytes, unique: bool = False) -> None:
  """Replaces `path` with `data` atomically."""
  with atomic_open(path, "wb", unique) as f:
    f.write(data)


def write_json(path: str, obj: Any, indent: Optional[int] = 2, sort_keys: bool = True,
               unique: bool = False) -> None:
  """Replaces `path` with `obj` as JSON, atomically.

  The defaults (`indent=2, sort_keys=True`) give the stable, diff-friendly form the project's
  manifests, configs and summaries use; pass `indent=None, sort_keys=False` for the compact form
  (`json.dumps(obj)`). The text is built before the temporary is opened, so an object that is not
  JSON-serialisable raises without touching the disk.
  """
  write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys), unique)


def _remove_quietly(tmp: str) -> None:
  """Best-effort removal of a failed write's temporary; never hides the error that caused it."""
  try:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.remove(tmp)
  except (tf.errors.OpError, OSError) as e:
    logging.warning("Could not remove the temporary file %s: %s", tmp, e)
