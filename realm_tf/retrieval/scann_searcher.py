"""ScaNN maximum inner product search as a tf.Module that saves as a SavedModel.

`scann_ops.builder(...).build()` returns a Python object that cannot be saved, so the searcher is
built once, serialised with `serialize_to_module()` (a tf.Module of variables), and the builder's
own native index is destroyed at once. `search` rebuilds the ScaNN resource inside the graph with
`tensors_to_scann(*state, shared_name=...)` (first call only; later calls find the resource by its
shared name) before `scann_search_batched`. The shared name is fixed per built index, so two
indexes loaded in one process never share a resource.

TensorFlow's resource manager keeps a named resource until it is destroyed, so every search also
marks a per-process flag variable (named after the index) and `release_resource(shared_name)`
destroys the index the flag says exists. `ScannSearcher.release()` and a loaded searcher's
`release()` (see `load_searcher`) call it, and so does garbage collection of either object.

The configuration is scaled to the corpus size following ScaNN's guidance: brute force below
`brute_force_below` points, asymmetric hashing (AH) + exact re-ordering below `tree_above`, and a
partitioning tree with ~sqrt(n) leaves + AH + re-ordering above that. Every knob can be overridden.
Loading a saved ScaNN searcher needs the ScaNN ops registered (`import scann`; see load_searcher).
"""
import dataclasses
import math
import uuid
import weakref
from typing import Optional

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.config_base import ConfigBase
from realm_tf.io.memory import return_free_memory
from realm_tf.retrieval import host_matrix
from realm_tf.retrieval.scann_resources import (FLAG_SUFFIX, flag_handle, release_on_collect,
                                               release_resource)
from realm_tf.retrieval.searcher import Searcher, SearcherError, dismantle_traces
from realm_tf.utils.custom_ops import register_scann_ops, scann_ops

MODES = ("auto", "brute_force", "ah", "tree_ah")
# Who re-scores the candidates exactly: ScaNN, with a float copy of its own in its state; or
# "gather": ScaNN returns the asymmetric-hashing candidates only and the searcher scores them with
# rows gathered from its `embeddings` variable (ORQA's way; the matrix is held once).
RESCORINGS = ("scann", "gather")


@dataclasses.dataclass(frozen=True)
class ScannConfig(ConfigBase):
  """ScaNN knobs; `None` means "derive from the corpus size" (see `for_rows`)."""
  mode: str = "auto"                       # one of MODES
  brute_force_below: int = 20_000          # auto: brute force for fewer points than this
  tree_above: int = 100_000                # auto: tree + AH from this many points on
  num_leaves: Optional[int] = None         # tree: default ~sqrt(n)
  num_leaves_to_search: Optional[int] = None  # tree: default ~10% of the leaves (at least 8)
  training_sample_size: Optional[int] = None  # tree/AH: default min(n, 250k)
  spherical: bool = False                  # tree: spherical k-means (normalised embeddings)
  dimensions_per_block: int = 2            # AH: dims per sub-space
  anisotropic_quantization_threshold: float = 0.2  # AH: MIPS-aware quantization (nan = off)
  reordering_num_neighbors: Optional[int] = None   # AH: default 100 (re-scored exactly)
  num_neighbors: int = 10                  # default k baked into the config
  training_threads: int = 0                # 0 = all cores
  parallel_search: bool = True             # shard a query batch over threads
  rescoring: str = "scann"                 # one of RESCORINGS (AH modes; brute force is exact)

  def for_rows(self, num_rows: int) -> "ScannConfig":
    """Returns a copy with the mode and every `None` knob filled in for `num_rows` points."""
    if self.mode not in MODES:
      raise SearcherError(f"Unknown ScaNN mode {self.mode!r}; choose from {MODES}.")
    if self.rescoring not in RESCORINGS:
      raise SearcherError(f"Unknown rescoring {self.rescoring!r}; choose from {RESCORINGS}.")
    mode = self.mode
    if mode == "auto":
      if num_rows < self.brute_force_below:
        mode = "brute_force"
      elif num_rows < self.tree_above:
        mode = "ah"
      else:
        mode = "tree_ah"
    num_leaves = self.num_leaves
    to_search = self.num_leaves_to_search
    if mode == "tree_ah":
      num_leaves = num_leaves or max(2, int(round(math.sqrt(num_rows))))
      num_leaves = min(num_leaves, num_rows)
      to_search = to_search or min(num_leaves, max(8, num_leaves // 10))
    sample = self.training_sample_size or min(num_rows, 250_000)
    reorder = self.reordering_num_neighbors or max(100, self.num_neighbors)
    return dataclasses.replace(self, mode=mode, num_leaves=num_leaves,
                               num_leaves_to_search=to_search,
                               training_sample_size=min(sample, num_rows),
                               reordering_num_neighbors=reorder,
                               rescoring="scann" if mode == "brute_force" else self.rescoring)


def scann_builder(embeddings: np.ndarray, cfg: ScannConfig, ops=None):
  """ScaNN's builder for a resolved `cfg`, from `ops` (default: the TF ops; `scann_ops_pybind`
  gives the same index through ScaNN's Python API, which benchmarks compare with)."""
  b = (ops or scann_ops()).builder(embeddings, cfg.num_neighbors, "dot_product")
  if cfg.mode == "brute_force":
    return b.score_brute_force()
  if cfg.mode == "tree_ah":
    b = b.tree(num_leaves=cfg.num_leaves, num_leaves_to_search=cfg.num_leaves_to_search,
               training_sample_size=cfg.training_sample_size, spherical=cfg.spherical)
  b = b.score_ah(cfg.dimensions_per_block,
                 anisotropic_quantization_threshold=cfg.anisotropic_quantization_threshold,
                 training_sample_size=cfg.training_sample_size)
  return b.reorder(cfg.reordering_num_neighbors) if cfg.rescoring == "scann" else b


class ScannSearcher(Searcher):
  """Approximate MIPS with ScaNN's TF ops; saves as a SavedModel (Scann namespace whitelisted)."""

  kind = "scann"
  embeddings_key = "state/dataset/.ATTRIBUTES/VARIABLE_VALUE"  # ScaNN's float copy, row order

  def __init__(self, embeddings, config: ScannConfig = ScannConfig(),
               name: str = "scann_searcher"):
    # One copy at most (a tensor, e.g. over a memory-mapped file, is used as is): ScaNN's builder
    # would convert an array with two.
    embeddings = host_matrix.to_tensor(embeddings)
    if embeddings.shape.rank != 2:
      raise SearcherError(f"Embeddings must be a matrix [N, D]; got shape {embeddings.shape}.")
    super().__init__(int(embeddings.shape[0]), int(embeddings.shape[1]), name=name)
    self.config = config.for_rows(self.num_rows)
    if self.config.mode != "brute_force" and self.num_rows < 16:
      raise SearcherError(f"ScaNN mode {self.config.mode!r} needs at least 16 points; "
                          f"got {self.num_rows}.")
    register_scann_ops()
    self.shared_name = f"realm_scann_{uuid.uuid4().hex}"
    built = scann_builder(embeddings, self.config).set_n_training_threads(
        self.config.training_threads).build()
    self.state = built.serialize_to_module()
    # The builder's index lives in the resource manager under its own name; the state's copy is
    # all `search` needs.
    tf.raw_ops.DestroyResourceOp(resource=built.searcher_handle, ignore_lookup_error=False)
    del built
    return_free_memory()  # the builder's float copy and scratch, freed just now
    if self.config.rescoring == "gather":
      # Adopts the tensor's buffer: the searcher's one float copy, saved as `embeddings_key`.
      self.embeddings = tf.Variable(embeddings, trainable=False, name="embeddings")
      self.embeddings_key = "embeddings/.ATTRIBUTES/VARIABLE_VALUE"
    del embeddings
    release_on_collect(self, self.shared_name)
    # Saving traces the state's own `recreate_handle`, whose graph captures the state's variables
    # in a reference cycle: dismantled when the searcher goes (see `dismantle_traces`).
    weakref.finalize(self, dismantle_traces, self.state.recreate_handle).atexit = False
    logging.info("Built ScaNN %s searcher over %d x %d points.", self.config.mode,
                 self.num_rows, self.dim)
    # Search-time knobs live in variables: they can be re-tuned without rebuilding the index,
    # and the saved values travel with the SavedModel.
    self._reorder = tf.Variable(
        -1 if self.config.mode == "brute_force" else self.config.reordering_num_neighbors,
        dtype=tf.int32, trainable=False, name="reordering_num_neighbors")
    self._leaves = tf.Variable(
        self.config.num_leaves_to_search if self.config.mode == "tree_ah" else -1,
        dtype=tf.int32, trainable=False, name="num_leaves_to_search")

  def set_search_params(self, num_leaves_to_search: Optional[int] = None,
                        reordering_num_neighbors: Optional[int] = None) -> None:
    """Re-tunes the search-time knobs (leaves searched, candidates re-ordered) in place."""
    if num_leaves_to_search is not None:
      if self.config.mode != "tree_ah":
        raise SearcherError("num_leaves_to_search applies to the tree_ah mode only.")
      self._leaves.assign(int(num_leaves_to_search))
      self.config = dataclasses.replace(self.config, num_leaves_to_search=num_leaves_to_search)
    if reordering_num_neighbors is not None:
      if self.config.mode == "brute_force":
        raise SearcherError("reordering_num_neighbors does not apply to brute_force mode.")
      self._reorder.assign(int(reordering_num_neighbors))
      self.config = dataclasses.replace(self.config,
                                        reordering_num_neighbors=reordering_num_neighbors)

  def release(self) -> bool:
    """Frees the native index built by the first search (its variables go with the object);
    True when there was one."""
    return release_resource(self.shared_name)

  def info(self) -> dict:
    info = super().info()
    info["config"] = dataclasses.asdict(self.config)
    info["shared_name"] = self.shared_name
    return info

  def _handle(self):
    s = self.state
    handle = scann_ops().tensors_to_scann(
        s.dataset, s.scann_config, s.serialized_partitioner, s.datapoint_to_token,
        s.ah_codebook, s.hashed_dataset, s.int8_dataset, s.int8_multipliers, s.dp_norms,
        shared_name=self.shared_name)
    with tf.control_dependencies([handle]), tf.device("/device:CPU:0"):
      flag = flag_handle(self.shared_name + FLAG_SUFFIX)
      live = tf.raw_ops.AssignVariableOp(resource=flag, value=True)
    with tf.control_dependencies([live]):
      return tf.identity(handle)

  def _search(self, queries, k):
    pre = self._reorder
    pre = tf.where(pre < 0, pre, tf.maximum(pre, k))
    if self.config.rescoring == "gather":
      return self._gather_rescored(queries, k, pre)
    rows, scores = scann_ops().scann_search_batched(
        self._handle(), queries, k, pre, self._leaves, self.config.parallel_search)
    return rows, scores

  def _gather_rescored(self, queries, k, num_candidates):
    """ORQA's retrieval: ScaNN's `num_candidates` asymmetric-hashing candidates, scored exactly
    against rows gathered from `embeddings`, the best k of them kept."""
    rows, _ = scann_ops().scann_search_batched(
        self._handle(), queries, num_candidates, num_candidates, self._leaves,
        self.config.parallel_search)
    rows = tf.reshape(rows, [tf.shape(queries)[0], -1])
    found = rows >= 0  # fewer candidates than asked for (small leaves) come back as -1
    candidates = tf.gather(self.embeddings, tf.maximum(rows, 0))      # [B, C, D]
    scores = tf.einsum("bd,bcd->bc", queries, candidates)
    scores = tf.where(found, scores, tf.constant(-np.inf, tf.float32))
    best, pos = tf.math.top_k(scores, tf.minimum(k, tf.shape(scores)[1]), sorted=True)
    return tf.gather(rows, pos, batch_dims=1), best
