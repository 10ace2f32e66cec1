"""The refresh job's watch loop: poll for new embedder exports (the other workers: for declared
refresh rounds), refresh, sleep with exponential back-off while nothing changes, and stop once
training is done and its final export is indexed.

A bad input (the refresher's INPUT_ERRORS) is logged and skipped, and the live bundle stays: the
chief skips the export until it changes, another worker the round.
"""
import os
from typing import Optional, Tuple

import tensorflow as tf
from absl import logging

from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.retrieval import embedder_export
from realm_tf.retrieval import refresh_round


def next_export(refresher) -> Optional[str]:
  """The chief's next export: the declared round's while that round is unfinished (a restarted
  chief finishes it) and training goes on, else the newest export (once training is done, only
  its final export is worth indexing)."""
  config = refresher.config
  rnd = refresh_round.read_round(config.index_dir)
  if (rnd is not None and not rnd.final and rnd.export
      and not embedder_export.training_done(config.model_dir)
      and tf.io.gfile.exists(os.path.join(rnd.export, embedder_export.METADATA))
      and refresher.needs_refresh(rnd.export)):
    return rnd.export
  return embedder_export.latest_export(config.model_dir)


def run_once(refresher) -> Optional[bundle_lib.IndexBundle]:
  """The chief indexes the next export (an unfinished round's, else the newest) if the live
  bundle is older and returns the bundle; None when up to date. Another worker waits for a
  declared round, embeds its shards for it and returns None (at once when up to date)."""
  config = refresher.config
  delay = config.poll_min_seconds
  while True:
    export = next_export(refresher) if refresher.is_chief else \
        embedder_export.latest_export(config.model_dir)
    if export is None:
      raise embedder_export.ExportError(
          f"No embedder export under {embedder_export.exports_dir(config.model_dir)}.")
    plan = refresher.refresh_plan(export) if refresher.is_chief else None
    if plan is not None:
      return refresher.refresh(export, plan=plan)
    rnd = None if refresher.is_chief else refresh_round.read_round(config.index_dir)
    if rnd is not None and not rnd.final:
      if rnd.id not in refresher.done_rounds:
        refresher.follow(rnd)
      return None
    if not refresher.needs_refresh(export):
      logging.info("Index in %s is up to date with %s.", config.index_dir, export)
      return None
    logging.info("Waiting %.0fs for worker 0 to declare a refresh round.", delay)
    refresher.sleep(delay)
    delay = min(2 * delay, config.poll_max_seconds)


def poll(refresher) -> Tuple[bool, Optional[bundle_lib.IndexBundle]]:
  """One poll of the watch loop → (worked, published bundle or None)."""
  if not refresher.is_chief:
    rnd = refresh_round.read_round(refresher.config.index_dir)
    if rnd is None or rnd.final or rnd.id in refresher.done_rounds:
      return False, None
    try:
      refresher.follow(rnd)
    except refresher.INPUT_ERRORS as e:
      logging.error("Not embedding for refresh round %s (%s): %s", rnd.id, rnd.export, e)
      refresher.done_rounds.add(rnd.id)
    return True, None
  export = next_export(refresher)
  plan = None if export is None else refresher.refresh_plan(export)
  if plan is None:
    return False, None
  try:
    return True, refresher.refresh(export, plan=plan)
  except refresher.INPUT_ERRORS as e:
    logging.error("Not publishing an index for %s: %s", export, e)
    refresher.failed_exports.add(refresher.export_key(export))
    return False, None


def stopped(refresher, training_done: bool) -> bool:
  """Whether the watch loop ends: training is done and the newest export is indexed (or was
  refused), or (other workers) the chief has stopped."""
  if not training_done:
    return False
  export = embedder_export.latest_export(refresher.config.model_dir)
  if export is None or not refresher.needs_refresh(export):
    return True
  rnd = None if refresher.is_chief else refresh_round.read_round(refresher.config.index_dir)
  return rnd is not None and rnd.final


def run(refresher, max_polls: Optional[int] = None) -> int:
  """The watch loop; returns the number of bundles published.

  Polls for new exports (the other workers: for declared rounds), sleeping `poll_min_seconds`,
  doubling up to `poll_max_seconds` while nothing changes (a worker whose part of the declared
  round is done polls at `poll_min_seconds`: the next round follows as soon as it ends). Stops
  once TRAINING_DONE exists and the newest export has been handled; the chief then marks the
  round file final so the other workers stop too.
  """
  config = refresher.config
  delay = config.poll_min_seconds
  published = polls = 0
  while True:
    done = embedder_export.training_done(config.model_dir)  # read first: the final export is older
    worked, bundle = poll(refresher)
    published += bundle is not None
    polls += 1
    if stopped(refresher, done) or (max_polls is not None and polls >= max_polls):
      if done and refresher.is_chief:
        refresh_round.stop(config.index_dir)
      logging.info("Training is done; the index refresh job stops." if done else
                   "Reached max_polls; stopping.")
      return published
    rnd = None if refresher.is_chief else refresh_round.read_round(config.index_dir)
    if worked or (rnd is not None and not rnd.final):
      delay = config.poll_min_seconds
    if worked:
      continue
    logging.info("Nothing new to index; sleeping %.0fs.", delay)
    refresher.sleep(delay)
    delay = min(2 * delay, config.poll_max_seconds)
