"""One writer per work dir: an advisory lock (`fcntl.flock`) on `<dir>/.lock`.

Every stage that writes (corpus build, annotation, ICT, reader warm-up, REALM, fine-tuning,
export, and the main job around them) holds the lock of the folder it writes while it runs,
through `writer_lock`, which is re-entrant within a process: the main job's lock on its work dir
covers the stages it runs. A second writer on the same folder is refused before it
writes anything, with one line naming the holder, read from the lock file:

    <dir> is in use by pid 1234 (python -m realm_tf.launch.pretrain ..., since 2026-01-01T12:00:00Z
    on host-a)

The kernel drops a `flock` when its holder exits, however it exits (kill -9 included), so a
lock file left behind by a dead process never blocks the next run: the file stays, the lock
does not; the next holder rewrites its contents.

A refused run leaves nothing: when the block `hold` guards raises (bad input found after the
lock was taken, e.g. a malformed question line under `--strict`) and the run wrote nothing
beside the lock file, the lock file it created and every folder it created are removed, so the
folder is as it was (absent if it was absent). A lock file that was there before stays. Removing
a lock file is safe because `acquire` checks, once it holds the `flock`, that the path still
names the file it locked, and starts again if a refused run removed it in between.

Readers (`refresh_index`, `evaluate`, `watch_recall`, the model server) do not take the lock:
they read published outputs while a trainer runs. Folders on object stores (gs://, s3://) have
no `flock`; the lock is skipped there (logged), as it is on the non-chief workers of a
multi-worker job, which share the chief's work dir by design (`chief.is_chief_process`).
"""
import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import time
from typing import Dict, Iterator, Optional

from absl import logging

from realm_tf.io import chief
from realm_tf.io import paths

LOCK_FILE = ".lock"
# How long a refused process waits for a new holder to finish writing its name into the file.
_HOLDER_WAIT_S = 2.0


class WorkDirBusyError(RuntimeError):
  """Another live process holds the work dir's lock; the message names it."""


def holder_info(command: Optional[str] = None) -> Dict[str, object]:
  """What the lock file records about this process: pid, host, command line, start time."""
  return {"pid": os.getpid(), "host": socket.gethostname(),
          "command": command or " ".join([os.path.basename(sys.executable)] + sys.argv),
          "since": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def read_holder(directory: str) -> Optional[Dict[str, object]]:
  """The holder recorded in `<directory>/.lock` (the last one: it may be dead), or None."""
  try:
    with open(os.path.join(directory, LOCK_FILE), encoding="utf-8") as f:
      info = json.loads(f.read() or "null")
  except (OSError, ValueError):
    return None
  return info if isinstance(info, dict) else None


def _alive_here(info: Dict[str, object]) -> bool:
  """Whether the recorded pid is a live process on this host (other hosts: assumed live)."""
  if info.get("host") != socket.gethostname():
    return True
  try:
    os.kill(int(info.get("pid", -1)), 0)
  except (OSError, ValueError, TypeError, OverflowError) as e:
    return isinstance(e, PermissionError)
  return True


def describe(directory: str, info: Optional[Dict[str, object]]) -> str:
  """The refusal's one line for `directory` held by `info` (from the lock file)."""
  if not info:
    return f"{directory} is in use by another process (its lock file {LOCK_FILE} names none)"
  where = f" on {info['host']}" if info.get("host") != socket.gethostname() else ""
  return (f"{directory} is in use by pid {info.get('pid')} ({info.get('command')}, since "
          f"{info.get('since')}{where})")


class WorkDirLock:
  """The lock on one folder, held from `acquire()` to `release()` (or the process's end)."""

  def __init__(self, directory: str, command: Optional[str] = None):
    self.directory = directory
    self.command = command
    self._file = None
    # What this holder created, for `discard_if_unused`: the folders (outermost first), whether
    # the lock file, and the folder's entries when the lock was taken.
    self._created_dirs = []
    self._created_file = False
    self._entries_before = None

  @property
  def held(self) -> bool:
    """Whether this object holds the lock now."""
    return self._file is not None

  def acquire(self) -> "WorkDirLock":
    """Takes the lock or raises WorkDirBusyError naming the live holder. Creates the folder
    (and the lock file) if need be; writes nothing else."""
    if paths.is_remote(self.directory):
      logging.info("No work-dir lock on %s (object stores have no flock): run one writer.",
                   self.directory)
      return self
    path = os.path.join(self.directory, LOCK_FILE)
    while True:
      created = _missing_dirs(self.directory)
      os.makedirs(self.directory, exist_ok=True)
      created_file = not os.path.exists(path)
      f = open(path, "a+", encoding="utf-8")  # pylint: disable=consider-using-with
      try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError as e:
        f.close()
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
          raise
        raise WorkDirBusyError(describe(self.directory, self._live_holder())) from None
      if _same_file(f, path):
        break
      # A refused holder removed the file (and maybe the folder) after we opened it: the lock
      # we hold is on a file no one else will open. Start again on the path as it is now.
      f.close()
    self._created_dirs, self._created_file = created, created_file
    self._entries_before = set(os.listdir(self.directory)) - {LOCK_FILE}
    f.seek(0)
    f.truncate()
    f.write(json.dumps(holder_info(self.command), sort_keys=True))
    f.flush()
    os.fsync(f.fileno())
    self._file = f
    logging.info("Holding the work-dir lock %s.", path)
    return self

  def _live_holder(self) -> Optional[Dict[str, object]]:
    """The holder named in the file; a new holder may not have replaced a dead one's name yet,
    so a dead or missing name is read again for a moment."""
    deadline = time.monotonic() + _HOLDER_WAIT_S
    info = read_holder(self.directory)
    while (not info or not _alive_here(info)) and time.monotonic() < deadline:
      time.sleep(0.05)
      info = read_holder(self.directory)
    return info

  def discard_if_unused(self) -> bool:
    """For a run refused after taking the lock: if the folder holds nothing but what it held
    when the lock was taken, removes the lock file (if this holder created it) and the folders
    this holder created (innermost first, each only if empty), then drops the lock. Returns
    whether the folder is as it was; otherwise nothing is removed and the lock is still held."""
    if self._file is None:
      return False
    try:
      unused = set(os.listdir(self.directory)) - {LOCK_FILE} == self._entries_before
    except OSError:
      return False
    if not unused:
      return False
    if self._created_file:
      try:
        os.unlink(os.path.join(self.directory, LOCK_FILE))  # while holding it: see module doc
      except OSError as e:
        logging.warning("Could not remove the lock file of a refused run: %s", e)
    self.release()
    for directory in reversed(self._created_dirs):
      try:
        os.rmdir(directory)
      except OSError:
        break  # not empty (another process wrote there) or gone: leave it and its parents
    return True

  def release(self) -> None:
    """Drops the lock (the file stays: the next holder rewrites it)."""
    if self._file is not None:
      fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
      self._file.close()
      self._file = None


@contextlib.contextmanager
def hold(directory: str, command: Optional[str] = None) -> Iterator[WorkDirLock]:
  """`with hold(dir):` the block runs holding `dir`'s lock (WorkDirBusyError if another live
  process holds it). If the block raises having written nothing in `dir`, the lock file and the
  folders the lock created are removed (`WorkDirLock.discard_if_unused`)."""
  lock = WorkDirLock(directory, command).acquire()
  try:
    yield lock
  except BaseException:
    lock.discard_if_unused()  # a refused run leaves the folder as it was
    raise
  finally:
    lock.release()


def _missing_dirs(directory: str):
  """The folders `os.makedirs(directory)` would create, outermost first."""
  missing = []
  path = os.path.abspath(directory)
  while not os.path.isdir(path):
    missing.append(path)
    parent = os.path.dirname(path)
    if parent == path:
      break
    path = parent
  return missing[::-1]


def _same_file(f, path: str) -> bool:
  """Whether `path` still names the open file `f` (not removed or replaced since it was opened)."""
  try:
    now = os.stat(path)
  except OSError:
    return False
  held = os.fstat(f.fileno())
  return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


# The folders this process holds a writer lock on: {key: [lock, depth]} (see `writer_lock`).
_HELD: Dict[str, list] = {}


def _held_key(directory: str) -> str:
  """One name per folder, however it is spelt (relative, with `..`, through a link)."""
  return directory if paths.is_remote(directory) else os.path.realpath(directory)


@contextlib.contextmanager
def writer_lock(directory: str) -> Iterator[Optional[WorkDirLock]]:
  """The lock a writing stage holds on `directory` while it runs: taken by the chief process
  only (a multi-worker job's other workers share the chief's folders); None elsewhere.

  Re-entrant within one process: a stage that runs inside a job already holding the folder's
  lock (the main job's ICT stage, say) goes on under that lock, which is dropped when the
  outermost holder's block ends."""
  if not chief.is_chief_process():
    yield None
    return
  key = _held_key(directory)
  if key in _HELD:
    _HELD[key][1] += 1
    try:
      yield _HELD[key][0]
    finally:
      _HELD[key][1] -= 1
    return
  with hold(directory) as lock:
    _HELD[key] = [lock, 1]
    try:
      yield lock
    finally:
      del _HELD[key]
