"""Maximum inner product search inside an export: exact in stock ops, or ScaNN.

The searcher and the served open-QA model both need a MIPS step over the index's embedding matrix,
in one of two variants (docs/SERVING_SIGNATURES.md): `StockMips` (MatMul + TopKV2 over a
variable; any TensorFlow server runs it) and `ScannMips` (ScaNN's ops over the searcher state
saved as variables; needs the ScaNN ops where it is served, and `versioning.save_options("scann")`
when saved). `make_mips` picks one by variant name.
"""
import numpy as np
import tensorflow as tf

from realm_tf.export.versioning import VARIANTS, ServingExportError


class StockMips(tf.Module):
  """Exact MIPS in stock ops: scores = q · Eᵀ (matmul) then top_k, like OpenQAModel.retrieve.

  `embeddings` is a numpy array (copied once into a new variable) or a float32 tf.Variable
  [N, D], used as is: the open-QA model's own index variable, so an export process holds the
  matrix once. The variable is only read whole (never gathered), so reads never copy it.
  """

  kind = "stock"

  def __init__(self, embeddings, name: str = "stock_mips"):
    super().__init__(name=name)
    if isinstance(embeddings, tf.Variable):
      if embeddings.dtype != tf.float32 or embeddings.shape.rank != 2:
        raise ServingExportError(f"StockMips needs a float32 [N, D] variable, got "
                                 f"{embeddings.dtype.name} {embeddings.shape}.")
      self.embeddings = embeddings
    else:
      self.embeddings = tf.Variable(np.asarray(embeddings, np.float32), trainable=False,
                                    name="embeddings")
    self.num_rows, self.dim = self.embeddings.shape.as_list()

  def search(self, queries, k):
    """(rows int32 [B, k], scores float32 [B, k]), best first."""
    scores = tf.matmul(tf.cast(queries, tf.float32), self.embeddings, transpose_b=True)
    top = tf.math.top_k(scores, k=k, sorted=True)
    return top.indices, top.values


class ScannMips(tf.Module):
  """ScaNN MIPS (`Scann>*` ops) over the same matrix; needs the ScaNN ops where it is served."""

  kind = "scann"

  def __init__(self, embeddings: np.ndarray, scann_config=None, name: str = "scann_mips"):
    super().__init__(name=name)
    from realm_tf.retrieval.scann_searcher import ScannConfig, ScannSearcher  # pylint: disable=g-import-not-at-top
    embeddings = np.asarray(embeddings, np.float32)
    self.num_rows, self.dim = embeddings.shape
    self.searcher = ScannSearcher(embeddings, scann_config or ScannConfig())

  def search(self, queries, k):
    """(rows int32 [B, k], scores float32 [B, k]), best first (ScaNN's approximate order)."""
    rows, scores = self.searcher.search(tf.cast(queries, tf.float32), tf.cast(k, tf.int32))
    # ScaNN's ops leave the rank unknown; restore [B, k] so signatures stay batch-major.
    shape = [tf.shape(queries)[0], k if isinstance(k, int) else -1]
    return tf.reshape(rows, shape), tf.reshape(scores, shape)


def make_mips(embeddings: np.ndarray, variant: str, scann_config=None, variable=None):
  """StockMips ("stock") or ScannMips ("scann") over `embeddings` (float32 [N, D], e.g. the
  index's memory-mapped matrix); ServingExportError naming the variants for anything else.

  `variable`, a tf.Variable already holding `embeddings` (`FrozenIndex.variables()[0]`), is
  what the stock variant then searches, instead of a second in-memory copy of the matrix."""
  if variant == "stock":
    return StockMips(embeddings if variable is None else variable)
  if variant == "scann":
    return ScannMips(embeddings, scann_config)
  raise ServingExportError(f"Unknown variant {variant!r}; choose from {VARIANTS}.")
