"""Which process of a multi-worker job writes its shared outputs, and how the others wait for them.

A job under MultiWorkerMirroredStrategy runs one process per worker, all on the same work dir (a
shared path). Outputs that exist once per job — the corpus and its annotations, settings and
summary files, embedder exports, index bundles, held-out logs — are written by the chief alone
(`is_chief_process`); every other worker waits until the chief's output is there and reads it
(`wait_for_chief`), so no folder is ever written by two processes at once. Training checkpoints
follow TensorFlow's own rule (the chief's, the others' to scratch), which is the same test.
"""
import json
import os
import time
from typing import Callable, Optional, TypeVar

from absl import logging

T = TypeVar("T")
# How long a worker waits for an output of the chief before giving up: long enough for the
# chief to build a Wikipedia-sized corpus alone (about 113 h in one process at 13.35M blocks).
WAIT_FOR_CHIEF_S = 7 * 24 * 3600.0
LOG_EVERY_S = 60.0


class ChiefTimeoutError(RuntimeError):
  """A worker waited longer than its limit for an output only the chief writes."""


def is_chief_process(environ=None) -> bool:
  """Whether this process writes the job's outputs: true unless TF_CONFIG names it a
  non-chief task of a multi-worker cluster (the chief is task "chief", else worker 0). Read
  from the environment, as MultiWorkerMirroredStrategy does, so no TensorFlow is needed."""
  environ = os.environ if environ is None else environ
  try:
    config = json.loads(environ.get("TF_CONFIG") or "{}")
  except ValueError:
    return True
  task = config.get("task") or {}
  cluster = config.get("cluster") or {}
  kind, index = task.get("type"), int(task.get("index", 0) or 0)
  if not kind:
    return True
  if kind == "chief":
    return True
  return kind == "worker" and index == 0 and "chief" not in cluster


def wait_for_chief(ready: Callable[[], Optional[T]], what: str, poll_s: float = 1.0,
                   timeout_s: float = WAIT_FOR_CHIEF_S,
                   sleep: Callable[[float], None] = time.sleep) -> T:
  """Polls `ready()` until it returns something other than None (the chief's output, read) and
  returns that; logs that it waits every LOG_EVERY_S seconds, and raises ChiefTimeoutError
  naming `what` after `timeout_s`."""
  start = next_log = time.monotonic()
  while True:
    value = ready()
    if value is not None:
      return value
    now = time.monotonic()
    if now - start > timeout_s:
      raise ChiefTimeoutError(f"Waited {now - start:.0f} s for the chief to write {what}; "
                              "is the chief (worker 0) still running?")
    if now >= next_log:
      logging.info("Waiting for the chief to write %s (%.0f s so far).", what, now - start)
      next_log = now + LOG_EVERY_S
    sleep(poll_s)
