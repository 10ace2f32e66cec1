"""Exact maximum inner product search in stock TensorFlow ops, tiled over the documents.

Scores are computed one tile of `tile_size` documents at a time and folded into a running top-k,
so a batch of B queries needs O(B × (tile_size + k)) working memory instead of O(B × N). Only stock
ops are used (matmul, top_k, gather, while_loop), so the SavedModel runs in stock TF Serving.
"""
import dataclasses

import numpy as np
import tensorflow as tf

from realm_tf.config_base import ConfigBase
from realm_tf.retrieval import host_matrix
from realm_tf.retrieval.searcher import Searcher, SearcherError


@dataclasses.dataclass(frozen=True)
class BruteForceConfig(ConfigBase):
  """Knobs of the exact searcher: documents scored per tile (memory O(batch × tile_size))."""
  tile_size: int = 16384


class BruteForceSearcher(Searcher):
  """Exact top-k by inner product over an [N, D] float32 matrix held in one variable.

  The variable holds the only copy the searcher makes (`host_matrix.to_tensor`): a numpy array
  or memory map is copied once, a slice at a time; a tensor (e.g. `host_matrix.mapped_tensor`
  over a `.npy` file) is adopted as is.
  """

  kind = "brute_force"
  embeddings_key = "embeddings/.ATTRIBUTES/VARIABLE_VALUE"

  def __init__(self, embeddings, config: BruteForceConfig = BruteForceConfig(),
               name: str = "brute_force_searcher"):
    shape = tuple(int(d) for d in getattr(embeddings, "shape", np.shape(embeddings)))
    if len(shape) != 2:
      raise SearcherError(f"Embeddings must be a matrix [N, D]; got shape {shape}.")
    if config.tile_size <= 0:
      raise SearcherError(f"tile_size must be positive; got {config.tile_size}.")
    super().__init__(shape[0], shape[1], name=name)
    self.config = config
    # One copy of the matrix: the variable adopts the buffer `to_tensor` fills (a tensor's own).
    self.embeddings = tf.Variable(host_matrix.to_tensor(embeddings), trainable=False,
                                  name="embeddings")
    self._tile = tf.constant(min(config.tile_size, self.num_rows), tf.int32)

  def info(self) -> dict:
    info = super().info()
    info["config"] = dataclasses.asdict(self.config)
    return info

  def _search(self, queries, k):
    n = self._num_rows_t
    tile = self._tile
    if self.num_rows <= self.config.tile_size:
      scores = tf.matmul(queries, self.embeddings, transpose_b=True)
      top_scores, top_rows = tf.math.top_k(scores, k, sorted=True)
      return top_rows, top_scores

    batch = tf.shape(queries)[0]
    num_tiles = (n + tile - 1) // tile
    best_scores = tf.fill([batch, k], tf.constant(-np.inf, tf.float32))
    best_rows = tf.zeros([batch, k], tf.int32)

    def body(t, best_scores, best_rows):
      start = t * tile
      size = tf.minimum(tile, n - start)
      block = tf.slice(self.embeddings, [start, 0], [size, -1])
      scores = tf.matmul(queries, block, transpose_b=True)          # [B, size]
      cand_scores = tf.concat([best_scores, scores], axis=1)       # [B, k + size]
      tile_rows = tf.broadcast_to(start + tf.range(size)[tf.newaxis, :], [batch, size])
      cand_rows = tf.concat([best_rows, tile_rows], axis=1)
      top_scores, pos = tf.math.top_k(cand_scores, k, sorted=True)
      return t + 1, top_scores, tf.gather(cand_rows, pos, batch_dims=1)

    _, best_scores, best_rows = tf.while_loop(
        lambda t, *_: t < num_tiles, body, [tf.constant(0), best_scores, best_rows],
        shape_invariants=[tf.TensorShape([]), tf.TensorShape([None, None]),
                          tf.TensorShape([None, None])],
        parallel_iterations=1)
    return best_rows, best_scores
