"""Atomic publishing of whole directories (SavedModels, checkpoints, index bundles, exports).

A directory is assembled under a hidden temporary name beside its target
(`<parent>/.tmp-<name>-<hex>`) and published by one rename once it is complete, so a reader (a
model server polling a base path, an index reader, a restarted job) sees either no directory or
the whole one, never half of it; a body that raises leaves the target untouched and the temporary
removed.

The entry points (every writer of the project publishes through them):

* `publish_dir(target)`: publish one named directory, refusing an existing one (the default:
  published versions are immutable) or replacing it (`replace=True`: the old one is moved aside
  and deleted only once the new one is in place, and put back if that rename fails).
* `publish_next_version(parent, commit)`: publish under the next free numbered name
  (`<parent>/00000007`), claiming the number by the rename itself and moving on to the next one
  when a concurrent publisher took it first.
* `move_into_place(src, dst)`: publish a directory assembled elsewhere (a staging folder holding
  several, say) by the same rename.
* `publish_files(temp_dir, output_dir, files, manifest_name, ...)`: shard files moved into a
  dataset directory and its manifest written last (the commit marker readers open it by).

Object stores (`gs://`, `s3://`, TF's `ram://`: any path with a scheme, see `is_remote`) have no
atomic directory rename; there a rename copies object by object. Producers whose readers look for a
commit marker (a file written last, e.g. `manifest.json`) pass `marker=`/use `publish_next_version`
and on object stores write in place, marker last; readers must treat a directory without its
marker as absent. Without a marker the temporary + rename is used everywhere (for readers such as
TF Serving that know no marker, it is the best an object store allows): on an object store the
rename is a copy that writes a directory's files after its subdirectories' (a SavedModel's
`saved_model.pb` last, `paths.copy_tree`), then removes the temporary.
"""
import contextlib
import dataclasses
import json
import os
import socket
import uuid
from typing import Callable, Dict, Iterator, List, Optional

import tensorflow as tf
from absl import logging

from realm_tf.io import paths
from realm_tf.io.atomic import disk_full_as_error
from realm_tf.io.paths import is_remote

TEMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"


class TargetExistsError(FileExistsError):
  """The target directory is already published and the caller asked not to replace it."""


def temp_dir_path(parent: str, tag: str) -> str:
  """A fresh hidden name `<parent>/.tmp-<tag>-<hex8>` for a directory being assembled.

  The leading dot and the random suffix keep it out of listings of published names (which are
  digits or the target's own name) and apart from concurrent writers of the same target.
  """
  return os.path.join(parent, f"{TEMP_PREFIX}{tag}-{uuid.uuid4().hex[:8]}")


OWNER_SUFFIX = ".owner"  # `<temporary>.owner`, beside it: {"host", "pid"} of its writer


def claim_temp_dir(path: str) -> str:
  """Creates the temporary directory `path` and, beside it, `<path>.owner` naming this process,
  so a later run can tell a dead writer's leftovers (`remove_orphaned_temps`) from a live
  writer's. The owner file sits outside the directory, so nothing foreign is published with it;
  `release_temp_dir` removes both. On object stores (where a directory is a name prefix that
  the owner file's name would extend, and a pid names no process of the reader's host) the
  directory is made without an owner."""
  if is_remote(path):
    tf.io.gfile.makedirs(path)
    return path
  tf.io.gfile.makedirs(os.path.dirname(path.rstrip("/")))
  # The owner first: a directory is never there without it.
  with tf.io.gfile.GFile(path.rstrip("/") + OWNER_SUFFIX, "w") as f:
    f.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
  tf.io.gfile.makedirs(path)
  return path


def release_temp_dir(path: str) -> None:
  """Removes a claimed temporary (if still there: it may have been renamed into place) and its
  owner file; logs instead of raising."""
  remove_dir_quietly(path)
  owner = path.rstrip("/") + OWNER_SUFFIX
  try:
    if tf.io.gfile.exists(owner):
      tf.io.gfile.remove(owner)
  except (tf.errors.OpError, OSError) as e:
    logging.warning("Could not remove %s: %s", owner, e)


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # alive, another user's
    return True
  return True


def remove_orphaned_temps(pattern: str) -> List[str]:
  """Removes the temporary directories matching the glob `pattern` whose owner file names a
  process of this host that is gone (killed mid-way; `claim_temp_dir`); returns their paths.

  A directory without an owner file, or owned by a live process or by another host, is left
  alone: it may be a concurrent writer's. A reused pid only keeps a leftover one run longer.
  """
  removed = []
  host = socket.gethostname()
  for path in sorted(tf.io.gfile.glob(pattern)):
    if path.endswith(OWNER_SUFFIX):
      continue
    try:
      with tf.io.gfile.GFile(path.rstrip("/") + OWNER_SUFFIX, "r") as f:
        owner = json.loads(f.read())
      mine, pid = owner.get("host") == host, int(owner["pid"])
    except (tf.errors.OpError, OSError, ValueError, KeyError, TypeError, AttributeError):
      continue
    if mine and not _pid_alive(pid):
      release_temp_dir(path)
      logging.info("Removed %s, left by process %d, which is gone.", path, pid)
      removed.append(path)
  return removed


def _split(target: str):
  """(parent, name) of `target`, ignoring a trailing slash."""
  target = target.rstrip("/")
  return os.path.dirname(target), os.path.basename(target)


def _published(target: str, marker: Optional[str]) -> bool:
  """Whether `target` counts as published: its marker exists, or (without one) the directory."""
  return tf.io.gfile.exists(os.path.join(target, marker) if marker else target)


def remove_dir_quietly(path: str) -> None:
  """Best-effort removal of a temporary or superseded directory; logs instead of raising.

  Used on failure paths, where an error here must not hide the error that caused the cleanup.
  """
  try:
    if tf.io.gfile.exists(path):
      paths.remove_tree(path)
  except (tf.errors.OpError, OSError) as e:
    logging.warning("Could not remove the directory %s: %s", path, e)


def _rename_dir(src: str, dst: str) -> None:
  """Renames directory `src` to a new `dst`: one rename on local disks; on object stores, where a
  directory is a name prefix (and `tf.io.gfile.rename` of one is not supported everywhere: ram://
  moves no files), a copy deepest files first, then `src` removed."""
  if not is_remote(src):
    tf.io.gfile.rename(src, dst, overwrite=False)
    return
  if tf.io.gfile.exists(dst):
    raise tf.errors.AlreadyExistsError(None, None, f"{dst} already exists.")
  paths.copy_tree(src, dst)
  paths.remove_tree(src)


def _rename_refusing(src: str, dst: str) -> None:
  """Renames directory `src` to `dst`; raises TargetExistsError if `dst` exists (or appeared)."""
  try:
    _rename_dir(src, dst)
  except (tf.errors.OpError, OSError) as e:
    if tf.io.gfile.exists(dst):
      raise TargetExistsError(f"{dst} already exists; refusing to replace it.") from e
    raise


def _rename_replacing(src: str, dst: str) -> None:
  """Renames directory `src` to `dst`, moving an existing `dst` aside first and deleting it after.

  If the second rename fails, the old directory is put back, so `dst` is never left missing.
  """
  parent, name = _split(dst)
  old = None
  if tf.io.gfile.exists(dst):
    old = os.path.join(parent, f"{OLD_PREFIX}{name}-{uuid.uuid4().hex[:8]}")
    _rename_dir(dst, old)
  try:
    _rename_dir(src, dst)
  except BaseException:
    if old is not None:
      _rename_dir(old, dst)
    raise
  if old is not None:
    remove_dir_quietly(old)


def move_into_place(src: str, dst: str, *, replace: bool = False) -> None:
  """Publishes the complete directory `src` as `dst` (one rename on local disks, a copy deepest
  files first on object stores): for writers that assemble a directory before publishing it.

  An existing `dst` raises TargetExistsError, or with `replace` is moved aside and deleted once
  `src` is in place (put back if that fails, so `dst` is never missing).
  """
  (_rename_replacing if replace else _rename_refusing)(src, dst)


def publish_files(temp_dir: str, output_dir: str, files: List[str], manifest_name: str,
                  write_manifest: Callable[[], Dict]) -> Dict:
  """Publishes the files `files` of `temp_dir` into `output_dir`, its manifest written last.

  For sharded datasets (a corpus, its annotations) that usually live on object stores, where a
  directory rename is not atomic: readers open `output_dir` through its manifest
  (`manifest_name`), the commit marker on every filesystem. An existing manifest is removed first,
  then the files it listed, so a reader sees the old dataset, none, or the new one, never a mix.
  `write_manifest()` writes the new manifest into `output_dir` and returns it; `temp_dir` is
  released afterwards.
  """
  tf.io.gfile.makedirs(output_dir)
  old_manifest = os.path.join(output_dir, manifest_name)
  if tf.io.gfile.exists(old_manifest):
    with tf.io.gfile.GFile(old_manifest, "r") as f:
      old = json.load(f)
    tf.io.gfile.remove(old_manifest)
    for s in old.get("shards", []):
      old_path = os.path.join(output_dir, s["file"])
      if tf.io.gfile.exists(old_path):
        tf.io.gfile.remove(old_path)
  for name in files:
    tf.io.gfile.rename(os.path.join(temp_dir, name), os.path.join(output_dir, name),
                       overwrite=True)
  manifest = write_manifest()
  release_temp_dir(temp_dir)
  return manifest


@contextlib.contextmanager
def publish_dir(target: str, *, replace: bool = False,
                marker: Optional[str] = None) -> Iterator[str]:
  """Yields a directory to write `target`'s contents into; publishes it when the body returns.

  Local disks: the yielded directory is a fresh temporary beside `target` (created, empty), renamed
  onto `target` when the body returns. If the body (or the rename) raises, the temporary is removed,
  `target` is left as it was, and the exception propagates (running out of disk space as
  `realm_tf.io.atomic.DiskFullError`, naming `target`).

  Object stores with a `marker`: the yielded directory is `target` itself; the body must write
  `marker` (a file name inside the directory) last. If the body raises before the marker exists,
  the partly written `target` is removed.

  Args:
    target: the directory to publish (its parent is created if needed).
    replace: replace an existing `target` (local disks; on object stores only without a marker).
      Otherwise an existing one raises TargetExistsError, before the body runs when it is already
      there, or at the rename when a concurrent publisher got there first.
    marker: the commit-marker file of producers whose readers ignore a directory without it. It
      decides what "exists" means (the marker, not the bare directory) and selects the in-place
      write on object stores.

  Yields:
    The path the body writes into.

  Raises:
    TargetExistsError: `target` is published and `replace` is False.
    ValueError: `replace=True` with a marker on an object store, which would delete the published
      copy before the new one is complete.
  """
  in_place = marker is not None and is_remote(target)
  if in_place and replace:
    raise ValueError(f"Cannot replace {target} in place on an object store: readers would lose "
                     "the published copy before the new one is complete.")
  if not replace and _published(target, marker):
    raise TargetExistsError(f"{target} already exists; refusing to replace it.")
  parent, name = _split(target)
  tf.io.gfile.makedirs(parent)
  if in_place:
    work = target
    tf.io.gfile.makedirs(work)
  else:
    remove_orphaned_temps(os.path.join(parent, f"{TEMP_PREFIX}{name}-*"))
    with disk_full_as_error(target):
      work = claim_temp_dir(temp_dir_path(parent, name))
  try:
    with disk_full_as_error(target):
      yield work
      if not in_place:
        move_into_place(work, target, replace=replace)
        release_temp_dir(work)  # the owner file (the directory is the target now)
  except BaseException:
    # In place, a directory whose marker got written is complete: readers may already use it.
    if not in_place:
      release_temp_dir(work)
    elif not tf.io.gfile.exists(os.path.join(work, marker)):
      remove_dir_quietly(work)
    raise


@dataclasses.dataclass
class Staging:
  """A numbered version being assembled by `publish_next_version`.

  Attributes:
    path: where the body writes the version's contents.
    version: the number it will be published under; final once the `with` block has ended (a
      concurrent publisher may take the tentative one first).
    target: `<parent>/<name(version)>`; final once the `with` block has ended.
  """
  path: str
  version: int
  target: str


def _eight_digits(version: int) -> str:
  """`7` → `00000007`: the default version directory name (sorts as text and as a number)."""
  return f"{int(version):08d}"


@contextlib.contextmanager
def publish_next_version(parent: str, commit: Callable[[str, int], None], *,
                         first: int = 1,
                         name: Callable[[int], str] = _eight_digits) -> Iterator[Staging]:
  """Yields a Staging to write a new version into; publishes it under the next free number.

  The version starts at `first` (pass one more than the newest published version), skipping any
  name already on disk. When the body returns, `commit(directory, version)` writes the commit
  marker (the last file, which may record the version), then:

  * local disks: the temporary directory is renamed to `<parent>/<name(version)>`. The rename is
    the claim: if a concurrent publisher took that number first, the next free number is tried,
    calling `commit` again with it, so two racing publishers never share or skip-overwrite a
    version and a reader never sees one half-written.
  * object stores: the version is written in place (`Staging.path == Staging.target`) and
    `commit` runs once; readers must ignore versions without the marker.

  If the body or `commit` raises, the temporary (or, on object stores, the partly written version)
  is removed and the exception propagates.

  Args:
    parent: the directory holding the versions (created if needed).
    commit: writes the commit marker into the given directory for the given version.
    first: the lowest version number to try.
    name: version number → directory name (default: eight digits).

  Yields:
    The Staging; read its `version` and `target` after the `with` block.
  """
  tf.io.gfile.makedirs(parent)
  version = int(first)
  while tf.io.gfile.exists(os.path.join(parent, name(version))):
    version += 1
  in_place = is_remote(parent)
  target = os.path.join(parent, name(version))
  if in_place:
    staging = Staging(path=target, version=version, target=target)
    tf.io.gfile.makedirs(staging.path)
  else:
    remove_orphaned_temps(os.path.join(parent, f"{TEMP_PREFIX}version-*"))
    with disk_full_as_error(f"{target} (a new version under {parent})"):
      staging = Staging(path=claim_temp_dir(temp_dir_path(parent, "version")), version=version,
                        target=target)
  work = staging.path
  try:
    with disk_full_as_error(f"{staging.target} (a new version under {parent})"):
      yield staging
      while True:
        commit(staging.path, staging.version)
        if in_place:
          break
        try:
          _rename_refusing(staging.path, staging.target)
          break
        except TargetExistsError:
          logging.info("Version %s was taken by another publisher; trying the next.",
                       staging.target)
          while tf.io.gfile.exists(staging.target):
            staging.version += 1
            staging.target = os.path.join(parent, name(staging.version))
  except BaseException:
    if in_place:
      remove_dir_quietly(staging.path)
    else:
      release_temp_dir(work)
    raise
  if not in_place:
    release_temp_dir(work)  # the owner file (the directory is the target now)
    staging.path = staging.target


def remove_checkpoint_temps(directory: str) -> List[str]:
  """Removes the `<prefix>-<n>_temp` directories a save killed mid-way left in a checkpoint
  directory; returns them. Only its one writer (the run's chief, under the work dir's lock)
  calls this, before it saves again, so no live save is touched."""
  removed = sorted(tf.io.gfile.glob(os.path.join(directory, "*_temp")))
  for temp in removed:
    remove_dir_quietly(temp)
    logging.info("Removed %s, left by a checkpoint save that did not finish.", temp)
  return removed


def save_checkpoint(manager, number: int) -> str:
  """`tf.train.CheckpointManager.save(checkpoint_number=number)`, for a full disk too.

  TensorFlow writes a checkpoint's files under `<prefix>-<number>_temp/` and renames them into
  place, so a failed save leaves the previous checkpoints whole; on a full disk it leaves that
  temporary behind, holding space. Here running out of space raises
  `realm_tf.io.atomic.DiskFullError` naming the checkpoint directory, with the temporary removed.
  """
  try:
    with disk_full_as_error(manager.directory):
      return manager.save(checkpoint_number=number)
  except BaseException:
    for temp in tf.io.gfile.glob(os.path.join(manager.directory, f"*-{int(number)}_temp")):
      remove_dir_quietly(temp)
    raise
