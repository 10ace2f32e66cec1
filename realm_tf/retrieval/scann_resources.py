"""The lifetime of ScaNN index resources in a process: which exist, and freeing them.

TensorFlow's resource manager keeps a named resource until it is destroyed, so a ScaNN searcher's
search marks a per-process flag variable (its index's shared name + FLAG_SUFFIX) beside the index
it builds; `release_resource` destroys the index that flag says exists. A built `ScannSearcher`
and a searcher loaded from a SavedModel (`searcher.load_searcher`) both free their index here,
explicitly or when garbage-collected.
"""
import weakref
from typing import Optional, Tuple

import tensorflow as tf
from tensorflow.python.eager import context  # pylint: disable=g-direct-tensorflow-import

from realm_tf.utils.custom_ops import scann_ops

FLAG_SUFFIX = "/live"


def flag_handle(flag_name: str):
  """The per-process bool variable that says an index exists (assigned by every search)."""
  return tf.raw_ops.VarHandleOp(dtype=tf.bool, shape=[], shared_name=flag_name)


def release_resource(shared_name: str, flag_name: Optional[str] = None) -> bool:
  """Destroys the ScaNN index resource `shared_name` of this process, if a search created it.

  `flag_name` is its search's flag variable (default `<shared_name>/live`). The memory is freed
  once running searches finish; a later search rebuilds the index from the searcher's variables.
  Returns True when there was one to destroy. It runs eagerly wherever it is called from: a
  finalizer can fire while a graph is being built (a TF1-style `tf.Graph().as_default()`, where
  `tf.init_scope` does not reach eager mode).
  """
  with context.eager_mode(), tf.device("/device:CPU:0"):
    flag = flag_handle(flag_name or shared_name + FLAG_SUFFIX)
    if not bool(tf.raw_ops.VarIsInitializedOp(resource=flag)):
      return False
    # The resource exists and is initialised, so the op only looks it up: the empty inputs are
    # never read (they would only be used to build a missing index).
    empty = tf.zeros([0], tf.float32)
    handle = scann_ops().tensors_to_scann(
        empty, tf.constant("", tf.string), tf.constant("", tf.string), tf.zeros([0], tf.int32),
        tf.constant("", tf.string), tf.zeros([0], tf.uint8), tf.zeros([0], tf.int8), empty, empty,
        shared_name=shared_name)
    tf.raw_ops.DestroyResourceOp(resource=handle, ignore_lookup_error=True)
    tf.raw_ops.DestroyResourceOp(resource=flag, ignore_lookup_error=True)
  return True


def release_on_collect(obj, shared_name: str, flag_name: Optional[str] = None) -> None:
  """Releases the index `shared_name` when `obj` is garbage-collected (not at interpreter exit)."""
  weakref.finalize(obj, release_resource, shared_name, flag_name).atexit = False


def loaded_resource_names(search_fn) -> Optional[Tuple[str, str]]:
  """(index resource name, flag variable name) in a loaded searcher's `search` function.

  Loading a SavedModel appends a per-load suffix to every shared name, so each loaded copy has
  its own index; the names are read back from the loaded graph. None for searchers saved without
  a flag (they cannot tell whether their index exists).
  """
  names = {}
  for concrete in getattr(search_fn, "concrete_functions", []):
    graph = concrete.graph.as_graph_def()
    for node in list(graph.node) + [n for f in graph.library.function for n in f.node_def]:
      if node.op == "Scann>TensorsToScann":
        names["index"] = node.attr["shared_name"].s.decode()
      elif node.op == "VarHandleOp" and FLAG_SUFFIX in node.attr["shared_name"].s.decode():
        names["flag"] = node.attr["shared_name"].s.decode()
  return (names["index"], names["flag"]) if len(names) == 2 else None
