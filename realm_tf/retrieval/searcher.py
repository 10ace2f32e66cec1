"""The searcher interface shared by every MIPS index, plus save/load and recall helpers.

A searcher is a `tf.Module` whose `search(query_embeddings [B, D], k)` returns the `k` rows of the
index's embedding matrix with the largest inner products, as `(rows int32 [B, k], scores float32
[B, k])`, best first. Searchers save as SavedModels (`save_searcher`) and reload in any process with
`load_searcher`, which registers the ScaNN ops first so both kinds load the same way.

A searcher that holds native memory outside its variables (ScaNN's index) frees it with
`release()`, and again when the object is garbage-collected; a later search rebuilds it. Loaded
searchers get the same `release()`. A searcher, built or loaded, goes with its last reference,
matrix included, without waiting for Python's cyclic collector: the graphs its functions traced,
which capture its variables in reference cycles, are dismantled then (`dismantle_traces`).

A searcher whose checkpoint holds the indexed matrix itself names it in its description
(`embeddings_key`), and `read_searcher_embeddings` reads that matrix back (memory-mapped; on an
object store from a local copy), so an index bundle stores the matrix once.
"""
import gc
import json
import os
import struct
import weakref
from typing import Optional

import numpy as np
import tensorflow as tf

from realm_tf.io import paths
from realm_tf.io.errors import error_text
from realm_tf.retrieval import scann_resources
from realm_tf.utils.custom_ops import register_scann_ops

SEARCHER_INFO = "realm_searcher.json"


class SearcherError(ValueError):
  """A searcher cannot be built from, or loaded at, the given input."""


class Searcher(tf.Module):
  """Base class: maximum inner product search over a fixed [N, D] float32 embedding matrix.

  Subclasses implement `_search(queries, k)`; `search` is the traced, saved entry point.
  """

  kind = "abstract"
  # Checkpoint key of the variable holding the indexed float32 [N, D] matrix in row order, or None.
  embeddings_key: Optional[str] = None

  def __init__(self, num_rows: int, dim: int, name: Optional[str] = None):
    super().__init__(name=name)
    if num_rows <= 0:
      raise SearcherError("Cannot build a searcher over an empty embedding matrix.")
    self.num_rows = int(num_rows)
    self.dim = int(dim)
    self._num_rows_t = tf.constant(self.num_rows, tf.int32)
    # A weak reference, so the traced function does not keep its searcher alive in a cycle: the
    # searcher (and the memory it holds) goes as soon as its last user drops it.
    this = weakref.ref(self)

    def search(query_embeddings, k):
      return this()._checked_search(query_embeddings, k)  # pylint: disable=protected-access

    self.search = tf.function(
        search, autograph=False,
        input_signature=[tf.TensorSpec([None, self.dim], tf.float32, name="query_embeddings"),
                         tf.TensorSpec([], tf.int32, name="k")])
    # The graphs `search` traces capture this searcher's variables and sit in reference cycles:
    # dismantled when the searcher goes, so its matrix goes with it (see `dismantle_traces`).
    weakref.finalize(self, dismantle_traces, self.search).atexit = False

  def _checked_search(self, query_embeddings, k):
    """Validates `k` against the index size, then delegates to `_search`."""
    with tf.control_dependencies([
        tf.debugging.assert_positive(k, message="search: k must be positive"),
        tf.debugging.assert_less_equal(
            k, self._num_rows_t, message="search: k exceeds the number of indexed rows")]):
      k = tf.identity(k)
    rows, scores = self._search(query_embeddings, k)
    return tf.cast(rows, tf.int32), tf.cast(scores, tf.float32)

  def _search(self, queries, k):
    raise NotImplementedError

  def release(self) -> bool:
    """Frees native memory held outside the variables (none here: False); a later search
    rebuilds it. True when there was some to free."""
    return False

  def info(self) -> dict:
    """JSON-serialisable description (kind, size, resolved configuration)."""
    return {"kind": self.kind, "num_rows": self.num_rows, "dim": self.dim}


def dismantle_traces(*functions) -> None:
  """Breaks the reference cycles of the graphs that `functions` traced (or, loaded, restored).

  Each is a `tf.function`, a restored one (from a SavedModel) or a concrete function. A traced
  graph refers to itself (its ops and tensors point back to it) and holds the eager tensors it
  captured: a searcher's variable handles, which keep the variables' buffers (the whole indexed
  matrix) alive. TensorFlow dismantles such a graph when its concrete function goes only where the
  graph was bound to it, which calls of a `tf.function`, `get_concrete_function` and loading are
  not; so, left alone, a dropped searcher's matrix lived on until Python's cyclic collector
  happened to run. The functions are unusable afterwards: call this when their searcher goes.
  """
  from tensorflow.python.framework import func_graph  # pylint: disable=g-direct-tensorflow-import,g-import-not-at-top
  traced = []
  for function in functions:
    traced.append(function)  # a concrete function has a graph of its own
    traced.extend(getattr(function, "_function_cache", {}).values())
    traced.append(getattr(function, "_concrete_variable_creation_fn", None))
    traced.extend(getattr(function, "concrete_functions", ()))  # restored from a SavedModel
  seen = set()
  for concrete in traced:
    graph = getattr(concrete, "graph", None)
    if not isinstance(graph, func_graph.FuncGraph) or id(graph) in seen:
      continue
    seen.add(id(graph))
    func_graph.dismantle_func_graph(graph)
    captures = graph.function_captures
    captures.control.clear()
    # `clear()` leaves the cached (captured tensor, placeholder) pairs behind: reading them
    # after the clear recomputes the (now empty) cache.
    _ = captures.by_val_capture_tuples


def save_searcher(searcher: Searcher, path: str) -> dict:
  """Saves `searcher` as a SavedModel at `path` (signature `serving_default` = search).

  The ScaNN namespace is whitelisted so ScaNN searchers save; the description is written beside the
  SavedModel as `realm_searcher.json`. When the checkpoint holds the indexed matrix as float32
  [N, D] under `searcher.embeddings_key`, the description names it (`embeddings_key`).
  """
  signature = searcher.search.get_concrete_function()

  def serve(query_embeddings, k):
    rows, scores = searcher.search(query_embeddings, k)
    return {"rows": rows, "scores": scores}

  serving = tf.function(serve, autograph=False, input_signature=signature.structured_input_signature[0])
  tf.saved_model.save(searcher, path, signatures={"serving_default": serving},
                      options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]))
  # Saving traced graphs of its own (`serving`, TensorFlow's signature wrappers) that captured the
  # searcher's variables and sit in reference cycles out of reach: collect them now, so the matrix
  # goes with the searcher rather than at the collector's next run.
  del serving, signature
  gc.collect()
  info = searcher.info()
  key = searcher.embeddings_key
  if key:
    reader = paths.checkpoint_reader(_variables_prefix(path))
    if (reader.get_variable_to_shape_map().get(key) == [searcher.num_rows, searcher.dim]
        and reader.get_variable_to_dtype_map()[key] == tf.float32):
      info["embeddings_key"] = key
  with tf.io.gfile.GFile(os.path.join(path, SEARCHER_INFO), "w") as f:
    json.dump(info, f, indent=2, sort_keys=True)
  return info


def load_searcher(path: str):
  """Loads a searcher SavedModel saved by `save_searcher`; the result has `.search(q, k)`, `.info`
  and `.release()` (frees a ScaNN index's native memory now; it is also freed when the loaded
  object is garbage-collected).

  Raises SearcherError naming the path when it is missing or not a searcher.
  """
  if not tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
    raise SearcherError(f"No searcher SavedModel at {path} (saved_model.pb missing).")
  info_path = os.path.join(path, SEARCHER_INFO)
  if not tf.io.gfile.exists(info_path):
    raise SearcherError(f"Searcher at {path} lacks {SEARCHER_INFO}; not saved by save_searcher.")
  try:
    with tf.io.gfile.GFile(info_path, "r") as f:
      info = json.load(f)
  except json.JSONDecodeError as e:
    raise SearcherError(f"Searcher description {info_path} is not valid JSON: {e}") from e
  if info.get("kind") == "scann":
    register_scann_ops()
  try:
    loaded = tf.saved_model.load(path)
  except (tf.errors.OpError, ValueError, OSError) as e:
    raise SearcherError(f"Searcher SavedModel {path} cannot be loaded (damaged or half-written): "
                        f"{error_text(e)[:300]}") from e
  if not hasattr(loaded, "search"):
    raise SearcherError(f"SavedModel at {path} has no `search` function.")
  loaded.info = info
  loaded.release = lambda: False
  # The restored functions' graphs capture the loaded variables in reference cycles: dismantled
  # when the loaded searcher goes (see `dismantle_traces`).
  state = getattr(loaded, "state", None)
  weakref.finalize(loaded, dismantle_traces, loaded.search, *loaded.signatures.values(),
                   *([state.recreate_handle] if hasattr(state, "recreate_handle") else [])
                   ).atexit = False
  if info.get("kind") == "scann":
    names = scann_resources.loaded_resource_names(loaded.search)
    if names:
      scann_resources.release_on_collect(loaded, *names)
      loaded.release = lambda: scann_resources.release_resource(*names)
  return loaded


def _variables_prefix(saved_model_dir: str) -> str:
  return os.path.join(saved_model_dir, "variables", "variables")


def read_searcher_embeddings(path: str, mmap: bool = True) -> np.ndarray:
  """The float32 [N, D] matrix a saved searcher indexes, read from its checkpoint.

  The matrix is memory-mapped (no copy, pages shared between processes) unless `mmap` is false:
  on an object store, from a local copy of the checkpoint's data shard (`paths.local_copy`).
  Raises SearcherError when the searcher at `path` does not hold its matrix (its description has
  no `embeddings_key`).
  """
  with tf.io.gfile.GFile(os.path.join(path, SEARCHER_INFO), "r") as f:
    key = json.load(f).get("embeddings_key")
  if not key:
    raise SearcherError(f"Searcher at {path} does not store its embedding matrix "
                        f"({SEARCHER_INFO} has no embeddings_key).")
  prefix = _variables_prefix(path)
  if mmap:
    entry, header = _bundle_entry(prefix + ".index", key)
    if (header.endianness == header.LITTLE and entry.dtype == tf.float32.as_datatype_enum
        and not entry.slices):
      data = f"{prefix}.data-{entry.shard_id:05d}-of-{header.num_shards:05d}"
      shape = tuple(d.size for d in entry.shape.dim)
      if entry.size != 4 * int(np.prod(shape)):
        raise SearcherError(f"{prefix}.index: {key} has {entry.size} bytes for shape {shape}.")
      with paths.local_copy(data) as local:
        if os.path.getsize(local) < entry.offset + entry.size:
          raise SearcherError(f"Searcher data file {data} is short ({os.path.getsize(local)} "
                              f"bytes; {key} ends at byte {entry.offset + entry.size}): "
                              "truncated or half-copied.")
        return np.memmap(local, dtype="<f4", mode="r", offset=entry.offset, shape=shape)
  return paths.checkpoint_reader(prefix).get_tensor(key)


def _varint(buf: bytes, pos: int):
  value = shift = 0
  while True:
    byte = buf[pos]
    pos += 1
    value |= (byte & 0x7F) << shift
    if not byte & 0x80:
      return value, pos
    shift += 7


def _table_block(data: bytes, offset: int, size: int, path: str):
  """(key, value) pairs of one uncompressed block of a TensorFlow table (LevelDB format)."""
  if data[offset + size] != 0:
    raise SearcherError(f"{path}: compressed table blocks are not supported.")
  block = data[offset:offset + size]
  num_restarts = struct.unpack("<I", block[-4:])[0]
  end, pos, key = len(block) - 4 - 4 * num_restarts, 0, b""
  while pos < end:
    shared, pos = _varint(block, pos)
    unshared, pos = _varint(block, pos)
    length, pos = _varint(block, pos)
    key = key[:shared] + block[pos:pos + unshared]
    pos += unshared
    yield key, block[pos:pos + length]
    pos += length


def _bundle_entry(index_path: str, key: str):
  """(BundleEntryProto of `key`, BundleHeaderProto) from a checkpoint's `.index` table: where the
  tensor's bytes lie in the data shards."""
  from tensorflow.core.protobuf import tensor_bundle_pb2  # pylint: disable=g-import-not-at-top
  with tf.io.gfile.GFile(index_path, "rb") as f:
    data = f.read()
  if len(data) < 48 or struct.unpack("<Q", data[-8:])[0] != 0xDB4775248B80FB57:
    raise SearcherError(f"{index_path} is not a TensorFlow checkpoint index.")
  pos = _varint(data, _varint(data, len(data) - 48)[1])[1]  # skip the metaindex handle
  index_offset, pos = _varint(data, pos)
  index_size, _ = _varint(data, pos)
  header = entry = None
  for _, handle in _table_block(data, index_offset, index_size, index_path):
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    for name, value in _table_block(data, offset, size, index_path):
      if name == b"":
        header = tensor_bundle_pb2.BundleHeaderProto.FromString(value)
      elif name == key.encode():
        entry = tensor_bundle_pb2.BundleEntryProto.FromString(value)
  if header is None or entry is None:
    raise SearcherError(f"{index_path} has no tensor {key!r}.")
  return entry, header
