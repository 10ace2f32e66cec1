"""The searcher interface shared by every MIPS index, plus save/load and recall helpers.

A searcher is a `tf.Module` whose `search(query_embeddings [B, D], k)` returns the `k` rows of the
index's embedding matrix with the largest inner products, as `(rows int32 [B, k], scores float32
[B, k])`, best first. Searchers save as SavedModels (`save_searcher`) and reload in any process with
`load_searcher`, which registers the ScaNN ops first so both kinds load the same way.
"""
import json
import os
from typing import Optional

import numpy as np
import tensorflow as tf

SEARCHER_INFO = "realm_searcher.json"


class SearcherError(ValueError):
  """A searcher cannot be built from, or loaded at, the given input."""


class Searcher(tf.Module):
  """Base class: maximum inner product search over a fixed [N, D] float32 embedding matrix.

  Subclasses implement `_search(queries, k)`; `search` is the traced, saved entry point.
  """

  kind = "abstract"

  def __init__(self, num_rows: int, dim: int, name: Optional[str] = None):
    super().__init__(name=name)
    if num_rows <= 0:
      raise SearcherError("Cannot build a searcher over an empty embedding matrix.")
    self.num_rows = int(num_rows)
    self.dim = int(dim)
    self._num_rows_t = tf.constant(self.num_rows, tf.int32)
    self.search = tf.function(
        self._checked_search,
        input_signature=[tf.TensorSpec([None, self.dim], tf.float32, name="query_embeddings"),
                         tf.TensorSpec([], tf.int32, name="k")])

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

  def info(self) -> dict:
    """JSON-serialisable description (kind, size, resolved configuration)."""
    return {"kind": self.kind, "num_rows": self.num_rows, "dim": self.dim}


def save_searcher(searcher: Searcher, path: str) -> None:
  """Saves `searcher` as a SavedModel at `path` (signature `serving_default` = search).

  The ScaNN namespace is whitelisted so ScaNN searchers save; the description is written beside the
  SavedModel as `realm_searcher.json`.
  """
  signature = searcher.search.get_concrete_function()

  def serve(query_embeddings, k):
    rows, scores = searcher.search(query_embeddings, k)
    return {"rows": rows, "scores": scores}

  serving = tf.function(serve, input_signature=signature.structured_input_signature[0])
  tf.saved_model.save(searcher, path, signatures={"serving_default": serving},
                      options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]))
  with tf.io.gfile.GFile(os.path.join(path, SEARCHER_INFO), "w") as f:
    json.dump(searcher.info(), f, indent=2, sort_keys=True)


def register_scann_ops() -> None:
  """Imports ScaNN's TF ops so SavedModels using `Scann>*` ops can be loaded."""
  from scann.scann_ops.py import scann_ops  # pylint: disable=g-import-not-at-top,unused-import
  del scann_ops


def load_searcher(path: str):
  """Loads a searcher SavedModel saved by `save_searcher`; the result has `.search(q, k)` and `.info`.

  Raises SearcherError naming the path when it is missing or not a searcher.
  """
  if not tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
    raise SearcherError(f"No searcher SavedModel at {path} (saved_model.pb missing).")
  info_path = os.path.join(path, SEARCHER_INFO)
  if not tf.io.gfile.exists(info_path):
    raise SearcherError(f"Searcher at {path} lacks {SEARCHER_INFO}; not saved by save_searcher.")
  with tf.io.gfile.GFile(info_path, "r") as f:
    info = json.load(f)
  if info.get("kind") == "scann":
    register_scann_ops()
  loaded = tf.saved_model.load(path)
  if not hasattr(loaded, "search"):
    raise SearcherError(f"SavedModel at {path} has no `search` function.")
  loaded.info = info
  return loaded


def exact_top_k_numpy(embeddings: np.ndarray, queries: np.ndarray, k: int):
  """Reference exact MIPS in NumPy: (rows [B, k] int64, scores [B, k] float32), best first."""
  scores = queries.astype(np.float32) @ embeddings.astype(np.float32).T
  part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
  part_scores = np.take_along_axis(scores, part, axis=1)
  order = np.argsort(-part_scores, axis=1, kind="stable")
  return np.take_along_axis(part, order, axis=1), np.take_along_axis(part_scores, order, axis=1)


def recall_at_k(approx_rows, exact_rows, k: Optional[int] = None) -> float:
  """Mean fraction of the exact top-k rows that the approximate top-k also returned."""
  approx_rows, exact_rows = np.asarray(approx_rows), np.asarray(exact_rows)
  k = k or exact_rows.shape[1]
  hits = [len(set(a[:k].tolist()) & set(e[:k].tolist())) for a, e in zip(approx_rows, exact_rows)]
  return float(np.sum(hits)) / float(k * len(exact_rows)) if len(exact_rows) else 0.0
