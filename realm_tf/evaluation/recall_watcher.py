"""The evaluator of the local launcher: zero-shot recall of every new index bundle, as it appears.

`watch(WatchConfig)` polls `<index_dir>` with back-off and measures each new bundle once
(`recall.measure_bundle_recall`: SQuAD-open dev questions against their gold paragraphs when the
corpus is the default one, and own-block recall of masked sentences). Each measurement is a line
of `<work_dir>/recall.jsonl` (the record this module reads back, so a restarted evaluator skips
the bundles it already measured) and TensorBoard scalars under `<model_dir>/summaries/recall`.
It returns once the trainer's `TRAINING_DONE` exists and the bundle of its final export is
measured, the index-refresh job (`wait_pid`) has exited, or `final_wait_seconds` have passed.
The command line is `python -m realm_tf.launch.watch_recall`.
"""
import dataclasses
import json
import os
import time
from typing import Optional, Set, Tuple

from absl import logging

from realm_tf.config_base import ConfigBase
from realm_tf.io import paths
from realm_tf.io import work_dir as work_dir_lib
from realm_tf.io.work_dir import WorkDir

RECALL_LOG = work_dir_lib.RECALL_LOG


@dataclasses.dataclass
class WatchConfig(ConfigBase):
  """Where the evaluator looks, how much it measures, and how it polls and stops.

  Attributes:
    work_dir: the pretrain job's work directory (recall.jsonl is written there).
    model_dir, index_dir, corpus_dir, annotations_dir: default to <work_dir>/realm, /index,
      /corpus and /annotations, the pretrain job's layout.
    eval_queries: queries per measurement.
    squad: also measure SQuAD-question recall (default corpus only).
    min_poll_seconds, max_poll_seconds: the polling back-off (doubles up to the maximum).
    wait_pid: the index-refresh job's process: once training is done and it has exited, no new
      bundle can appear.
    final_wait_seconds: after TRAINING_DONE, how long to wait for the final export's bundle.
  """
  work_dir: str = "runs/local"
  model_dir: Optional[str] = None
  index_dir: Optional[str] = None
  corpus_dir: Optional[str] = None
  annotations_dir: Optional[str] = None
  eval_queries: int = 300
  squad: bool = True
  min_poll_seconds: float = 1.0
  max_poll_seconds: float = 60.0
  wait_pid: Optional[int] = None
  final_wait_seconds: float = 1800.0


def pid_alive(pid: int) -> bool:
  """True while process `pid` exists (a zombie counts until its parent reaps it)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def record_key(bundle_path: str, source_export: str) -> Tuple[str, str]:
  """Identity of one evaluated bundle in `recall.jsonl`: where it is and what built it (a rebuilt
  index directory reuses version numbers, but not with the same export)."""
  return paths.absolute(bundle_path), paths.absolute(source_export) if source_export else ""


def bundle_key(bundle) -> Tuple[str, str]:
  """`record_key` of a loaded bundle."""
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
  return bool(source) and paths.absolute(source) == paths.absolute(final_export)


def _record(bundle, annotations_dir: str, corpus_dir: str, exports_dir: str,
            config: WatchConfig) -> Optional[dict]:
  """Measures `bundle`; its recall.jsonl record, or None when it vanished while being read."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realm_tf.evaluation.recall import measure_bundle_recall  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  try:
    r = measure_bundle_recall(bundle, annotations_dir, corpus_dir, config.eval_queries,
                              config.squad)
  except (bundle_lib.BundleError, tf.errors.NotFoundError) as e:
    # Superseded and pruned while being read: the next bundle will be measured instead.
    logging.warning("Could not evaluate bundle v%d: %s", bundle.version, e)
    return None
  source = str(bundle.manifest.get("source_export", ""))
  from_trainer = os.path.dirname(paths.absolute(source)) == exports_dir if source else False
  r.update(step=bundle.step, source_export=source, from_trainer=from_trainer,
           bundle_path=bundle.path, time=time.time())
  logging.info("Recall of bundle v%d (step %d%s): %s", bundle.version, bundle.step,
               "" if from_trainer else ", warm start", r)
  return r


def watch(config: WatchConfig) -> None:
  """Measures every new index bundle once until training is done and no bundle can follow
  (see the module docstring); resumes from the bundles recall.jsonl already holds."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import embedder_export  # pylint: disable=g-import-not-at-top

  layout = WorkDir(config.work_dir, model_dir=config.model_dir, index_dir=config.index_dir,
                   corpus_dir=config.corpus_dir, annotations_dir=config.annotations_dir)
  model_dir, index_dir = layout.realm, layout.index
  corpus_dir, annotations_dir = layout.corpus, layout.annotations
  log_path = layout.recall_log
  exports_dir = paths.absolute(embedder_export.exports_dir(model_dir))
  writer = tf.summary.create_file_writer(os.path.join(model_dir, "summaries", "recall"))
  seen = load_seen(log_path)
  if seen:
    logging.info("%d bundle(s) already evaluated in %s.", len(seen), log_path)
  sleep, done_since, last = config.min_poll_seconds, None, None
  while True:
    # Read the stop conditions before the bundle: a bundle published just before they turn true
    # is still seen (and evaluated) on this pass.
    refresher_alive = pid_alive(config.wait_pid) if config.wait_pid else None
    finished = embedder_export.training_done(model_dir)
    try:
      bundle = bundle_lib.latest(index_dir)
    except bundle_lib.BundleNotFoundError:
      bundle = None
    if bundle is not None and bundle_key(bundle) not in seen:
      seen.add(bundle_key(bundle))
      r = _record(bundle, annotations_dir, corpus_dir, exports_dir, config)
      if r is None:
        continue
      with tf.io.gfile.GFile(log_path, "a") as f:
        f.write(json.dumps(r) + "\n")
      # TensorBoard x-axis: the REALM training step (0 for the warm-start index).
      with writer.as_default(step=bundle.step if r["from_trainer"] else 0):
        for k, v in r.items():
          if "@" in k:
            tf.summary.scalar(f"recall/{k}", v)
      writer.flush()
      last = bundle
      sleep = config.min_poll_seconds
      continue
    if finished:
      done_since = done_since or time.time()
      final_export = embedder_export.latest_export(model_dir)
      if is_final_bundle(bundle, final_export):
        logging.info("Training done and the bundle of its final export (v%d) is evaluated; "
                     "the evaluator stops.", bundle.version)
        return
      if refresher_alive is False:
        logging.warning("Training done and the index-refresh job (pid %d) has exited without a "
                        "bundle of the final export %s; last evaluated: %s. Stopping.",
                        config.wait_pid, final_export, last)
        return
      if time.time() - done_since > config.final_wait_seconds:
        logging.warning("No bundle of the final export %s %.0fs after TRAINING_DONE; stopping.",
                        final_export, config.final_wait_seconds)
        return
      sleep = min(sleep, 5.0)
    time.sleep(sleep)
    sleep = min(sleep * 2, config.max_poll_seconds)
