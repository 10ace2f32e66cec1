"""The index-refresh job: watch embedder exports, re-embed the corpus, build, check and publish.

One `IndexRefresher` per worker process. For every new export of the trainer it

1. validates the export against every corpus manifest of the document set (vocabulary, document
   length) — a bad export is reported by file name and never published;
2. embeds this worker's corpus shards (`embed_corpus.embed_shards`: `strategy.run` across replicas,
   shard `i` on worker `i % num_shards`, finished shards kept and skipped on restart);
3. on worker 0 only: waits for the other workers' parts, merges them in manifest order, builds the
   ScaNN searcher, measures its recall@10 against exact search on a query sample, refuses to publish
   below `min_recall`, publishes an index bundle (atomic rename, newest `keep` kept) and frees the
   searcher's native index (the bundle's copy is what readers load).

While a worker embeds with an export of the watched model directory it holds it
(`embedder_export.hold_export`), so the trainer's export pruning leaves it alone.

The watch loop sleeps with exponential back-off between polls (no busy loop) and stops once
`<model_dir>/TRAINING_DONE` exists and the newest export is indexed.

The document set is the base corpus plus directories added with `add_documents` (later ones
override earlier blocks with the same id) minus ids removed with `remove_documents`; it is recorded
in each bundle, so later full refreshes keep the changes. Adding or removing documents embeds only
the new blocks (with the embedder of the live bundle) and reuses the live bundle's matrix.
"""
import contextlib
import dataclasses
import hashlib
import json
import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.data import corpus as corpus_lib
from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.retrieval import embed_corpus
from realm_tf.retrieval import embedder_export
from realm_tf.retrieval.brute_force import exact_top_k_tiled
from realm_tf.retrieval.scann_searcher import ScannConfig, ScannSearcher
from realm_tf.retrieval.searcher import SearcherError, recall_at_k
from realm_tf.text.packing import pack_query

WORK_SUBDIR = ".work"
RECALL_K = 10


class RecallTooLowError(RuntimeError):
  """The searcher's recall@10 against exact search is below the required minimum."""


class SupersededError(RuntimeError):
  """A newer export appeared while this worker waited for the others; the old one is dropped."""


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
  shard_index: int = 0                # this worker; 0 also merges and publishes
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


@dataclasses.dataclass
class DocumentSet:
  """Corpus directories (base first, later ones override by block id) minus removed block ids."""
  corpus_dirs: List[str]
  removed: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros([0], np.int64))

  def fingerprints(self) -> List[str]:
    return [_corpus_fingerprint(d) for d in self.corpus_dirs]

  def fingerprint(self) -> str:
    """The base corpus fingerprint when unchanged, else a hash of all parts and removals."""
    fps = self.fingerprints()
    if len(fps) == 1 and not len(self.removed):
      return fps[0]
    key = json.dumps({"corpora": fps, "removed": hashlib.sha256(
        np.asarray(sorted(self.removed), np.int64).tobytes()).hexdigest()}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]

  def to_manifest(self) -> Dict:
    return {"corpus_dirs": list(self.corpus_dirs), "corpus_fingerprints": self.fingerprints(),
            "num_removed": int(len(self.removed))}


def _corpus_fingerprint(corpus_dir: str) -> str:
  manifest = corpus_lib.load_manifest(corpus_dir)
  return manifest.get("fingerprint") or corpus_lib.corpus_fingerprint(manifest)


def read_ids_file(path: str) -> np.ndarray:
  """Block ids to remove: one integer per line; blank lines and `#` comments ignored."""
  if not tf.io.gfile.exists(path):
    raise corpus_lib.CorpusError(f"Block ids file {path} does not exist.")
  ids = []
  with tf.io.gfile.GFile(path, "r") as f:
    for line_no, line in enumerate(f, 1):
      line = line.split("#", 1)[0].strip()
      if not line:
        continue
      try:
        ids.append(int(line))
      except ValueError as e:
        raise corpus_lib.CorpusError(
            f"{path}:{line_no}: expected one integer block id per line, got {line!r}.") from e
  return np.asarray(ids, np.int64)


def combine(parts: Sequence[Tuple[np.ndarray, np.ndarray]], removed: np.ndarray
            ) -> Tuple[np.ndarray, np.ndarray]:
  """Concatenates (block_ids, embeddings) parts; a later part replaces earlier rows of the same
  block id; rows whose id is in `removed` are dropped. Returns (block_ids, embeddings)."""
  ids, emb = parts[0]
  for new_ids, new_emb in parts[1:]:
    keep = ~np.isin(ids, new_ids)
    ids = np.concatenate([ids[keep], new_ids])
    emb = np.concatenate([np.asarray(emb)[keep], new_emb])
  if len(removed):
    keep = ~np.isin(ids, removed)
    if not keep.all():
      ids, emb = ids[keep], np.asarray(emb)[keep]
  return np.asarray(ids, np.int64), np.asarray(emb, np.float32)


_QUERY_PACKERS = {}


def _query_packer(seq_length: int, cls_id: int, sep_id: int):
  """`pack_query` traced once per process (tracing TF.Text's trimmers takes seconds)."""
  key = (seq_length, cls_id, sep_id)
  if key not in _QUERY_PACKERS:
    _QUERY_PACKERS[key] = tf.function(
        lambda body: pack_query(body, seq_length, cls_id, sep_id), autograph=False,
        input_signature=[tf.RaggedTensorSpec([None, None], tf.int32, ragged_rank=1)])
  return _QUERY_PACKERS[key]


def sample_query_embeddings(embedder, corpus_dirs: Sequence[str], num_queries: int,
                            seed: int = 0) -> np.ndarray:
  """Query-tower embeddings of pseudo-queries (block bodies cut to the query length).

  Drawn with a fixed seed from the document set, so the recall check sees the query tower's
  distribution rather than document embeddings.
  """
  paths = []
  for d in corpus_dirs:
    paths.extend(corpus_lib.shard_paths(d))
  ds = corpus_lib.read_blocks("", paths=paths).map(lambda ex: ex["body_ids"])
  ds = ds.shuffle(10_000, seed=seed).take(num_queries).ragged_batch(256)
  ds = ds.map(_query_packer(embedder.query_seq_length, embedder.cls_id, embedder.sep_id))
  out = [embedder.embed_queries(packed).numpy() for packed in ds]
  return np.concatenate(out).astype(np.float32)


def build_and_check(embeddings: np.ndarray, queries: np.ndarray, scann: ScannConfig,
                    min_recall: float, exact_tile_size: int = 65536):
  """Builds the ScaNN searcher and measures recall@10 vs exact search on `queries`.

  Returns (searcher, recall, k); the caller releases the searcher. Raises RecallTooLowError below
  `min_recall` (the searcher released).
  """
  searcher = ScannSearcher(embeddings, scann)
  k = min(RECALL_K, embeddings.shape[0])
  exact_rows, _ = exact_top_k_tiled(embeddings, queries, k, exact_tile_size)
  approx_rows = searcher.search(tf.constant(queries), tf.constant(k, tf.int32))[0].numpy()
  recall = recall_at_k(approx_rows, exact_rows, k)
  logging.info("ScaNN (%s) recall@%d against exact search on %d queries: %.4f.",
               searcher.config.mode, k, len(queries), recall)
  if recall < min_recall:
    searcher.release()
    raise RecallTooLowError(
        f"ScaNN recall@{k} = {recall:.4f} against exact search on {len(queries)} queries is below "
        f"--min_recall={min_recall}; not publishing (config: {searcher.info()['config']}).")
  return searcher, recall, k


class IndexRefresher:
  """Runs refreshes for one worker; see the module docstring."""

  def __init__(self, config: RefreshConfig, strategy: Optional[tf.distribute.Strategy] = None,
               sleep: Callable[[float], None] = time.sleep):
    self.config = config
    self.strategy = strategy or tf.distribute.get_strategy()
    self._sleep = sleep
    self._done = set()     # exports whose shards this (non-chief) worker finished
    self._failed = set()   # (export, completeness) keys that failed; retried once they change
    self.last_stats = None

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
    base = os.path.abspath(self.config.corpus_dir) if "://" not in self.config.corpus_dir \
        else self.config.corpus_dir
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
    if export_dir in self._done or self._export_key(export_dir) in self._failed:
      return False
    live = self.live_bundle()
    if live is None:
      return True
    step = int(os.path.basename(export_dir.rstrip("/")))
    source = os.path.normpath(str(live.manifest.get("source_export", "")))
    watched = os.path.normpath(embedder_export.exports_dir(self.config.model_dir))
    if os.path.dirname(source) != watched:
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
    return os.path.join(self.config.index_dir, WORK_SUBDIR,
                        f"{embedder.step:08d}-{embed_corpus.export_identity(embedder)}",
                        _corpus_fingerprint(corpus_dir))

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

  def _validate(self, embedder, corpus_dirs: Sequence[str]) -> None:
    for d in corpus_dirs:
      manifest = embed_corpus.load_corpus_manifest(d)
      embedder_export.check_corpus_compatible(
          embedder.metadata, manifest, embedder.path, os.path.join(d, corpus_lib.MANIFEST))

  def _embed_dirs(self, embedder, corpus_dirs: Sequence[str], on_part_done=None
                  ) -> Optional[List[Tuple[np.ndarray, np.ndarray]]]:
    """Embeds this worker's shards of each dir; on the chief, waits and merges all parts."""
    cfg = self.config
    self._validate(embedder, corpus_dirs)
    for d in corpus_dirs:
      stats = embed_corpus.embed_shards(
          embedder, d, self.work_dir(embedder, d), self.strategy, cfg.num_shards, cfg.shard_index,
          cfg.batch_size, on_part_done=on_part_done)
      logging.info("%s: embedded shards %s, skipped finished shards %s (%.1f blocks/s).", d,
                   stats.embedded, stats.skipped, stats.blocks_per_second)
      self.last_stats = stats
    if not self.is_chief:
      return None
    merged = []
    for d in corpus_dirs:
      manifest = embed_corpus.load_corpus_manifest(d)
      work = self.work_dir(embedder, d)
      self._wait_for_parts(work, manifest, embedder)
      merged.append(embed_corpus.merge_parts(work, manifest, embedder.embedding_dim, d))
    return merged

  def _wait_for_parts(self, work: str, manifest: Dict, embedder) -> None:
    delay, start = self.config.poll_min_seconds, time.time()
    while True:
      missing = embed_corpus.missing_parts(work, manifest)
      if not missing:
        return
      newest = embedder_export.latest_export(self.config.model_dir)
      if newest and int(os.path.basename(newest)) > embedder.step:
        raise SupersededError(f"Export {newest} superseded {embedder.path} while waiting for parts.")
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
               extra: Optional[Dict] = None,
               source_export: Optional[str] = None) -> bundle_lib.IndexBundle:
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
    try:
      return bundle_lib.publish(cfg.index_dir, export_dir=embedder.path, searcher=searcher,
                                embeddings=embeddings, block_ids=block_ids, manifest=manifest,
                                removed_block_ids=docs.removed, keep=cfg.keep,
                                grace_seconds=cfg.grace_seconds)
    finally:
      searcher.release()

  def _cleanup_work(self, step: int) -> None:
    root = os.path.join(self.config.index_dir, WORK_SUBDIR)
    if not tf.io.gfile.isdir(root):
      return
    for name in tf.io.gfile.listdir(root):
      name = name.rstrip("/")
      if name[:8].isdigit() and int(name[:8]) < step:
        tf.io.gfile.rmtree(os.path.join(root, name))

  # ---- entry points --------------------------------------------------------------------------

  def _hold(self, export_dir: str):
    """Holds `export_dir` against pruning when it is one of the watched model_dir's exports."""
    watched = os.path.normpath(embedder_export.exports_dir(self.config.model_dir))
    if os.path.dirname(os.path.normpath(export_dir)) == watched:
      return embedder_export.hold_export(export_dir)
    return contextlib.nullcontext()

  def refresh(self, export_dir: str, on_part_done=None) -> Optional[bundle_lib.IndexBundle]:
    """Full refresh with `export_dir`: embeds the whole document set; the chief publishes."""
    with self._hold(export_dir):
      return self._refresh(export_dir, on_part_done)

  def _refresh(self, export_dir: str, on_part_done=None) -> Optional[bundle_lib.IndexBundle]:
    live = self.live_bundle()
    docs = self.document_set(live)
    embedder = self._load_embedder(export_dir, docs.corpus_dirs)
    merged = self._embed_dirs(embedder, docs.corpus_dirs, on_part_done)
    if merged is None:
      self._done.add(export_dir)
      return None
    block_ids, embeddings = combine(merged, docs.removed)
    published = self._publish(embedder, docs, block_ids, embeddings,
                              {"build": "full", "previous_version": live and live.version})
    self._cleanup_work(embedder.step)
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
    add_dirs = [os.path.abspath(d) if "://" not in d else d for d in add_dirs]
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
    return self._publish(embedder, new_docs, ids, emb, {
        "build": "incremental", "previous_version": live.version,
        "changes": {"base_version": live.version, "added_dirs": list(add_dirs),
                    "added_blocks": int(len(added_ids)) - replaced, "replaced_blocks": replaced,
                    "removed_blocks": removed_now, "remove_file": remove_file}},
        source_export=live.manifest.get("source_export"))

  def run_once(self) -> Optional[bundle_lib.IndexBundle]:
    """Indexes the newest export if the live bundle is older; None when already up to date."""
    export = embedder_export.latest_export(self.config.model_dir)
    if export is None:
      raise embedder_export.ExportError(
          f"No embedder export under {embedder_export.exports_dir(self.config.model_dir)}.")
    if not self.needs_refresh(export):
      logging.info("Index in %s is up to date with %s.", self.config.index_dir, export)
      return None
    return self.refresh(export)

  def run(self, max_polls: Optional[int] = None) -> int:
    """The watch loop. Returns the number of bundles published.

    Polls for new exports, sleeping `poll_min_seconds`, doubling up to `poll_max_seconds` while
    nothing changes. Errors of one export (INPUT_ERRORS) are logged and that export is skipped; the
    live bundle stays. Stops once TRAINING_DONE exists and the newest export has been handled.
    """
    cfg = self.config
    delay = cfg.poll_min_seconds
    published = polls = 0
    while True:
      done = embedder_export.training_done(cfg.model_dir)  # read first: the final export is older
      export = embedder_export.latest_export(cfg.model_dir)
      worked = False
      if export is not None and self.needs_refresh(export):
        try:
          if self.refresh(export) is not None:
            published += 1
          worked = True
        except SupersededError as e:
          logging.info("%s", e)
          worked = True
        except INPUT_ERRORS as e:
          logging.error("Not publishing an index for %s: %s", export, e)
          self._failed.add(self._export_key(export))
      polls += 1
      if done or (max_polls is not None and polls >= max_polls):
        logging.info("Training is done; the index refresh job stops." if done else
                     "Reached max_polls; stopping.")
        return published
      if worked:
        delay = cfg.poll_min_seconds
        continue
      logging.info("No new embedder export in %s; sleeping %.0fs.", cfg.model_dir, delay)
      self._sleep(delay)
      delay = min(2 * delay, cfg.poll_max_seconds)
