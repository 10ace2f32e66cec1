"""The index-refresh job: watch embedder exports, re-embed the corpus, build, check and publish.

One `IndexRefresher` per worker process. Worker 0 (the chief) declares a refresh round for the
newest export (`refresh_round`: every worker embeds for that export and no other) and

1. validates the export against every corpus manifest of the document set (vocabulary, document
   length) — a bad export is reported by file name and never published;
2. embeds its corpus shards (`embed_corpus.embed_shards`: `strategy.run` across replicas, shard
   `i` on worker `i % num_shards`, finished shards kept and skipped on restart) while the other
   workers embed theirs for the declared round;
3. waits for the other workers' parts, merges them in manifest order, builds the ScaNN searcher,
   measures its recall@10 against exact search on a query sample, refuses to publish below
   `min_recall`, publishes an index bundle (atomic rename, newest `keep` kept; its manifest
   records the bundle's staleness) and frees the searcher's native index (the bundle's copy is
   what readers load); then ends the round: the export's lease released, the parts removed.

A round is finished even when newer exports appear meanwhile (they are skipped: the next round
takes the newest), so a trainer that exports faster than a round takes still gets fresh bundles,
each at most one export interval plus one round's worth of steps stale (`refresh_round`).

The watch loop sleeps with exponential back-off between polls (no busy loop) and stops once
`<model_dir>/TRAINING_DONE` exists and the newest export is indexed (the other workers: once the
chief has stopped).

The document set (`document_set.DocumentSet`) is the base corpus plus directories added with
`update_documents` (later ones override earlier blocks with the same id) minus removed ids; it is
recorded in each bundle, so later full refreshes keep the changes. Each refresh reads the live
bundle and every corpus manifest of its document set once, and hands them down.

The parts, one concern each: this module (a worker's state and one refresh round),
`refresh_watch` (the watch loop), `refresh_embedding` (embedding the document set across the
workers), `refresh_publish` (checking and publishing the index), `refresh_documents` (adding and
removing documents), `refresh_round` (the round file, leases and staleness).
"""
import dataclasses
import functools
import os
import time
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.config_base import ConfigBase
from realm_tf.data import corpus as corpus_lib
from realm_tf.io import chief
from realm_tf.io import paths
from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.retrieval import embedder_export
from realm_tf.retrieval import refresh_documents
from realm_tf.retrieval import refresh_embedding
from realm_tf.retrieval import refresh_round
from realm_tf.retrieval import refresh_watch
from realm_tf.retrieval.document_set import DocumentSet, combine
from realm_tf.retrieval.recall_check import RecallTooLowError
from realm_tf.retrieval.refresh_embedding import CorpusEmbedding, load_checked_embedder
from realm_tf.retrieval.refresh_publish import publish_index
from realm_tf.retrieval.scann_searcher import ScannConfig
from realm_tf.retrieval.searcher import SearcherError

WORK_SUBDIR = refresh_round.WORK_SUBDIR


class RoundChangedError(RuntimeError):
  """A shard worker's refresh round ended or was replaced while it embedded for it."""


# Errors that mean "this input cannot be indexed": logged and skipped by the watch loop.
INPUT_ERRORS = (embedder_export.ExportError, corpus_lib.CorpusError, RecallTooLowError,
                bundle_lib.BundleError, SearcherError)


@dataclasses.dataclass
class RefreshConfig(ConfigBase):
  """Where the job reads and writes, how it parallelises, and its publishing rules."""
  NESTED = {"scann": ScannConfig}
  model_dir: str
  corpus_dir: str
  index_dir: str
  num_shards: int = 1                 # independent workers
  shard_index: int = 0                # this worker; 0 also declares rounds and publishes
  batch_size: int = 32                # blocks per replica per step
  min_recall: float = 0.9             # refuse to publish below this recall@10
  recall_queries: int = 1000          # size of the query sample for the recall check
  keep: int = 3                       # bundle versions kept
  grace_seconds: float = 120.0        # a superseded bundle survives at least this long
  poll_min_seconds: float = 5.0       # back-off between polls: min ...
  poll_max_seconds: float = 300.0     # ... and max
  part_wait_timeout: Optional[float] = None  # worker 0: give up waiting for parts after this
  scann: ScannConfig = ScannConfig()
  exact_tile_size: int = 65536


class IndexRefresher:
  """Runs refreshes for one worker; see the module docstring."""

  INPUT_ERRORS = INPUT_ERRORS

  def __init__(self, config: RefreshConfig, strategy: Optional[tf.distribute.Strategy] = None,
               sleep: Callable[[float], None] = time.sleep):
    self.config = config
    self.strategy = strategy or tf.distribute.get_strategy()
    self.sleep = sleep
    self.embedding = CorpusEmbedding(config, self.strategy, sleep)
    self.done_rounds = set()     # ids of the refresh rounds this (non-chief) worker embedded for
    self.failed_exports = set()  # (export, completeness) keys that failed; retried once changed
    self.staleness: List[int] = []  # staleness steps of the full refreshes this one published

  @property
  def is_chief(self) -> bool:
    """Worker 0 (of a multi-worker trainer, its chief): declares the rounds and publishes."""
    return refresh_embedding.merges(self.config)

  @property
  def last_stats(self):
    """This worker's last corpus directory's embedding stats (`embed_corpus.EmbedStats`)."""
    return self.embedding.last_stats

  # ---- state ---------------------------------------------------------------------------------

  def live_bundle(self) -> Optional[bundle_lib.IndexBundle]:
    """The currently published bundle, or None."""
    try:
      return bundle_lib.latest(self.config.index_dir)
    except bundle_lib.BundleNotFoundError:
      return None

  def ensure_live(self, export_dir: Optional[str]) -> bundle_lib.IndexBundle:
    """The live bundle; when the index has none, the first one, built from `export_dir` (a
    warm start's embedder export). Raises BundleNotFoundError when neither can be had."""
    live = self.live_bundle()
    if live is None and export_dir:
      live = self.refresh(export_dir)
    if live is None:
      raise bundle_lib.BundleNotFoundError(
          f"No index bundle in {self.config.index_dir}"
          + (f" and none was published from {export_dir}." if export_dir else
             ": build one with python -m realm_tf.launch.refresh_index (or run ICT first)."))
    return live

  def document_set(self, live: Optional[bundle_lib.IndexBundle] = None) -> DocumentSet:
    """The live bundle's document set if it was built on --corpus_dir, else just the corpus."""
    live = live if live is not None else self.live_bundle()
    base = paths.absolute(self.config.corpus_dir)
    if live is not None:
      docs = live.manifest.get("documents", {})
      dirs = docs.get("corpus_dirs") or []
      if dirs and dirs[0] == base:
        return DocumentSet(list(dirs), np.asarray(live.removed_block_ids, np.int64))
      logging.warning("Live bundle %s was built on %s, not %s; starting a new document set.",
                      live.path, dirs[:1], base)
    return DocumentSet([base])

  def needs_refresh(self, export_dir: str) -> bool:
    """True unless the live bundle was built with `export_dir`'s step (or a later one) on the
    current corpus (same corpus fingerprint)."""
    return self.refresh_plan(export_dir) is not None

  def refresh_plan(self, export_dir: str
                   ) -> Optional[Tuple[Optional[bundle_lib.IndexBundle], DocumentSet]]:
    """(live bundle, document set) when `export_dir` needs a refresh, read once for it; None
    when the live bundle is up to date (or the export failed before and has not changed)."""
    if self.export_key(export_dir) in self.failed_exports:
      return None
    live = self.live_bundle()
    docs = self.document_set(live)
    if live is None:
      return live, docs
    step = int(os.path.basename(export_dir.rstrip("/")))
    if not self._watched(str(live.manifest.get("source_export") or "")):
      return live, docs  # the live bundle came from another run (e.g. the ICT warm start)
    if int(live.manifest.get("step", -1)) < step:
      return live, docs
    try:
      changed = live.manifest.get("corpus_fingerprint") != docs.fingerprint()
    except corpus_lib.CorpusError:
      changed = True  # let the refresh report the corpus problem
    return (live, docs) if changed else None

  @staticmethod
  def export_key(export_dir: str) -> Tuple[str, bool, bool]:
    """What identifies an export attempt: its path and whether it is complete yet."""
    return (export_dir,
            tf.io.gfile.exists(os.path.join(export_dir, embedder_export.METADATA)),
            tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb")))

  def _watched(self, export_dir: str) -> bool:
    """Whether `export_dir` is one of the watched model_dir's exports (leased while in use)."""
    watched = paths.absolute(embedder_export.exports_dir(self.config.model_dir))
    return bool(export_dir) and os.path.dirname(paths.absolute(export_dir)) == watched

  # ---- the parts -----------------------------------------------------------------------------

  def load_embedder(self, export_dir: str, docs: DocumentSet, corpus_dirs: Sequence[str]):
    """`export_dir`'s embedder, checked against `corpus_dirs` of `docs` first."""
    return load_checked_embedder(export_dir, docs, corpus_dirs, self.strategy)

  def publish(self, embedder, docs: DocumentSet, block_ids, embeddings, extra=None,
              source_export: Optional[str] = None,
              rnd: Optional[refresh_round.Round] = None) -> bundle_lib.IndexBundle:
    """Checks and publishes the index (`refresh_publish.publish_index`); records the staleness
    of a round's bundle."""
    bundle, stale = publish_index(self.config, self.strategy.num_replicas_in_sync, embedder,
                                  docs, block_ids, embeddings, extra, source_export, rnd)
    if stale is not None:
      self.staleness.append(stale["steps"])
    return bundle

  # ---- one refresh round ---------------------------------------------------------------------

  def follow(self, rnd: refresh_round.Round, on_part_done=None) -> None:
    """A shard worker embeds its shards for `rnd`; stops early (no error) if the round ends."""
    index_dir = self.config.index_dir

    def current() -> bool:
      now = refresh_round.read_round(index_dir)
      return now is not None and now.id == rnd.id

    def check(shard):
      if on_part_done is not None:
        on_part_done(shard)
      if not current():
        raise RoundChangedError(f"Refresh round {rnd.id} (export step {rnd.step}) ended while "
                                "this worker embedded for it.")

    try:
      docs = DocumentSet(list(rnd.corpus_dirs))
      embedder = self.load_embedder(rnd.export, docs, docs.corpus_dirs)
      self.embedding.embed(embedder, docs, docs.corpus_dirs, check)
    except (RoundChangedError, tf.errors.OpError) + INPUT_ERRORS as e:
      if not isinstance(e, RoundChangedError) and current():
        raise
      logging.info("Refresh round %s ended before this worker finished it (%s).", rnd.id, e)
    self.done_rounds.add(rnd.id)

  def refresh(self, export_dir: str, on_part_done=None,
              plan: Optional[Tuple[Optional[bundle_lib.IndexBundle], DocumentSet]] = None
              ) -> Optional[bundle_lib.IndexBundle]:
    """Full refresh with `export_dir` (over `plan`, the live bundle and document set that
    `refresh_plan` read for it, when given).

    The chief declares (or resumes) the round of `export_dir`, embeds its shards, waits for the
    other workers' parts, publishes and ends the round (its parts removed), and returns the
    bundle; it renews the round's export lease all along (`refresh_round.renew_lease`). Bad
    input (INPUT_ERRORS) ends the round too; any other interruption leaves it to be resumed.
    Another worker embeds its shards for the declared round of `export_dir` and returns None
    (RoundChangedError when no such round is declared).
    """
    cfg = self.config
    if not self.is_chief and cfg.shard_index == 0:
      return self.follow_chief(export_dir, on_part_done)
    if not self.is_chief:
      rnd = refresh_round.read_round(cfg.index_dir)
      if rnd is None or rnd.final or rnd.export != export_dir:
        raise RoundChangedError(f"No refresh round of {export_dir} is declared in "
                                f"{refresh_round.round_path(cfg.index_dir)} (worker 0 declares "
                                "them).")
      return self.follow(rnd, on_part_done)
    live, docs = plan if plan is not None else (None, None)
    if docs is None:
      live = self.live_bundle()
      docs = self.document_set(live)
    step = int(embedder_export.read_metadata(export_dir)["step"])
    rnd = refresh_round.declare(cfg.index_dir, export_dir, step, docs.corpus_dirs, cfg.model_dir,
                                lease=self._watched(export_dir))
    keep_alive = functools.partial(refresh_round.renew_lease, rnd)
    try:
      embedder = self.load_embedder(export_dir, docs, docs.corpus_dirs)
      block_ids, embeddings = combine(
          self.embedding.embed(embedder, docs, docs.corpus_dirs, on_part_done, keep_alive),
          docs.removed)
      keep_alive()  # building, checking and publishing the index take a while too
      published = self.publish(embedder, docs, block_ids, embeddings,
                               {"build": "full", "previous_version": live and live.version},
                               rnd=rnd)
    except INPUT_ERRORS:
      refresh_round.finish(cfg.index_dir, rnd)  # nothing worth resuming: the input is bad
      raise
    refresh_round.finish(cfg.index_dir, rnd)
    return published

  def bundle_of(self, export_dir: str) -> Optional[bundle_lib.IndexBundle]:
    """The live bundle if it was built from `export_dir`, else None."""
    live = self.live_bundle()
    source = str(live.manifest.get("source_export") or "") if live is not None else ""
    return live if source and paths.absolute(source) == paths.absolute(export_dir) else None

  def follow_chief(self, export_dir: str, on_part_done=None) -> bundle_lib.IndexBundle:
    """A multi-worker trainer's other process in the refresh of `export_dir` (all its
    processes call `refresh` at the same step): waits for the chief's round, embeds its share
    with the chief (one strategy), then waits for the chief's bundle and returns it, so every
    worker searches the same, newest bundle. RecallTooLowError when the round ends without
    one (the chief refused it, and training goes on with the last)."""
    index_dir = self.config.index_dir

    def declared():
      live = self.bundle_of(export_dir)
      if live is not None:  # the chief had nothing left to embed: its bundle is out already
        return live
      rnd = refresh_round.read_round(index_dir)
      return rnd if rnd is not None and not rnd.final and rnd.export == export_dir else None

    where = refresh_round.round_path(index_dir)
    found = chief.wait_for_chief(declared, f"a refresh round of {export_dir} in {where}")
    if isinstance(found, bundle_lib.IndexBundle):
      return found
    self.follow(found, on_part_done)

    def outcome():
      now = refresh_round.read_round(index_dir)  # before the bundle: it is published first
      ended = now is None or now.id != found.id or now.final
      live = self.bundle_of(export_dir)
      if live is None and ended:
        raise RecallTooLowError(f"The chief ended refresh round {found.id} of {export_dir} "
                                "without publishing a bundle.")
      return live

    return chief.wait_for_chief(outcome, f"the index bundle of {export_dir} in {index_dir}")

  # ---- entry points --------------------------------------------------------------------------

  def update_documents(self, add_dirs: Sequence[str] = (), remove_ids: Optional[np.ndarray] = None,
                       remove_file: Optional[str] = None) -> Optional[bundle_lib.IndexBundle]:
    """Adds the blocks of `add_dirs` and removes `remove_ids` relative to the live bundle
    (`refresh_documents.update_documents`)."""
    return refresh_documents.update_documents(self, add_dirs, remove_ids, remove_file)

  def run_once(self) -> Optional[bundle_lib.IndexBundle]:
    """One refresh if one is due (`refresh_watch.run_once`)."""
    return refresh_watch.run_once(self)

  def run(self, max_polls: Optional[int] = None) -> int:
    """The watch loop (`refresh_watch.run`); returns the number of bundles published."""
    return refresh_watch.run(self, max_polls)
