"""The embedder export: the retriever's two towers as a SavedModel the index refresh job consumes.

Layout (docs/ARCHITECTURE.md, "Embedder export"):

    <model_dir>/embedder_exports/<step:08d>/
        saved_model.pb, variables/      signatures `embed_queries` and `embed_documents`:
                                        {input_word_ids, input_mask, input_type_ids} int32 [B, T]
                                        → {"embeddings": float32 [B, 128]}
        realm_export.json               {step, query_seq_length, doc_seq_length, vocab_fingerprint,
                                         encoder_config, embedding_dim, cls_id, sep_id,
                                         query_dtype (host_precision), ...}

An export is written into a hidden temporary directory beside the target and published with one
atomic rename (`realm_tf.io.publish.publish_dir`; on object stores, in place with the metadata file
written last as the commit marker), so a watcher never sees a half-written export; `latest_export`
ignores anything whose name is not eight digits. `load_embedder` validates what it opens and
`check_corpus_compatible` rejects an export whose vocabulary or document length differs from the
corpus manifest.

Exports are pruned (`prune_exports`, or `export_embedder(keep=K)`) to the newest K plus the best
one (`<model_dir>/best_export.json`, the held-out evaluation's pick), never removing one that an
index refresh holds (`lease_export` / `hold_export`: a lease file under
`embedder_exports/.leases/`, taken by the refresher for the whole refresh round that embeds with
it and renewed as the round goes on) or that was superseded less than a grace period ago (a
refresher may just have picked it). A lease not renewed for `lease_seconds` is taken for one a
crashed process left behind.
"""
import contextlib
import json
import os
import re
import socket
import time
import uuid
from typing import Dict, Iterable, List, Optional

import tensorflow as tf
from absl import logging

from realm_tf.io import chief
from realm_tf.io import paths
from realm_tf.io import publish as publish_lib
from realm_tf.io import work_dir
from realm_tf.retrieval import host_precision
from realm_tf.text.packing import INPUT_KEYS

EXPORTS_SUBDIR = "embedder_exports"
METADATA = "realm_export.json"
TRAINING_DONE = work_dir.TRAINING_DONE
BEST_EXPORT = "best_export.json"    # {"step", "export", ...}: the export pruning always keeps
LEASES_SUBDIR = ".leases"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("step", "query_seq_length", "doc_seq_length", "vocab_fingerprint",
                 "encoder_config", "embedding_dim")
_STEP_DIR = re.compile(r"^\d{8}$")


class ExportError(ValueError):
  """An embedder export is missing, half-written, or does not fit the corpus."""


def exports_dir(model_dir: str) -> str:
  """`<model_dir>/embedder_exports`."""
  return os.path.join(model_dir, EXPORTS_SUBDIR)


def export_path(model_dir: str, step: int) -> str:
  """`<model_dir>/embedder_exports/<step:08d>`."""
  return os.path.join(exports_dir(model_dir), f"{int(step):08d}")


def _input_signature(seq_length: int) -> Dict[str, tf.TensorSpec]:
  return {k: tf.TensorSpec([None, seq_length], tf.int32, name=k) for k in INPUT_KEYS}


class _EmbedderModule(tf.Module):
  """The retriever's towers traced with fixed-length int32 input signatures.

  Only the towers' variables are tracked (not the Keras model itself), so saving writes the two
  traced functions and the weights without Keras' slow per-layer SavedModel serialisation.
  """

  def __init__(self, retriever, query_seq_length: int, doc_seq_length: int,
               query_tower=None):
    super().__init__(name="realm_embedder")
    # `query_tower` (host_precision.query_tower_in) computes queries in the host's dtype; its
    # variables stand in for the retriever's query variables (same values, same order), so the
    # list still warm-starts a retriever (warm_start.init_retriever) and each weight is saved once.
    query_tower = query_tower or retriever
    swap = {s.ref(): d for s, d in zip(host_precision.query_variables(retriever),
                                       host_precision.query_variables(query_tower))}
    self.retriever_variables = [swap.get(v.ref(), v) for v in retriever.variables]
    # Shared towers: the document function still reads the retriever's own (shared) variables.
    self.document_variables = list(retriever.doc_encoder.variables) + list(
        retriever.doc_projection.variables)

    def embed_queries(features):
      return {"embeddings": tf.cast(query_tower.embed_queries(features, training=False),
                                    tf.float32)}

    def embed_documents(features):
      return {"embeddings": tf.cast(retriever.embed_documents(features, training=False),
                                    tf.float32)}

    self.embed_queries = tf.function(
        embed_queries, autograph=False, input_signature=[_input_signature(query_seq_length)])
    self.embed_documents = tf.function(
        embed_documents, autograph=False, input_signature=[_input_signature(doc_seq_length)])


def export_embedder(retriever, model_dir: str, step: int, tokenizer=None,
                    vocab_fingerprint: Optional[str] = None, cls_id: Optional[int] = None,
                    sep_id: Optional[int] = None, extra: Optional[Dict] = None,
                    keep: Optional[int] = None, grace_seconds: float = 600.0,
                    query_dtype: str = "auto") -> str:
  """Exports `retriever`'s towers to `<model_dir>/embedder_exports/<step:08d>/`, atomically.

  Args:
    retriever: a built `realm_tf.modeling.retriever.Retriever` (call `build_towers()` first).
    model_dir: the trainer's model directory.
    step: training step; names the export.
    tokenizer: a RealmTokenizer whose fingerprint and [CLS]/[SEP] ids are recorded. When omitted,
      `vocab_fingerprint`/`cls_id`/`sep_id` are used, defaulting to the shipped vocabulary.
    extra: further JSON fields for realm_export.json (e.g. the metric that triggered the export).
    keep: if set, prune afterwards to the newest `keep` exports plus the best one, sparing held
      exports and those superseded less than `grace_seconds` ago (`prune_exports`).
    query_dtype: what `embed_queries` (run by the input pipeline on the host CPU) computes in:
      "auto" (`host_precision.resolve_query_dtype`: bfloat16 only for a bfloat16 trainer on a
      host with native bfloat16, else float32), "float32" or "bfloat16". `embed_documents` keeps
      the retriever's own precision. Recorded as `query_dtype` in realm_export.json.

  Returns:
    The published export directory. If an export for `step` already exists it is left untouched
    and its path returned (a restarted trainer may re-export the same step). Only the chief of
    a multi-worker job writes; the other workers wait for its export and return that
    (`io.chief`).
  """
  final = export_path(model_dir, step)
  done = lambda: final if tf.io.gfile.exists(os.path.join(final, METADATA)) else None  # pylint: disable=unnecessary-lambda-assignment
  if not chief.is_chief_process():  # a multi-worker job's other workers read the chief's
    return chief.wait_for_chief(done, f"the embedder export {final}")
  if done():
    logging.warning("Embedder export %s already exists; keeping it.", final)
    return final
  if tokenizer is None and vocab_fingerprint is None:
    from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
    tokenizer = RealmTokenizer()
  if tokenizer is not None:
    vocab_fingerprint, cls_id, sep_id = tokenizer.fingerprint, tokenizer.cls_id, tokenizer.sep_id
  config = retriever.config
  metadata = {
      "format_version": FORMAT_VERSION,
      "step": int(step),
      "query_seq_length": int(config.query_seq_length),
      "doc_seq_length": int(config.doc_seq_length),
      "vocab_fingerprint": vocab_fingerprint,
      "cls_id": 101 if cls_id is None else int(cls_id),
      "sep_id": 102 if sep_id is None else int(sep_id),
      "encoder_config": config.encoder_config.to_dict(),
      "retriever_config": config.to_dict(),
      "embedding_dim": int(config.projection_size),
      "created": time.time(),
  }
  trainer_dtype = host_precision.compute_dtype(retriever)
  dtype = host_precision.resolve_query_dtype(query_dtype, trainer_dtype)
  metadata.update({"query_dtype": dtype, "trainer_dtype": trainer_dtype,
                   "host_native_bf16": host_precision.native_bf16()})
  metadata.update(extra or {})
  module = _EmbedderModule(retriever, config.query_seq_length, config.doc_seq_length,
                           host_precision.query_tower_in(retriever, dtype))
  # On object stores (no atomic directory rename) the export is written in place and its metadata
  # file, written last, is the commit marker readers wait for (`list_exports`).
  try:
    with publish_lib.publish_dir(final, marker=METADATA) as tmp:
      tf.saved_model.save(module, tmp, signatures={
          "embed_queries": module.embed_queries, "embed_documents": module.embed_documents})
      with tf.io.gfile.GFile(os.path.join(tmp, METADATA), "w") as f:
        json.dump(metadata, f, indent=2, sort_keys=True)
  except Exception:
    if tf.io.gfile.exists(os.path.join(final, METADATA)):  # lost a race to an identical export
      return final
    raise
  logging.info("Published embedder export %s.", final)
  if keep:
    prune_exports(model_dir, keep, grace_seconds)
  return final


def _leases_dir(model_dir: str) -> str:
  return os.path.join(exports_dir(model_dir), LEASES_SUBDIR)


def lease_export(export_dir: str, path: Optional[str] = None) -> str:
  """Holds `export_dir` against `prune_exports` until `release_lease(path)`; returns the lease.

  Writes `embedder_exports/.leases/<step>.<unique>.json`. Passing the `path` of an earlier lease
  renews it (the refresher, at every part of the round that took it, and when a restarted one
  resumes that round). A lease not renewed for `prune_exports`' `lease_seconds` stops counting
  (one a crashed process left behind).
  """
  export = paths.absolute(export_dir)  # os.path.normpath would turn gs://b into gs:/b, a local path
  root = os.path.join(os.path.dirname(export), LEASES_SUBDIR)
  name = os.path.basename(export)
  path = path or os.path.join(root, f"{name}.{uuid.uuid4().hex}.json")
  tf.io.gfile.makedirs(root)
  with tf.io.gfile.GFile(path, "w") as f:
    json.dump({"export": export_dir, "host": socket.gethostname(), "pid": os.getpid(),
               "time": time.time()}, f)
  return path


def release_lease(path: str) -> None:
  """Ends a lease taken with `lease_export` (a lease already gone is fine)."""
  try:
    tf.io.gfile.remove(path)
  except tf.errors.NotFoundError:
    pass


@contextlib.contextmanager
def hold_export(export_dir: str):
  """Keeps `prune_exports` away from `export_dir` while the block runs (`lease_export`, released
  on exit)."""
  path = lease_export(export_dir)
  try:
    yield export_dir
  finally:
    release_lease(path)


def _held_steps(model_dir: str, lease_seconds: float, now: float) -> set:
  """Step names with a live lease; stale leases are removed."""
  root = _leases_dir(model_dir)
  held = set()
  if not tf.io.gfile.isdir(root):
    return held
  for name in tf.io.gfile.listdir(root):
    path = os.path.join(root, name)
    try:
      age = now - tf.io.gfile.stat(path).mtime_nsec / 1e9
      if age <= lease_seconds:
        held.add(name.split(".", 1)[0])
      else:
        logging.warning("Ignoring and removing the stale export lease %s (%.0f s old).", path, age)
        tf.io.gfile.remove(path)
    except tf.errors.NotFoundError:
      pass  # released meanwhile
  return held


def best_export_step(model_dir: str) -> Optional[int]:
  """The step named by `<model_dir>/best_export.json`, or None when there is none yet."""
  path = os.path.join(model_dir, BEST_EXPORT)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path, "r") as f:
    try:
      return int(json.load(f)["step"])
    except (ValueError, KeyError, TypeError) as e:
      raise ExportError(f"{path} does not name an export step: {e}") from e


def prune_exports(model_dir: str, keep: int, grace_seconds: float = 600.0,
                  lease_seconds: float = 24 * 3600.0,
                  protect: Iterable[int] = ()) -> List[str]:
  """Deletes exports other than the newest `keep`, the best one and the steps in `protect`.

  An export is spared while a lease holds it (`hold_export`, younger than `lease_seconds`) and
  until `grace_seconds` after the next export was created. It is moved aside (renamed to a
  hidden name; on object stores its metadata file, the commit marker, goes first) before it is
  deleted, so a reader sees it whole or not at all. Returns the deleted export directories.
  """
  keep = max(1, int(keep))
  exports = list_exports(model_dir)
  now = time.time()
  spared = {f"{int(s):08d}" for s in protect}
  best = best_export_step(model_dir)
  if best is not None:
    spared.add(f"{best:08d}")
  if len(exports) > keep:
    spared |= _held_steps(model_dir, lease_seconds, now)
  deleted = []
  for i, path in enumerate(exports[:-keep]):
    if os.path.basename(path) in spared:
      continue
    try:
      superseded_at = float(read_metadata(exports[i + 1]).get("created", now))
    except ExportError:
      superseded_at = now
    if now - superseded_at < grace_seconds:
      continue
    if is_remote(model_dir):
      tf.io.gfile.remove(os.path.join(path, METADATA))
      tf.io.gfile.rmtree(path)
    else:
      trash = os.path.join(exports_dir(model_dir), f"{publish_lib.TEMP_PREFIX}trash-"
                           f"{os.path.basename(path)}-{uuid.uuid4().hex[:8]}")
      tf.io.gfile.rename(path, trash)
      tf.io.gfile.rmtree(trash)
    deleted.append(path)
  if deleted:
    logging.info("Pruned embedder exports %s (kept the newest %d, the best step %s and %s).",
                 [os.path.basename(p) for p in deleted], keep, best, sorted(spared) or "none held")
  return deleted


# Object-store test (`gs://`, `s3://`, `ram://`, ...), kept under its old name for importers.
is_remote = publish_lib.is_remote


def list_exports(model_dir: str) -> List[str]:
  """Published export directories (eight-digit names), oldest step first."""
  root = exports_dir(model_dir)
  if not tf.io.gfile.isdir(root):
    return []
  names = sorted(n.rstrip("/") for n in tf.io.gfile.listdir(root) if _STEP_DIR.match(n.rstrip("/")))
  paths = [os.path.join(root, n) for n in names]
  if is_remote(model_dir):  # written in place: an export without its metadata is still being written
    paths = [p for p in paths if tf.io.gfile.exists(os.path.join(p, METADATA))]
  return paths


def latest_export(model_dir: str) -> Optional[str]:
  """The newest published export directory of `model_dir`, or None when there is none yet."""
  exports = list_exports(model_dir)
  return exports[-1] if exports else None


def training_done(model_dir: str) -> bool:
  """True once the trainer has written `<model_dir>/TRAINING_DONE`."""
  return tf.io.gfile.exists(os.path.join(model_dir, TRAINING_DONE))


def read_metadata(path: str) -> Dict:
  """Reads and checks `<path>/realm_export.json`; raises ExportError naming the file."""
  if not tf.io.gfile.isdir(path):
    raise ExportError(f"Embedder export {path} does not exist.")
  meta_path = os.path.join(path, METADATA)
  if not tf.io.gfile.exists(meta_path):
    raise ExportError(f"Embedder export {path} is incomplete: {meta_path} is missing "
                      "(half-written or not an embedder export).")
  try:
    with tf.io.gfile.GFile(meta_path, "r") as f:
      metadata = json.load(f)
  except json.JSONDecodeError as e:
    raise ExportError(f"Embedder export metadata {meta_path} is not valid JSON: {e}") from e
  missing = [k for k in REQUIRED_KEYS if k not in metadata]
  if missing:
    raise ExportError(f"Embedder export metadata {meta_path} lacks {missing}.")
  name = os.path.basename(path.rstrip("/"))
  if _STEP_DIR.match(name) and int(name) != int(metadata["step"]):
    raise ExportError(f"Embedder export {path} is named for step {int(name)} but {meta_path} "
                      f"says step {metadata['step']}.")
  for name in ("saved_model.pb", "variables"):
    if not tf.io.gfile.exists(os.path.join(path, name)):
      raise ExportError(f"Embedder export {path} is incomplete: {os.path.join(path, name)} "
                        "is missing (half-written export).")
  return metadata


def check_corpus_compatible(metadata: Dict, corpus_manifest: Dict, export_dir: str,
                            manifest_path: str) -> None:
  """Raises ExportError unless the export's vocabulary and document length match the corpus."""
  meta_path = os.path.join(export_dir, METADATA)
  if metadata["vocab_fingerprint"] != corpus_manifest.get("vocab_fingerprint"):
    raise ExportError(
        f"Vocabulary mismatch: {meta_path} has vocab_fingerprint "
        f"{str(metadata['vocab_fingerprint'])[:16]}… but the corpus manifest {manifest_path} has "
        f"{str(corpus_manifest.get('vocab_fingerprint'))[:16]}….")
  corpus_len = corpus_manifest.get("max_block_length")
  if corpus_len is not None and int(corpus_len) != int(metadata["doc_seq_length"]):
    raise ExportError(
        f"Sequence length mismatch: {meta_path} embeds documents of doc_seq_length="
        f"{metadata['doc_seq_length']} but the corpus manifest {manifest_path} has "
        f"max_block_length={corpus_len}.")


class LoadedEmbedder:
  """A loaded export: `embed_queries(features)`, `embed_documents(features)` → [B, D] float32.

  `features` is a dict of int32 [B, T] `input_word_ids`, `input_mask`, `input_type_ids` with T the
  export's `query_seq_length` / `doc_seq_length`. `metadata` is realm_export.json.
  """

  def __init__(self, path: str, metadata: Dict, module):
    self.path = path
    self.metadata = metadata
    self.module = module
    self.step = int(metadata["step"])
    self.query_seq_length = int(metadata["query_seq_length"])
    self.doc_seq_length = int(metadata["doc_seq_length"])
    self.embedding_dim = int(metadata["embedding_dim"])
    self.cls_id = int(metadata.get("cls_id", 101))
    self.sep_id = int(metadata.get("sep_id", 102))

  def embed_queries(self, features) -> tf.Tensor:
    """Packed queries [B, query_seq_length] → embeddings [B, D]."""
    return self.module.embed_queries({k: features[k] for k in INPUT_KEYS})["embeddings"]

  def embed_documents(self, features) -> tf.Tensor:
    """Packed documents [B, doc_seq_length] → embeddings [B, D]."""
    return self.module.embed_documents({k: features[k] for k in INPUT_KEYS})["embeddings"]


def load_embedder(path: str) -> LoadedEmbedder:
  """Loads and validates an embedder export; raises ExportError naming the offending file.

  Call inside `strategy.scope()` to mirror its variables across replicas.
  """
  metadata = read_metadata(path)
  try:
    module = tf.saved_model.load(path)
  except Exception as e:  # pylint: disable=broad-except
    raise ExportError(f"Embedder export {path} could not be loaded as a SavedModel: {e}") from e
  for name in ("embed_queries", "embed_documents"):
    if not hasattr(module, name):
      raise ExportError(f"Embedder export {path} lacks the `{name}` function.")
  return LoadedEmbedder(path, metadata, module)
