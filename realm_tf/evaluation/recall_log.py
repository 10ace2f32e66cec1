"""The evaluator's record of measured index bundles (`recall.jsonl`) and its stop rules.

Kept apart from the `watch_recall` command line so it can be imported without defining flags.
"""
import json
import os
from typing import Optional, Set, Tuple

from absl import logging

RECALL_LOG = "recall.jsonl"


def pid_alive(pid: int) -> bool:
  """True while process `pid` exists (a zombie counts until its parent reaps it)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def norm_path(path: str) -> str:
  """Absolute, normalised local path; object-store paths unchanged but for a trailing slash."""
  return os.path.normpath(os.path.abspath(path)) if "://" not in path else path.rstrip("/")


def record_key(bundle_path: str, source_export: str) -> Tuple[str, str]:
  """Identity of one evaluated bundle in `recall.jsonl`: where it is and what built it (a rebuilt
  index directory reuses version numbers, but not with the same export)."""
  return norm_path(bundle_path), norm_path(source_export) if source_export else ""


def bundle_key(bundle) -> Tuple[str, str]:
  return record_key(bundle.path, str(bundle.manifest.get("source_export", "")))


def load_seen(path: str) -> Set[Tuple[str, str]]:
  """The bundles already recorded in `path` (see `record_key`); unreadable lines are skipped."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  seen = set()
  if not tf.io.gfile.exists(path):
    return seen
  with tf.io.gfile.GFile(path, "r") as f:
    for line_no, line in enumerate(f, 1):
      line = line.strip()
      if not line:
        continue
      try:
        r = json.loads(line)
        seen.add(record_key(r["bundle_path"], r["source_export"]))
      except (ValueError, KeyError, TypeError) as e:
        logging.warning("%s:%d: skipping an unreadable recall record (%s).", path, line_no, e)
  return seen


def is_final_bundle(bundle, final_export: Optional[str]) -> bool:
  """True when `bundle` was built from `final_export` (the trainer's newest export)."""
  if bundle is None or final_export is None:
    return False
  source = str(bundle.manifest.get("source_export", ""))
  return bool(source) and norm_path(source) == norm_path(final_export)
