"""The two rules every stage follows, in one place: one writer per folder, and when its output
is already finished.

- `writing(lock_dir)`: a stage's `run()` holds the writer lock of the folder it writes for as
  long as it runs (`io.work_dir_lock.writer_lock`, re-entrant, so the main job's lock on its
  work dir covers the stages it runs). The lock is the stage's, not its command line's: a stage
  called from Python is refused by a live writer as its CLI is.
- `finished_output(...)`: an output published with a manifest is finished when that manifest
  exists, reads, and records this same work (what "same" compares is the stage's to say). A
  re-run of a stage killed after its manifest's publish then has nothing to do; an output that
  records other work is not finished, and the stage's library refuses to overwrite it unless
  told to. Training stages resume from their newest checkpoint instead (`training.trainer`).
- `finished_or_chiefs(...)`: in a multi-worker job only the chief writes an output the workers
  share; the others wait until the chief's is finished and read it (`io.chief`).
"""
import contextlib
import os
from typing import Callable, ContextManager, Dict, Optional

import tensorflow as tf

from realm_tf.io import chief
from realm_tf.io import work_dir_lock


def writing(lock_dir: Optional[str]) -> ContextManager:
  """`with writing(dir):` the block runs holding `dir`'s writer lock (WorkDirBusyError, naming
  the holder, if another live process holds it). No folder: nothing to lock."""
  return work_dir_lock.writer_lock(lock_dir) if lock_dir else contextlib.nullcontext()


def finished_output(output_dir: str, manifest_name: str, load: Callable[[str], Dict],
                    same: Optional[Callable[[Dict], bool]], overwrite: bool = False
                    ) -> Optional[Dict]:
  """The manifest of `output_dir` when the output is finished: its `manifest_name` exists and
  `load(output_dir)` reads it, and `same(manifest)` says it records this work (an unreadable
  manifest: not finished). `same=None`: any manifest counts, for a caller that has checked the
  output already; one that cannot be read then raises `load`'s one-line error. None otherwise,
  and always with `overwrite`."""
  if overwrite or not tf.io.gfile.exists(os.path.join(output_dir, manifest_name)):
    return None
  if same is None:
    return load(output_dir)
  try:
    manifest = load(output_dir)
    return manifest if same(manifest) else None
  except (ValueError, KeyError):
    return None


def finished_or_chiefs(finished: Callable[[], Optional[Dict]], what: str) -> Optional[Dict]:
  """`finished()` (the output's manifest when it is finished, else None: this process writes
  it), except on a multi-worker job's other workers, which never write a shared output: they
  wait for the chief's (`chief.wait_for_chief`), so it is never None there."""
  done = finished()
  if done is None and not chief.is_chief_process():
    done = chief.wait_for_chief(finished, what)
  return done
