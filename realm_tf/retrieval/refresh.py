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
recorded in each bundle, so later full refreshes keep the changes. Adding or removing documents
embeds only the new blocks (with the embedder of the live bundle) and reuses the live bundle's
matrix; run it while no refresh round is under way (declaring a round removes other parts).
"""
import dataclasses
import functools
import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.data import corpus as corpus_lib
from realm_tf.io import paths
from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.retrieval import embed_corpus
from realm_tf.retrieval import embedder_export
from realm_tf.retrieval import refresh_round
from realm_tf.retrieval.document_set import DocumentSet, combine, corpus_fingerprint, read_ids_file
from realm_tf.retrieval.recall_check import (RECALL_K, RecallTooLowError, build_and_check,
                                             sample_query_embeddings)
from realm_tf.retrieval.scann_searcher import ScannConfig
from realm_tf.retrieval.searcher import SearcherError

WORK_SUBDIR = refresh_round.WORK_SUBDIR


class RoundChangedError(RuntimeError):
  """A shard worker's refresh round ended or was replaced while it embedded for it."""


# Errors that mean "this input cannot be indexed": logged and skipped by the watch loop.
INPUT_ERRORS = (embedder_export.ExportError, corpus_lib.CorpusError, RecallTooLowError,
                bundle_lib.BundleError, SearcherError)


@dataclasses.dataclass
class RefreshConfig:
  """Where the job reads and writes, how it parallelises, and its publishing rules."""
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

  def __init__(self, config: RefreshConfig, strategy: Optional[tf.distribute.Strategy] = None,
               sleep: Callable[[float], None] = time.sleep):
    self.config = config
    self.strategy = strategy or tf.distribute.get_strategy()
    self._sleep = sleep
    self._done = set()     # ids of the refresh rounds this (non-chief) worker embedded for
    self._failed = set()   # (export, completeness) keys that failed; retried once they change
    self.last_stats = None
    self.staleness: List[int] = []  # staleness steps of the full refreshes this one published

  @property
  def is_chief(self) -> bool:
    return self.config.shard_index == 0

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
    if self._export_key(export_dir) in self._failed:
      return False
    live = self.live_bundle()
    if live is None:
      return True
    step = int(os.path.basename(export_dir.rstrip("/")))
    if not self._watched(str(live.manifest.get("source_export") or "")):
      return True  # the live bundle came from another run (e.g. the ICT warm start)
    if int(live.manifest.get("step", -1)) < step:
      return True
    try:
      return live.manifest.get("corpus_fingerprint") != self.document_set(live).fingerprint()
    except corpus_lib.CorpusError:
      return True  # let the refresh report the corpus problem

  @staticmethod
  def _export_key(export_dir: str) -> Tuple[str, bool, bool]:
    return (export_dir,
            tf.io.gfile.exists(os.path.join(export_dir, embedder_export.METADATA)),
            tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb")))

  def work_dir(self, embedder, corpus_dir: str) -> str:
    """`<index_dir>/.work/<step>-<export id>/<corpus fingerprint>`: parts of one embedding run."""
    return os.path.join(refresh_round.work_root(self.config.index_dir),
                        f"{embedder.step:08d}-{embed_corpus.export_identity(embedder)}",
                        corpus_fingerprint(corpus_dir))

  # ---- embedding -----------------------------------------------------------------------------

  def _load_embedder(self, export_dir: str, corpus_dirs: Sequence[str] = ()):
    """Validates the export's metadata against `corpus_dirs` (cheap), then loads it."""
    metadata = embedder_export.read_metadata(export_dir)
    for d in corpus_dirs:
      manifest = embed_corpus.load_corpus_manifest(d)
      embedder_export.check_corpus_compatible(metadata, manifest, export_dir,
                                              os.path.join(d, corpus_lib.MANIFEST))
    with self.strategy.scope():
      return embedder_export.load_embedder(export_dir)

  def _embed_dirs(self, embedder, corpus_dirs: Sequence[str], on_part_done=None,
                  keep_alive: Optional[Callable[[], None]] = None
                  ) -> Optional[List[Tuple[np.ndarray, np.ndarray]]]:
    """Embeds this worker's shards of each dir; on the chief, waits and merges all parts.

    `keep_alive` (the chief's round: renewing its export lease) is called after every part this
    worker finishes and at every poll while it waits for the others'."""
    cfg = self.config

    def part_done(shard):
      if keep_alive is not None:
        keep_alive()
      if on_part_done is not None:
        on_part_done(shard)

    for d in corpus_dirs:
      stats = embed_corpus.embed_shards(
          embedder, d, self.work_dir(embedder, d), self.strategy, cfg.num_shards, cfg.shard_index,
          cfg.batch_size, on_part_done=part_done)
      logging.info("%s: embedded shards %s, skipped finished shards %s (%.1f blocks/s).", d,
                   stats.embedded, stats.skipped, stats.blocks_per_second)
      self.last_stats = stats
    if not self.is_chief:
      return None
    merged = []
    for d in corpus_dirs:
      manifest = embed_corpus.load_corpus_manifest(d)
      work = self.work_dir(embedder, d)
      self._wait_for_parts(work, manifest, keep_alive)
      merged.append(embed_corpus.merge_parts(work, manifest, embedder.embedding_dim, d))
    return merged

  def _wait_for_parts(self, work: str, manifest: Dict,
                      keep_alive: Optional[Callable[[], None]] = None) -> None:
    """Waits (back-off) for every part of `work`, however many newer exports appear meanwhile,
    calling `keep_alive` at every poll."""
    delay, start = self.config.poll_min_seconds, time.time()
    while True:
      if keep_alive is not None:
        keep_alive()
      missing = embed_corpus.missing_parts(work, manifest)
      if not missing:
        return
      timeout = self.config.part_wait_timeout
      if timeout is not None and time.time() - start > timeout:
        raise corpus_lib.CorpusError(
            f"Timed out after {timeout:.0f}s waiting for embeddings parts {missing} in {work} "
            "from the other workers.")
      logging.info("Waiting %.0fs for parts %s from other workers in %s.", delay, missing, work)
      self._sleep(delay)
      delay = min(2 * delay, self.config.poll_max_seconds)

  # ---- publishing ----------------------------------------------------------------------------

  def _publish(self, embedder, docs: DocumentSet, block_ids, embeddings,
               extra: Optional[Dict] = None, source_export: Optional[str] = None,
               rnd: Optional[refresh_round.Round] = None) -> bundle_lib.IndexBundle:
    """Builds and checks the searcher and publishes the bundle; with the refresh round `rnd`,
    records and logs its staleness (read last, as it goes live)."""
    cfg = self.config
    if len(block_ids) == 0:
      raise corpus_lib.CorpusError(f"The document set {docs.corpus_dirs} is empty after removing "
                                   f"{len(docs.removed)} block ids; nothing to index.")
    queries = sample_query_embeddings(embedder, docs.corpus_dirs, cfg.recall_queries)
    searcher, recall, k = build_and_check(embeddings, queries, cfg.scann, cfg.min_recall,
                                          cfg.exact_tile_size)
    manifest = {
        "source_export": source_export or embedder.path,
        "step": embedder.step,
        "export_metadata": embedder.metadata,
        "corpus_dir": docs.corpus_dirs[0],
        "corpus_fingerprint": docs.fingerprint(),
        "documents": docs.to_manifest(),
        f"recall_at_{RECALL_K}": recall,
        "recall_k": k,
        "recall_sample_size": int(len(queries)),
        "min_recall": cfg.min_recall,
        "num_workers": cfg.num_shards,
        "num_replicas": self.strategy.num_replicas_in_sync,
    }
    manifest.update(extra or {})
    if rnd is not None:
      manifest["staleness"] = stale = refresh_round.staleness(rnd, cfg.model_dir)
    try:
      bundle = bundle_lib.publish(cfg.index_dir, export_dir=embedder.path, searcher=searcher,
                                  embeddings=embeddings, block_ids=block_ids, manifest=manifest,
                                  removed_block_ids=docs.removed, keep=cfg.keep,
                                  grace_seconds=cfg.grace_seconds)
    finally:
      searcher.release()
    if rnd is not None:
      self.staleness.append(stale["steps"])
      logging.info(
          "Index v%d (export step %d) is live with the trainer at step %d: %d steps stale (%d "
          "behind as its round began + %d during the round's %.0f s; newest export: step %d).",
          bundle.version, stale["export_step"], stale["trainer_step"], stale["steps"],
          stale["lag_at_start"], stale["steps_during_round"], stale["round_seconds"],
          stale["newest_export_step"])
    return bundle

  # ---- refresh rounds ------------------------------------------------------------------------

  def _watched(self, export_dir: str) -> bool:
    """Whether `export_dir` is one of the watched model_dir's exports (leased while in use)."""
    watched = paths.absolute(embedder_export.exports_dir(self.config.model_dir))
    return bool(export_dir) and os.path.dirname(paths.absolute(export_dir)) == watched

  def _next_export(self) -> Optional[str]:
    """The chief's next export: the declared round's while that round is unfinished (a
    restarted chief finishes it) and training goes on, else the newest export (once training is
    done, only its final export is worth indexing)."""
    rnd = refresh_round.read_round(self.config.index_dir)
    if (rnd is not None and not rnd.final and rnd.export
        and not embedder_export.training_done(self.config.model_dir)
        and tf.io.gfile.exists(os.path.join(rnd.export, embedder_export.METADATA))
        and self.needs_refresh(rnd.export)):
      return rnd.export
    return embedder_export.latest_export(self.config.model_dir)

  def _pending_round(self) -> Optional[refresh_round.Round]:
    """A shard worker's next round: the declared one unless it has embedded for it already."""
    rnd = refresh_round.read_round(self.config.index_dir)
    return None if rnd is None or rnd.final or rnd.id in self._done else rnd

  def _follow(self, rnd: refresh_round.Round, on_part_done=None) -> None:
    """A shard worker embeds its shards for `rnd`; stops early (no error) if the round ends."""
    def current() -> bool:
      now = refresh_round.read_round(self.config.index_dir)
      return now is not None and now.id == rnd.id

    def check(shard):
      if on_part_done is not None:
        on_part_done(shard)
      if not current():
        raise RoundChangedError(f"Refresh round {rnd.id} (export step {rnd.step}) ended while "
                                "this worker embedded for it.")

    try:
      embedder = self._load_embedder(rnd.export, rnd.corpus_dirs)
      self._embed_dirs(embedder, rnd.corpus_dirs, check)
    except (RoundChangedError, tf.errors.OpError) + INPUT_ERRORS as e:
      if not isinstance(e, RoundChangedError) and current():
        raise
      logging.info("Refresh round %s ended before this worker finished it (%s).", rnd.id, e)
    self._done.add(rnd.id)

  # ---- entry points --------------------------------------------------------------------------

  def refresh(self, export_dir: str, on_part_done=None) -> Optional[bundle_lib.IndexBundle]:
    """Full refresh with `export_dir`.

    The chief declares (or resumes) the round of `export_dir`, embeds its shards, waits for the
    other workers' parts, publishes and ends the round (its parts removed), and returns the
    bundle; it renews the round's export lease all along (`refresh_round.renew_lease`). Bad
    input (INPUT_ERRORS) ends the round too; any other interruption leaves it to be resumed.
    Another worker embeds its shards for the declared round of `export_dir` and returns None
    (RoundChangedError when no such round is declared).
    """
    cfg = self.config
    if not self.is_chief:
      rnd = refresh_round.read_round(cfg.index_dir)
      if rnd is None or rnd.final or rnd.export != export_dir:
        raise RoundChangedError(f"No refresh round of {export_dir} is declared in "
                                f"{refresh_round.round_path(cfg.index_dir)} (worker 0 declares "
                                "them).")
      return self._follow(rnd, on_part_done)
    live = self.live_bundle()
    docs = self.document_set(live)
    step = int(embedder_export.read_metadata(export_dir)["step"])
    rnd = refresh_round.declare(cfg.index_dir, export_dir, step, docs.corpus_dirs, cfg.model_dir,
                                lease=self._watched(export_dir))
    keep_alive = functools.partial(refresh_round.renew_lease, rnd)
    try:
      embedder = self._load_embedder(export_dir, docs.corpus_dirs)
      block_ids, embeddings = combine(
          self._embed_dirs(embedder, docs.corpus_dirs, on_part_done, keep_alive), docs.removed)
      keep_alive()  # building, checking and publishing the index take a while too
      published = self._publish(embedder, docs, block_ids, embeddings,
                                {"build": "full", "previous_version": live and live.version},
                                rnd=rnd)
    except INPUT_ERRORS:
      refresh_round.finish(cfg.index_dir, rnd)  # nothing worth resuming: the input is bad
      raise
    refresh_round.finish(cfg.index_dir, rnd)
    return published

  def update_documents(self, add_dirs: Sequence[str] = (), remove_ids: Optional[np.ndarray] = None,
                       remove_file: Optional[str] = None) -> Optional[bundle_lib.IndexBundle]:
    """Adds the blocks of `add_dirs` and removes `remove_ids` relative to the live bundle.

    Only the added blocks are embedded (with the live bundle's own embedder); the rest of the
    matrix is reused. Without a live bundle, a full refresh with the newest export is run on the
    corpus plus the additions.
    """
    removed = np.zeros([0], np.int64) if remove_ids is None else np.asarray(remove_ids, np.int64)
    if remove_file:
      removed = np.concatenate([removed, read_ids_file(remove_file)])
    add_dirs = [paths.absolute(d) for d in add_dirs]
    for d in add_dirs:
      embed_corpus.load_corpus_manifest(d)  # clear error for a missing or empty directory
    live = self.live_bundle()
    if live is None:
      export = embedder_export.latest_export(self.config.model_dir)
      if export is None:
        raise embedder_export.ExportError(
            f"No bundle in {self.config.index_dir} and no embedder export under "
            f"{embedder_export.exports_dir(self.config.model_dir)}: nothing to add documents to.")
      docs = DocumentSet([self.document_set(None).corpus_dirs[0]] + add_dirs)
      embedder = self._load_embedder(export, docs.corpus_dirs)
      merged = self._embed_dirs(embedder, docs.corpus_dirs)
      if merged is None:
        return None
      docs.removed = removed
      ids, emb = combine(merged, docs.removed)
      return self._publish(embedder, docs, ids, emb, {"build": "full"})

    docs = self.document_set(live)
    embedder = self._load_embedder(os.path.join(live.path, bundle_lib.QUERY_EMBEDDER), add_dirs)
    parts = [(np.asarray(live.block_ids, np.int64), np.asarray(live.embeddings, np.float32))]
    added = self._embed_dirs(embedder, add_dirs) if add_dirs else []
    if added is None:
      return None
    added_ids = np.concatenate([p[0] for p in added]) if added else np.zeros([0], np.int64)
    # Re-adding a removed block brings it back; removing wins over an earlier addition.
    prior_removed = np.setdiff1d(docs.removed, added_ids)
    all_removed = np.union1d(prior_removed, removed)
    ids, emb = combine(parts + list(added), all_removed)
    replaced = int(np.isin(added_ids, parts[0][0]).sum())
    removed_now = int(np.isin(removed, np.concatenate([parts[0][0], added_ids])).sum())
    new_docs = DocumentSet(docs.corpus_dirs + [d for d in add_dirs if d not in docs.corpus_dirs],
                           all_removed)
    bundle = self._publish(embedder, new_docs, ids, emb, {
        "build": "incremental", "previous_version": live.version,
        "changes": {"base_version": live.version, "added_dirs": list(add_dirs),
                    "added_blocks": int(len(added_ids)) - replaced, "replaced_blocks": replaced,
                    "removed_blocks": removed_now, "remove_file": remove_file}},
        source_export=live.manifest.get("source_export"))
    rnd = refresh_round.read_round(self.config.index_dir)
    refresh_round.remove_parts(self.config.index_dir,
                               rnd.work_prefix() if rnd and not rnd.final else None)
    return bundle

  def run_once(self) -> Optional[bundle_lib.IndexBundle]:
    """The chief indexes the next export (an unfinished round's, else the newest) if the live
    bundle is older and returns the bundle; None when up to date. Another worker waits for a
    declared round, embeds its shards for it and returns None (at once when up to date)."""
    delay = self.config.poll_min_seconds
    while True:
      export = self._next_export() if self.is_chief else \
          embedder_export.latest_export(self.config.model_dir)
      if export is None:
        raise embedder_export.ExportError(
            f"No embedder export under {embedder_export.exports_dir(self.config.model_dir)}.")
      if self.is_chief and self.needs_refresh(export):
        return self.refresh(export)
      rnd = None if self.is_chief else refresh_round.read_round(self.config.index_dir)
      if rnd is not None and not rnd.final:
        if rnd.id not in self._done:
          self._follow(rnd)
        return None
      if not self.needs_refresh(export):
        logging.info("Index in %s is up to date with %s.", self.config.index_dir, export)
        return None
      logging.info("Waiting %.0fs for worker 0 to declare a refresh round.", delay)
      self._sleep(delay)
      delay = min(2 * delay, self.config.poll_max_seconds)

  def _poll(self) -> Tuple[bool, Optional[bundle_lib.IndexBundle]]:
    """One poll of the watch loop → (worked, published bundle or None). INPUT_ERRORS are logged
    and the export (chief) or round (other workers) skipped; the live bundle stays."""
    if not self.is_chief:
      rnd = self._pending_round()
      if rnd is None:
        return False, None
      try:
        self._follow(rnd)
      except INPUT_ERRORS as e:
        logging.error("Not embedding for refresh round %s (%s): %s", rnd.id, rnd.export, e)
        self._done.add(rnd.id)
      return True, None
    export = self._next_export()
    if export is None or not self.needs_refresh(export):
      return False, None
    try:
      return True, self.refresh(export)
    except INPUT_ERRORS as e:
      logging.error("Not publishing an index for %s: %s", export, e)
      self._failed.add(self._export_key(export))
      return False, None

  def _stopped(self, training_done: bool) -> bool:
    """Whether the watch loop ends: training is done and the newest export is indexed (or was
    refused), or (other workers) the chief has stopped."""
    if not training_done:
      return False
    export = embedder_export.latest_export(self.config.model_dir)
    if export is None or not self.needs_refresh(export):
      return True
    rnd = None if self.is_chief else refresh_round.read_round(self.config.index_dir)
    return rnd is not None and rnd.final

  def run(self, max_polls: Optional[int] = None) -> int:
    """The watch loop. Returns the number of bundles published.

    Polls for new exports (the other workers: for declared rounds), sleeping `poll_min_seconds`,
    doubling up to `poll_max_seconds` while nothing changes (a worker whose part of the declared
    round is done polls at `poll_min_seconds`: the next round follows as soon as it ends).
    Stops once TRAINING_DONE exists and the newest export has been handled; the chief then marks
    the round file final so the other workers stop too.
    """
    cfg = self.config
    delay = cfg.poll_min_seconds
    published = polls = 0
    while True:
      done = embedder_export.training_done(cfg.model_dir)  # read first: the final export is older
      worked, bundle = self._poll()
      published += bundle is not None
      polls += 1
      if self._stopped(done) or (max_polls is not None and polls >= max_polls):
        if done and self.is_chief:
          refresh_round.stop(cfg.index_dir)
        logging.info("Training is done; the index refresh job stops." if done else
                     "Reached max_polls; stopping.")
        return published
      rnd = None if self.is_chief else refresh_round.read_round(cfg.index_dir)
      if worked or (rnd is not None and not rnd.final):
        delay = cfg.poll_min_seconds
      if worked:
        continue
      logging.info("Nothing new to index; sleeping %.0fs.", delay)
      self._sleep(delay)
      delay = min(2 * delay, cfg.poll_max_seconds)
