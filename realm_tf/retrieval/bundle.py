"""Versioned index bundles: the one on-disk form of a MIPS index, and `latest()` to read it.

    <index_dir>/<version:08d>/
        query_embedder/     the embedder export the index was built with (SavedModel with
                            `embed_queries`, and `embed_documents` so documents can be added later)
        searcher/           the ScaNN (or exact) searcher SavedModel; its checkpoint holds the
                            float32 [N, D] document embeddings (row r = block_ids[r])
        embeddings.npy      the same matrix, only when the searcher does not hold it (and in
                            bundles of format 1)
        block_ids.npy       int64 [N]
        removed_block_ids.npy  int64 block ids removed from the corpus (may be empty)
        manifest.json       source export + step, corpus fingerprint, dtype, time, searcher config,
                            recall@10 of the searcher against exact search

A bundle is assembled in a hidden temporary directory and published by one atomic rename that also
claims its version number (`realm_tf.io.publish.publish_next_version`), so a reader never sees a
half-written version (on object stores, where renaming a directory is not atomic, the files are
written in place and manifest.json last; readers ignore versions without a manifest). Old
versions are pruned to the newest `keep`, but only after a grace period since they were
superseded, so a reader that just picked one can finish opening it. Every reader calls
`latest(index_dir)`, and `close()`s a bundle it replaces (or uses it as a context manager), which
frees the searcher's native index at once rather than when the bundle is garbage-collected.

The matrix is stored once: ScaNN re-orders candidates with its own float32 copy, which the
searcher needs in its checkpoint anyway (tf.data service workers restore the searcher from it),
so `IndexBundle.embeddings` memory-maps that copy (`read_searcher_embeddings`) instead of a
second `.npy` beside it.
"""
import json
import os
import re
import time
import uuid
from typing import Callable, Dict, List, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.data.pretrain_pipeline import WorkerLoadedArray, WorkerLoadedFunction
from realm_tf.io import paths
from realm_tf.io import publish as publish_lib
from realm_tf.io.memory import return_free_memory
from realm_tf.io.publish import is_remote
from realm_tf.text.packing import INPUT_KEYS

MANIFEST = "manifest.json"
QUERY_EMBEDDER = "query_embedder"
SEARCHER = "searcher"
EMBEDDINGS = "embeddings.npy"
BLOCK_IDS = "block_ids.npy"
REMOVED_IDS = "removed_block_ids.npy"
FORMAT_VERSION = 2  # 1: embeddings.npy always written
_VERSION_DIR = re.compile(r"^\d{8}$")


class BundleError(ValueError):
  """An index bundle is missing, incomplete or inconsistent."""


class BundleNotFoundError(BundleError, FileNotFoundError):
  """No bundle has been published in the index directory yet."""


def _read_npy(path: str, mmap: bool = True) -> np.ndarray:
  """The array of a `.npy` file: memory-mapped (an object store's from a local copy: pages that
  the kernel may evict and share, as for a local bundle), or else read into memory in chunks.
  A short or garbled file raises BundleError naming it."""
  try:
    if mmap:
      with paths.local_copy(path) as local:
        return np.load(local, mmap_mode="r", allow_pickle=False)
    with tf.io.gfile.GFile(path, "rb") as f:
      return np.load(f, allow_pickle=False)
  except (ValueError, EOFError, OSError) as e:
    if isinstance(e, FileNotFoundError):
      raise
    raise BundleError(f"Index bundle file {path} is damaged (short or not a .npy array): "
                      f"{' '.join(str(e).split())}") from e


def _write_npy(path: str, array: np.ndarray) -> None:
  with tf.io.gfile.GFile(path, "wb") as f:
    np.save(f, array, allow_pickle=False)


class IndexBundle:
  """One published index version. Heavy parts (SavedModels, matrices) load on first use.

  Attributes: `path`, `version`, `manifest` (dict). Properties `embeddings`, `block_ids`,
  `removed_block_ids`, `searcher` (has `.search(q [B, D], k)`), `query_embedder` (a
  `LoadedEmbedder`). `open()` loads everything at once; `close()` lets it all go.
  """

  def __init__(self, path: str, manifest: Dict):
    self.path = path
    self.manifest = manifest
    self.version = int(manifest["version"])
    self._cache = {}

  def __repr__(self):
    return f"IndexBundle(version={self.version}, path={self.path!r})"

  @property
  def step(self) -> int:
    """Training step of the embedder export the bundle was built with."""
    return int(self.manifest["step"])

  @property
  def num_rows(self) -> int:
    return int(self.manifest["num_rows"])

  def __enter__(self) -> "IndexBundle":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  @property
  def embeddings_in_searcher(self) -> bool:
    """True when the searcher's checkpoint is the bundle's only copy of the embeddings."""
    return bool(self.manifest.get("searcher", {}).get("embeddings_key"))

  @property
  def embeddings(self) -> np.ndarray:
    """float32 [N, D] in row order (memory-mapped; a remote bundle's from a local copy)."""
    if "embeddings" not in self._cache:
      if self.embeddings_in_searcher:
        from realm_tf.retrieval.searcher import read_searcher_embeddings  # pylint: disable=g-import-not-at-top
        self._cache["embeddings"] = read_searcher_embeddings(os.path.join(self.path, SEARCHER))
      else:
        self._cache["embeddings"] = _read_npy(os.path.join(self.path, EMBEDDINGS))
    return self._cache["embeddings"]

  @property
  def block_ids(self) -> np.ndarray:
    """int64 [N]: the corpus block id of each embedding row."""
    if "block_ids" not in self._cache:
      self._cache["block_ids"] = _read_npy(os.path.join(self.path, BLOCK_IDS), mmap=False)
    return self._cache["block_ids"]

  @property
  def removed_block_ids(self) -> np.ndarray:
    """int64 block ids removed from the corpus by `--remove` (carried into later versions)."""
    path = os.path.join(self.path, REMOVED_IDS)
    if "removed" not in self._cache:
      self._cache["removed"] = (_read_npy(path, mmap=False) if tf.io.gfile.exists(path)
                                else np.zeros([0], np.int64))
    return self._cache["removed"]

  @property
  def searcher(self):
    """The searcher SavedModel: `.search(query_embeddings [B, D], k) → (rows, scores)`."""
    if "searcher" not in self._cache:
      from realm_tf.retrieval.searcher import load_searcher  # pylint: disable=g-import-not-at-top
      self._cache["searcher"] = load_searcher(os.path.join(self.path, SEARCHER))
    return self._cache["searcher"]

  @property
  def query_embedder(self):
    """The `LoadedEmbedder` whose `embed_queries` produced queries for this index."""
    if "query_embedder" not in self._cache:
      from realm_tf.retrieval.embedder_export import load_embedder  # pylint: disable=g-import-not-at-top
      self._cache["query_embedder"] = load_embedder(os.path.join(self.path, QUERY_EMBEDDER))
    return self._cache["query_embedder"]

  def open(self) -> "IndexBundle":
    """Loads every part and checks their shapes against the manifest; returns self."""
    emb, ids = self.embeddings, self.block_ids
    if emb.shape != (self.num_rows, int(self.manifest["embedding_dim"])) or ids.shape != (
        self.num_rows,):
      raise BundleError(f"Bundle {self.path} is inconsistent: embeddings {emb.shape}, block ids "
                        f"{ids.shape}, manifest num_rows={self.num_rows}.")
    _ = self.searcher, self.query_embedder
    return self

  def close(self) -> None:
    """Frees the searcher's native index now and drops every loaded part (a later use loads it
    again). Call it when switching to a newer bundle."""
    searcher = self._cache.pop("searcher", None)
    if searcher is not None:
      searcher.release()
    self._cache.clear()
    return_free_memory()


def list_versions(index_dir: str) -> List[int]:
  """Published versions in `index_dir` (directories named by eight digits), oldest first."""
  if not tf.io.gfile.isdir(index_dir):
    return []
  names = [n.rstrip("/") for n in tf.io.gfile.listdir(index_dir)]
  return sorted(int(n) for n in names if _VERSION_DIR.match(n))


def version_path(index_dir: str, version: int) -> str:
  return os.path.join(index_dir, f"{int(version):08d}")


def read_manifest(path: str) -> Dict:
  """Reads `<bundle>/manifest.json`; raises BundleError naming the file."""
  manifest_path = os.path.join(path, MANIFEST)
  try:
    with tf.io.gfile.GFile(manifest_path, "r") as f:
      return json.load(f)
  except tf.errors.NotFoundError as e:
    raise BundleError(f"Index bundle {path} has no {MANIFEST}.") from e
  except json.JSONDecodeError as e:
    raise BundleError(f"Index bundle manifest {manifest_path} is not valid JSON: {e}") from e


def open_bundle(path: str, load: bool = False) -> IndexBundle:
  """Opens the bundle at `path` (checking that all its parts exist); `load` loads them too."""
  manifest = read_manifest(path)
  bundle = IndexBundle(path, manifest)
  parts = (QUERY_EMBEDDER, SEARCHER, BLOCK_IDS) + (
      () if bundle.embeddings_in_searcher else (EMBEDDINGS,))
  for name in parts:
    if not tf.io.gfile.exists(os.path.join(path, name)):
      raise BundleError(f"Index bundle {path} is incomplete: {name} is missing.")
  return bundle.open() if load else bundle


def latest_version(index_dir: str) -> Optional[int]:
  """Newest published version with a manifest, or None."""
  for version in reversed(list_versions(index_dir)):
    if tf.io.gfile.exists(os.path.join(version_path(index_dir, version), MANIFEST)):
      return version
  return None


def latest(index_dir: str, load: bool = False, retries: int = 5) -> IndexBundle:
  """The newest complete bundle of `index_dir` — the one entry point for every index reader.

  With `load=True` the searcher, query embedder and matrices are loaded before returning. If the
  chosen version is pruned while being opened, the newest one is picked again (up to `retries`).
  Raises BundleNotFoundError when nothing has been published.
  """
  for attempt in range(retries + 1):
    version = latest_version(index_dir)
    if version is None:
      raise BundleNotFoundError(f"No index bundle published in {index_dir} yet "
                                "(run python -m realm_tf.launch.refresh_index).")
    path = version_path(index_dir, version)
    try:
      return open_bundle(path, load=load)
    except Exception as e:  # pylint: disable=broad-except
      # A part that vanished mid-load surfaces as whatever its loader raises (a SavedModel load
      # becomes an ExportError); the bundle being gone is what says it was pruned.
      if tf.io.gfile.exists(path) or attempt == retries:
        raise
      logging.info("Bundle %s was pruned while opening (%s); retrying.", path, e)
  raise AssertionError("unreachable")


def bundle_manifest(*, source_export: str, step: int, export_metadata: Dict,
                    corpus_dirs: List[str], corpus_fingerprints: List[str],
                    corpus_fingerprint: str, num_removed: int = 0, **fields) -> Dict:
  """The manifest fields every index bundle records (`publish` adds its own): the export that
  embedded it, and the documents it holds (corpus directories, base first, their fingerprints,
  the removed blocks' count); `fields` add what the writer knows besides (recall, source, ...)."""
  return dict({"source_export": source_export, "step": step, "export_metadata": export_metadata,
               "corpus_dir": corpus_dirs[0], "corpus_fingerprint": corpus_fingerprint,
               "documents": {"corpus_dirs": list(corpus_dirs),
                             "corpus_fingerprints": list(corpus_fingerprints),
                             "num_removed": int(num_removed)}}, **fields)


def publish(index_dir: str, *, export_dir: str, searcher, embeddings: np.ndarray,
            block_ids: np.ndarray, manifest: Dict, removed_block_ids=None, keep: int = 3,
            grace_seconds: float = 120.0) -> IndexBundle:
  """Writes a new bundle version and publishes it atomically; prunes old versions.

  Args:
    index_dir: where versions live.
    export_dir: the embedder export the embeddings were made with (copied into the bundle).
    searcher: a built `Searcher` over `embeddings` (saved with `save_searcher`; when its
      checkpoint holds the matrix, no `.npy` copy is written). The caller releases it.
    embeddings: float32 [N, D]; block_ids: int64 [N].
    manifest: fields describing the build (source export, step, corpus fingerprint, recall, ...);
      `version`, `created`, `num_rows`, `embedding_dim`, `embedding_dtype` and `searcher` are added.
    removed_block_ids: block ids removed by `--remove`, carried into later versions.
    keep: number of newest versions kept; grace_seconds: how long a superseded version survives.

  Returns:
    The published IndexBundle.
  """
  from realm_tf.retrieval.searcher import save_searcher  # pylint: disable=g-import-not-at-top
  embeddings = np.asarray(embeddings)
  block_ids = np.asarray(block_ids, np.int64)
  if embeddings.ndim != 2 or embeddings.shape[0] != block_ids.shape[0]:
    raise BundleError(f"embeddings {embeddings.shape} and block_ids {block_ids.shape} disagree.")
  full = dict(manifest)

  def write_manifest(work: str, version: int) -> None:
    # The commit marker, written last: rewritten with a new number when a concurrent publisher
    # claimed this one first.
    full["version"] = version
    with tf.io.gfile.GFile(os.path.join(work, MANIFEST), "w") as f:
      json.dump(full, f, indent=2, sort_keys=True)

  # Eight-digit names, as `version_path`; the next number past anything already on disk.
  with publish_lib.publish_next_version(
      index_dir, write_manifest, first=max(list_versions(index_dir), default=0) + 1) as staging:
    work = staging.path
    paths.copy_tree(export_dir, os.path.join(work, QUERY_EMBEDDER))
    info = save_searcher(searcher, os.path.join(work, SEARCHER))
    if not info.get("embeddings_key"):  # the searcher does not hold the matrix itself
      _write_npy(os.path.join(work, EMBEDDINGS), embeddings.astype(np.float32, copy=False))
    _write_npy(os.path.join(work, BLOCK_IDS), block_ids)
    _write_npy(os.path.join(work, REMOVED_IDS),
               np.asarray(sorted(removed_block_ids if removed_block_ids is not None else []),
                          np.int64))
    full.update({
        "format_version": FORMAT_VERSION,
        "created": time.time(),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "num_rows": int(embeddings.shape[0]),
        "embedding_dim": int(embeddings.shape[1]),
        "embedding_dtype": "float32",
        "searcher": info,
    })
  version = staging.version
  path = version_path(index_dir, version)
  logging.info("Published index bundle %s (%d rows).", path, embeddings.shape[0])
  prune(index_dir, keep=keep, grace_seconds=grace_seconds)
  return IndexBundle(path, full)


def prune(index_dir: str, keep: int = 3, grace_seconds: float = 120.0) -> List[int]:
  """Deletes versions older than the newest `keep` once superseded for `grace_seconds`.

  A version is moved aside (renamed to a hidden name) before being deleted, so a reader either
  opens it whole or not at all. Also removes stale temporary directories. Returns deleted versions.
  """
  keep = max(1, int(keep))
  versions = list_versions(index_dir)
  deleted = []
  now = time.time()
  for i, version in enumerate(versions[:-keep]):
    newer = version_path(index_dir, versions[i + 1])
    try:
      superseded_at = float(read_manifest(newer).get("created", now))
    except BundleError:
      superseded_at = now
    if now - superseded_at < grace_seconds:
      continue
    path = version_path(index_dir, version)
    if is_remote(index_dir):
      tf.io.gfile.rmtree(path)
    else:
      trash = os.path.join(index_dir, f".trash-{version:08d}-{uuid.uuid4().hex[:8]}")
      tf.io.gfile.rename(path, trash)
      tf.io.gfile.rmtree(trash)
    deleted.append(version)
  for name in tf.io.gfile.listdir(index_dir):
    name = name.rstrip("/")
    if name.startswith((publish_lib.TEMP_PREFIX, ".trash-")):
      path = os.path.join(index_dir, name)
      try:
        age = now - tf.io.gfile.stat(path).mtime_nsec / 1e9
        if age > max(grace_seconds, 3600.0):
          tf.io.gfile.rmtree(path)
      except (OSError, tf.errors.OpError):
        pass
  if deleted:
    logging.info("Pruned index bundles %s from %s.", deleted, index_dir)
  return deleted


def bundle_retrieve_fn(bundle, k: int, load_on_worker: bool = False) -> Callable:
  """Retrieval with an index bundle: its (stale) query embedder, then its searcher → block ids.

  With `load_on_worker`, the returned function reads the embedder's weights, the searcher's index
  and the block ids from `bundle.path` where it runs (see pretrain_pipeline.WorkerLoadedFunction)
  instead of capturing them: use it for tf.data service, whose workers then need read access to
  the bundle.
  """
  found = min(k, int(bundle.num_rows))
  if load_on_worker:
    embed_fn = WorkerLoadedFunction(os.path.join(bundle.path, QUERY_EMBEDDER),
                                    "embed_queries", bundle.query_embedder.module.embed_queries)
    search_fn = WorkerLoadedFunction(os.path.join(bundle.path, SEARCHER), "search",
                                     bundle.searcher.search)
    ids_array = WorkerLoadedArray(os.path.join(bundle.path, BLOCK_IDS))
    embed = lambda f: embed_fn({key: f[key] for key in INPUT_KEYS})["embeddings"]
    search = search_fn
    block_ids = ids_array.value
  else:
    embedder = bundle.query_embedder
    searcher = bundle.searcher
    ids_t = tf.constant(bundle.block_ids, tf.int64)
    embed, search, block_ids = embedder.embed_queries, searcher.search, lambda: ids_t

  @tf.autograph.experimental.do_not_convert
  def retrieve(features):
    rows, _ = search(embed(features), tf.constant(found, tf.int32))
    # A corpus smaller than k leaves -1 (unknown block) columns, masked out downstream.
    return tf.pad(tf.gather(block_ids(), rows), [[0, 0], [0, k - found]], constant_values=-1)

  retrieve.loads_on_worker = load_on_worker
  return retrieve
