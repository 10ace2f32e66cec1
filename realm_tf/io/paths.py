"""Paths on local disks and object stores alike (`gs://`, `s3://`, TF's `ram://`).

Every stage reads and writes through `tf.io.gfile`, so a work dir may live on an object store
(`is_remote`: any path with a scheme). Three things need care beyond that, and live here once:

* Recording a path (`absolute`): `os.path.abspath` turns `gs://b/x` into `<cwd>/gs:/b/x`, a
  local path that names nothing; a URL is kept as given (normalised), a local path made absolute.
* Copying a directory tree (`copy_tree`) file by file, which works between any two filesystems.
* Readers that only take local files (the safetensors reader, numpy memory maps): `local_copy`
  hands them the file itself when it is local and a temporary local copy of a remote one.
* Checkpoints read by prefix (`checkpoint_reader`): `tf.train.load_checkpoint` takes a path that
  passes for a directory as one, and on ram:// a prefix of existing files (`ckpt-2` beside
  `ckpt-2.index`) does.
"""
import contextlib
import os
import posixpath
import shutil
import tempfile
from typing import Iterator

from realm_tf.io.errors import error_text


def is_remote(path: str) -> bool:
  """True for object-store style paths (`gs://`, `s3://`, `ram://`, ...): any path with a scheme.

  Directory renames are not atomic there (`realm_tf.io.publish`), `open()` and `os.path` cannot
  reach them, and memory maps need a local copy (`local_copy`).
  """
  return "://" in os.fspath(path)


def absolute(path: str) -> str:
  """`path` as the project records and compares it: a local path absolute and normalised, a URL
  (`gs://b/x/`) with its scheme kept, `.`/`..` resolved and no trailing slash."""
  path = os.fspath(path)
  if not is_remote(path):
    return os.path.normpath(os.path.abspath(path))
  scheme, rest = path.split("://", 1)
  rest = posixpath.normpath(rest) if rest else rest
  return f"{scheme}://{'' if rest == '.' else rest}"


def copy_tree(src: str, dst: str) -> None:
  """Copies the directory `src` into `dst` (created; files already there are replaced), on any
  TensorFlow filesystems.

  A directory's files are copied after its subdirectories' (bottom-up), so a reader that polls
  `dst` for a top-level file (a SavedModel's `saved_model.pb`) finds the rest in place already.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  for dirpath, _, files in tf.io.gfile.walk(src, topdown=False):
    rel = os.path.relpath(dirpath, src)
    target = dst if rel == "." else os.path.join(dst, rel)
    tf.io.gfile.makedirs(target)
    for path in _existing(dirpath, files):
      tf.io.gfile.copy(path, os.path.join(target, os.path.basename(path)), overwrite=True)


def remove_tree(path: str) -> None:
  """Removes the directory `path` and everything in it (`tf.io.gfile.rmtree`; a NotFoundError
  for a name the listing showed but that is no file, see `_existing`, is no failure once `path`
  is gone)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.io.gfile.rmtree(path)
  except tf.errors.NotFoundError:
    if tf.io.gfile.exists(path):
      raise


def _existing(dirpath: str, names):
  """The paths of `names` in `dirpath` that are files. A listing may name what is none: ram://
  lists `x/assets.extra/f` as `x/assets/.extra` too when `x/assets/` exists."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  for name in names:
    path = os.path.join(dirpath, name)
    if tf.io.gfile.exists(path):
      yield path


def checkpoint_reader(prefix: str):
  """A `CheckpointReader` of the checkpoint at `prefix` (`<dir>/ckpt-2`, `.../variables/variables`)
  on any filesystem; unlike `tf.train.load_checkpoint`, never searched for as a directory."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.compat.v1.train.NewCheckpointReader(prefix)


def verify_checkpoint(prefix: str) -> None:
  """Reads every tensor of the checkpoint at `prefix`, checking each against the CRC32C its
  index records; raises `tf.errors.DataLossError` naming the checkpoint's file and the first
  damaged tensor (flipped bytes, a truncated or missing `.data` shard, an unreadable index).

  A restore reads tensors lazily: a trainer's optimizer slots only when the first step creates
  them, so damage there would surface mid-training. Reading the whole checkpoint once up front
  (one tensor at a time) turns any damage into one clear error before anything trains on it.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    reader = checkpoint_reader(prefix)
    names = sorted(reader.get_variable_to_dtype_map())
  except (tf.errors.OpError, ValueError) as e:
    raise tf.errors.DataLossError(None, None, f"Checkpoint {prefix}.index is damaged or "
                                  f"unreadable: {error_text(e)}") from e
  for name in names:
    try:
      reader.get_tensor(name)
    except (tf.errors.OpError, ValueError) as e:
      files = ", ".join(sorted(os.path.basename(p) for p in tf.io.gfile.glob(prefix + ".data-*")))
      raise tf.errors.DataLossError(
          None, None, f"Checkpoint {prefix} is damaged: tensor {name!r} cannot be read from its "
          f"data file(s) ({files or 'none found'}): {error_text(e)}") from e


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
  """Yields a local file with `path`'s contents, for readers that take local files only.

  A local `path` is yielded as it is. A remote one is copied once into a fresh temporary
  directory (under `tempfile.gettempdir()`), removed when the block ends. A memory map opened on
  the copy inside the block stays valid after it (POSIX keeps an unlinked file's pages for its
  mappings), so `np.load(copy, mmap_mode="r")` may outlive the block.
  """
  if not is_remote(path):
    yield path
    return
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tmp = tempfile.mkdtemp(prefix="realm_tf_copy-")
  try:
    local = os.path.join(tmp, posixpath.basename(path.rstrip("/")))
    tf.io.gfile.copy(path, local)
    yield local
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
