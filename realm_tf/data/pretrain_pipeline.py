"""The REALM pre-training input pipeline after masking: retrieve, drop own block, add null, featurize.

    masked queries ─batch─▶ embed with the bundle's (stale) query embedder ─▶ MIPS search
      ─▶ drop the query's own block ─▶ prepend the null document ─▶ featurize candidates
         ([CLS] title [SEP] body [SEP] for the retriever, [CLS] x [SEP] body [SEP] for the reader)

Everything runs as TF ops inside tf.data (no py_function). The input is ordered and each example
carries its raw position `index`; a batch reports `data_position` (one past its last raw index) so
training resumes exactly.

tf.data service (`data_service="grpc://dispatcher:port"`): the retrieval-heavy part — masking,
batching, query embedding and MIPS search — runs on the service's workers; the cheap gathers of
`featurize` run on the trainer, against the corpus's memory-mapped BlockLookup. tf.data service
ships a dataset to its workers as a serialized graph, and a graph that *captures* a loaded
SavedModel carries every variable value in it (as constants), so the query embedder and the whole
ScaNN index would travel inside the graph, capped by the 2 GB protobuf limit.
`bundle.bundle_retrieve_fn(bundle, k, load_on_worker=True)` (realm_tf.retrieval) avoids that: the
graph holds only the functions
and the bundle's path, and each worker reads the weights and index from the bundle directory itself
(once per job, with RestoreV2), so the bundle must sit on storage every worker can read (a shared
file system, GCS). Workers must have the TF.Text and ScaNN ops registered: start them with
`python -m realm_tf.launch.data_service_worker`.
"""
import dataclasses
import hashlib
import os
from typing import Callable, List, Optional, Sequence
from urllib import parse as urlparse

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.config_base import ConfigBase
from realm_tf.data.block_lookup import BlockLookup
from realm_tf.io import paths
from realm_tf.text import pack_document, pack_pair, packing
from realm_tf.text.packing import INPUT_KEYS


@dataclasses.dataclass(frozen=True)
class PipelineConfig(ConfigBase):
  """Shapes of the featurized pre-training batch."""
  batch_size: int = 8
  num_candidates: int = 8  # null + retrieved
  query_seq_length: int = packing.QUERY_LENGTH
  doc_seq_length: int = packing.BLOCK_LENGTH
  joint_seq_length: int = packing.JOINT_LENGTH


def drop_own_block(retrieved_ids, own_ids, keep: int):
  """Removes each query's own source block ("no trivial retrieval"), keeping rank order.

  Args:
    retrieved_ids: [B, K] block ids in rank order (K ≥ keep + 1 so one can be dropped).
    own_ids: [B] the block each query was taken from (-1 if none).
    keep: how many candidates to return.
  Returns:
    (ids [B, keep], valid [B, keep] bool) — `valid` is False where fewer than `keep` remain.
  """
  own = tf.equal(retrieved_ids, tf.cast(own_ids, retrieved_ids.dtype)[:, None])
  order = tf.argsort(tf.cast(own, tf.int32), axis=1, stable=True)
  ids = tf.gather(retrieved_ids, order, batch_dims=1)[:, :keep]
  valid = tf.logical_not(tf.gather(own, order, batch_dims=1)[:, :keep])
  return ids, valid


def query_wordpieces(query_word_ids, query_mask):
  """Packed `[CLS] x [SEP] pad…` [B, Tq] → x as ragged [B, (n)] (specials stripped)."""
  lengths = tf.reduce_sum(tf.cast(query_mask, tf.int64), axis=1)
  x = tf.RaggedTensor.from_tensor(query_word_ids, lengths=lengths)
  return x[:, 1:-1]


def _empty_ragged(batch):
  return tf.RaggedTensor.from_row_lengths(tf.zeros([0], tf.int32),
                                          tf.zeros([batch], tf.int64))


def featurize(batch, retrieved_ids, lookup: BlockLookup, config: PipelineConfig,
              cls_id: int, sep_id: int):
  """Builds the RealmPretrainer batch from masked queries and their retrieved block ids; the
  candidates' wordpieces come from `lookup` and are packed here."""
  b = tf.shape(batch["input_word_ids"])[0]
  c = config.num_candidates
  ids, valid = drop_own_block(retrieved_ids, batch["block_id"], c - 1)
  # A static candidate dimension (XLA/TPU steps need one): retrieval gives at least C ids.
  ids, valid = tf.ensure_shape(ids, [None, c - 1]), tf.ensure_shape(valid, [None, c - 1])
  rows = lookup.rows(ids)  # [B, C-1]
  valid = tf.logical_and(valid, rows >= 0)
  docs = lookup.documents(rows, config.doc_seq_length, cls_id, sep_id)  # [B, C-1, Td]
  null_doc = pack_document(_empty_ragged(1), _empty_ragged(1), config.doc_seq_length,
                           cls_id, sep_id)
  x = query_wordpieces(batch["input_word_ids"], batch["input_mask"])
  x_rep = tf.gather(x, tf.repeat(tf.range(b), c - 1))
  bodies = lookup.bodies_ragged(tf.reshape(rows, [-1]))
  joint = pack_pair(x_rep, bodies, config.joint_seq_length, cls_id, sep_id)
  null_joint = pack_pair(x, _empty_ragged(b), config.joint_seq_length, cls_id, sep_id)
  out = {}
  for k in INPUT_KEYS:
    out[f"query/{k}"] = batch[k]
    null_k = tf.tile(null_doc[k][None], [b, 1, 1])
    out[f"candidates/{k}"] = tf.ensure_shape(tf.concat([null_k, docs[k]], axis=1),
                                             [None, c, config.doc_seq_length])
    j = tf.reshape(joint[k], [b, c - 1, config.joint_seq_length])
    out[f"joint/{k}"] = tf.concat([null_joint[k][:, None], j], axis=1)
  out["candidate_mask"] = tf.concat([tf.ones([b, 1]), tf.cast(valid, tf.float32)], axis=1)
  out["retrieved_block_ids"] = ids
  for k in ("masked_positions", "masked_ids", "masked_weights", "block_id"):
    out[k] = batch[k]
  # Per example (not scalar) so the batch can be split across replicas.
  out["data_position"] = tf.fill([b], tf.reduce_max(batch["index"]) + 1)
  return out


class DataServiceError(ValueError):
  """The tf.data service address is malformed or no dispatcher answers there."""


_RETRIEVED = "_retrieved_ids"  # the service → trainer hand-off key (before own-block removal)


def check_data_service(address: str, timeout_s: float = 10.0) -> str:
  """Validates `grpc://host:port` and waits up to `timeout_s` for a dispatcher to answer there.

  Without this check, an unreachable dispatcher makes the tf.data client retry for minutes before
  failing with a bare "Failed to register dataset"; here it is a DataServiceError naming the
  address. Returns the address unchanged.
  """
  parsed = urlparse.urlparse(address)
  if parsed.scheme != "grpc" or not parsed.hostname or parsed.port is None or \
      parsed.path not in ("", "/"):
    raise DataServiceError(f"data_service must look like grpc://host:port; got {address!r}.")
  import grpc  # pylint: disable=g-import-not-at-top
  target = f"{parsed.hostname}:{parsed.port}"
  channel = grpc.insecure_channel(target)
  try:
    grpc.channel_ready_future(channel).result(timeout=timeout_s)
  except grpc.FutureTimeoutError as e:
    raise DataServiceError(
        f"No tf.data service dispatcher answers at {address} (waited {timeout_s:g} s). Start one "
        "(and its workers) with python -m realm_tf.launch.data_service_worker --dispatcher_port="
        f"{parsed.port} --worker_port=...") from e
  finally:
    channel.close()
  return address


def make_pretrain_dataset(masked: tf.data.Dataset, retrieve_fn: Callable, lookup: BlockLookup,
                          config: PipelineConfig, cls_id: int, sep_id: int,
                          data_service: Optional[str] = None,
                          job_name: Optional[str] = None,
                          service_timeout_s: float = 10.0) -> tf.data.Dataset:
  """Featurized, batched pre-training examples from `start_position` on.

  Args:
    masked: ordered masked examples (the Masked example contract plus `index`, the raw position
      of the example in the repeated annotation stream), already started at `start_position`
      and with rejected examples filtered out.
    retrieve_fn: packed query features [B, Tq] → retrieved block ids [B, K] (K ≥ C).
    data_service: `grpc://host:port` of a tf.data service dispatcher. Masking, batching and
      `retrieve_fn` then run on the service's workers (give a retrieve_fn from
      `bundle.bundle_retrieve_fn(..., load_on_worker=True)` so the index is not shipped inside the
      graph);
      featurization runs here. The dispatcher must be started with a fixed list of worker addresses
      (static sharding: worker i of n makes batches i, i+n, …, each batch exactly once). With one
      worker the stream equals the local one element for element; with several, batches arrive in
      the order workers finish them (same batches, not the same order).
    job_name: tf.data service job to share between consumers; None gives each iterator its own job.
      Give a name unique to this dataset (e.g. include the bundle version and start position).
    service_timeout_s: how long to wait for the dispatcher to answer before a DataServiceError.
  """
  ds = masked.batch(config.batch_size, drop_remainder=True)
  if data_service:
    check_data_service(data_service, service_timeout_s)
    # Each worker keeps every n-th batch *before* retrieval, so no query is embedded twice.
    ds = ds.shard(tf.data.experimental.SHARD_HINT, tf.data.experimental.SHARD_HINT)

  # Traced again for every new index bundle: unconverted, as every traced function here is.
  @tf.autograph.experimental.do_not_convert
  def _retrieve(batch):
    out = dict(batch)
    out[_RETRIEVED] = retrieve_fn({k: batch[k] for k in INPUT_KEYS})
    return out

  @tf.autograph.experimental.do_not_convert
  def _featurize(batch):
    batch = dict(batch)
    retrieved = batch.pop(_RETRIEVED)
    return featurize(batch, retrieved, lookup, config, cls_id, sep_id)

  ds = ds.map(_retrieve, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if data_service:
    if not getattr(retrieve_fn, "loads_on_worker", False):
      logging.warning("data_service: retrieve_fn captures its state; tf.data service will ship it "
                      "inside the dataset graph (2 GB limit). Use bundle_retrieve_fn(..., "
                      "load_on_worker=True).")
    ds = ds.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.HINT,
        service=data_service, job_name=job_name))
  ds = ds.map(_featurize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def _load_once(shared_name: str, dtype, shape, loader: Callable[[], Sequence[tf.Tensor]],
               count: int) -> List[tf.Tensor]:
  """`count` resource-variable handles holding `loader()`'s tensors, loaded once per resource scope.

  Used inside dataset functions: the variables are created by name (VarHandleOp with a shared
  name), so the first call on a tf.data (service) worker runs `loader` and later calls find the
  values already there. A race between parallel calls only repeats the load. The returned handles
  depend on the load, so readers see the values.
  """
  handles = [tf.raw_ops.VarHandleOp(dtype=dtype[i], shape=shape[i],
                                    shared_name=f"{shared_name}/{i}")
             for i in range(count)]
  initialized = tf.reduce_all(tf.stack([tf.raw_ops.VarIsInitializedOp(resource=h)
                                        for h in handles]))

  def load():
    values = loader()
    assigns = [tf.raw_ops.AssignVariableOp(resource=h, value=v) for h, v in zip(handles, values)]
    with tf.control_dependencies(assigns):
      return tf.constant(True)

  ready = tf.cond(initialized, lambda: tf.constant(True), load)
  with tf.control_dependencies([ready]):
    return [tf.identity(h) for h in handles]


def _token(*parts: str) -> str:
  return hashlib.sha1("|".join(parts).encode("utf-8")).hexdigest()[:16]


class WorkerLoadedFunction:
  """A function of a SavedModel that runs with weights read from disk where it runs.

  Calling a loaded SavedModel's function inside a dataset captures its variables, and serializing
  that dataset (which tf.data service does to ship it to workers) writes every variable value into
  the graph. Here the function is called with variables created inside the dataset function and
  restored from `<saved_model_dir>/variables/variables` (stock RestoreV2) on first use, so the graph
  carries only the function definition and the path. The SavedModel's object graph names, for each
  captured input of the function, the checkpoint key of the variable bound to it.

  Args:
    saved_model_dir: the SavedModel directory (readable by every worker).
    attr: the name of the function on the SavedModel's root object (e.g. "embed_queries").
    loaded_fn: the same function on a `tf.saved_model.load`ed copy (provides the traced graph).
  """

  loads_on_worker = True

  def __init__(self, saved_model_dir: str, attr: str, loaded_fn):
    from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
    from tensorflow.core.protobuf import trackable_object_graph_pb2  # pylint: disable=g-import-not-at-top
    self.path = saved_model_dir
    pb_path = os.path.join(saved_model_dir, "saved_model.pb")
    with tf.io.gfile.GFile(pb_path, "rb") as f:
      saved = saved_model_pb2.SavedModel.FromString(f.read())
    objects = saved.meta_graphs[0].object_graph_def
    node_ids = [c.node_id for c in objects.nodes[0].children if c.local_name == attr]
    if not node_ids or objects.nodes[node_ids[0]].WhichOneof("kind") != "function":
      raise ValueError(f"SavedModel {saved_model_dir} has no function `{attr}` on its root.")
    names = list(objects.nodes[node_ids[0]].function.concrete_functions)
    concrete = list(getattr(loaded_fn, "concrete_functions", []))
    if len(names) != 1 or len(concrete) != 1:
      raise ValueError(f"{saved_model_dir}: `{attr}` must have exactly one traced signature; "
                       f"found {len(names)}.")
    self._fn = concrete[0]
    bound = list(objects.concrete_functions[names[0]].bound_inputs)
    captured = list(self._fn.captured_inputs)
    if len(bound) != len(captured):
      raise ValueError(f"{saved_model_dir}: `{attr}` binds {len(bound)} inputs but the loaded "
                       f"function captures {len(captured)}.")
    self.prefix = os.path.join(saved_model_dir, "variables", "variables")
    reader = paths.checkpoint_reader(self.prefix)
    graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(
        reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    self._keys, self._dtypes, self._shapes, self._slots = [], [], [], []
    self._captures = list(captured)
    for i, node_id in enumerate(bound):
      kind = objects.nodes[node_id].WhichOneof("kind")
      if kind == "variable":
        keys = [a.checkpoint_key for a in graph.nodes[node_id].attributes
                if a.name == "VARIABLE_VALUE"]
        if len(keys) != 1 or keys[0] not in shapes:
          raise ValueError(f"{self.prefix}: no checkpoint value for the variable bound to input "
                           f"{i} of `{attr}`.")
        self._keys.append(keys[0])
        self._dtypes.append(dtypes[keys[0]])
        self._shapes.append(shapes[keys[0]])
        self._slots.append(i)
        self._captures[i] = None
      elif kind != "constant":
        raise ValueError(f"{saved_model_dir}: `{attr}` captures a {kind}; only variables and "
                         "constants can be loaded on a worker.")
    self._shared_name = f"realm_worker_load_{_token(os.path.abspath(self.prefix), attr)}"

  def __call__(self, *args):
    """Same inputs and outputs as the SavedModel function (structured like its signature)."""
    handles = _load_once(
        self._shared_name, self._dtypes, self._shapes,
        lambda: tf.raw_ops.RestoreV2(prefix=self.prefix, tensor_names=self._keys,
                                     shape_and_slices=[""] * len(self._keys),
                                     dtypes=self._dtypes),
        len(self._keys))
    captures = list(self._captures)
    for slot, handle in zip(self._slots, handles):
      captures[slot] = handle
    flat = tf.nest.flatten(args, expand_composites=True)
    # Returns the structured outputs (the function's own output packing).
    return self._fn._call_flat(flat, captured_inputs=captures)  # pylint: disable=protected-access


class WorkerLoadedArray:
  """A 1-D little-endian `.npy` file (e.g. block_ids.npy) read where the dataset runs, once."""

  def __init__(self, path: str):
    with tf.io.gfile.GFile(path, "rb") as f:
      version = np.lib.format.read_magic(f)
      read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                     else np.lib.format.read_array_header_2_0)
      shape, fortran, dtype = read_header(f)
      self.offset = f.tell()
    if len(shape) != 1 or fortran or dtype.byteorder == ">" or dtype.hasobject:
      raise ValueError(f"{path}: expected a 1-D little-endian array; got {dtype} {shape}.")
    self.path, self.shape, self.dtype = path, shape, tf.as_dtype(dtype.newbyteorder("="))
    self._shared_name = f"realm_worker_array_{_token(os.path.abspath(path))}"

  def value(self) -> tf.Tensor:
    def load():
      data = tf.io.read_file(self.path)
      raw = tf.strings.substr(data, self.offset, self.shape[0] * self.dtype.size)
      return [tf.reshape(tf.io.decode_raw(raw, self.dtype, little_endian=True), self.shape)]
    handle, = _load_once(self._shared_name, [self.dtype], [self.shape], load, 1)
    return tf.raw_ops.ReadVariableOp(resource=handle, dtype=self.dtype)


def indexed_masked_examples(annotation_dir: str, masker, start_position: int = 0,
                            seed: int = 0, shuffle_window: int = 16384,
                            heldout_fraction: float = 0.0, realm_query_fraction: float = 0.0,
                            role: str = "realm", num_shards: int = 1,
                            shard_index: int = 0) -> tf.data.Dataset:
  """Training's masked examples: the annotations repeated in a seeded, shuffled order
  (`corpus.positioned_stream`; input pipeline `shard_index` of `num_shards` reads its own
  windows), held-out blocks and those of other query roles left out (`corpus.in_query_split`),
  each example carrying `index`, its position in that stream.

  The position, not the count of accepted examples, is what a checkpoint stores, so resuming
  skips records without masking them again.
  """
  from realm_tf.data import corpus  # pylint: disable=g-import-not-at-top
  manifest = corpus.load_annotation_manifest(annotation_dir)
  # A stream shorter than the window would repeat records inside one window.
  window = max(1, min(shuffle_window, int(manifest["num_records"])))
  paths = corpus.record_paths(annotation_dir, manifest)
  counts = [s["num_records"] for s in manifest["shards"]]
  parsed = corpus.positioned_stream(
      paths, counts, seed, window, start_position, num_shards,
      shard_index).map(lambda position, record: (position, corpus.parse_annotation(record)),
                       num_parallel_calls=tf.data.AUTOTUNE)
  keep = None
  if heldout_fraction > 0 or realm_query_fraction > 0:
    keep = lambda r: corpus.in_query_split(corpus.record_bucket(r), heldout_fraction,
                                           realm_query_fraction, role)
    # The stream repeats: with no record to keep it would search forever. The search starts
    # where the resumed stream does and reads one record at a time, so a restore reads no shard
    # before its window's (wrapping round only when no later record is kept).
    shard = corpus.stream_origin(counts, window, start_position, num_shards, shard_index).shard
    records = tf.data.TFRecordDataset(paths[shard:] + paths[:shard],
                                      compression_type=corpus.COMPRESSION)
    if next(iter(records.map(corpus.parse_annotation).filter(keep).take(1)), None) is None:
      raise ValueError(
          f"No annotation record of {annotation_dir} is a {role} query: held-out fraction "
          f"{heldout_fraction}, REALM query fraction {realm_query_fraction} leave none.")
  return masker.dataset(parsed, start_index=None, keep_index=True, keep=keep)


def heldout_masked_examples(annotation_dir: str, masker, heldout_fraction: float
                            ) -> tf.data.Dataset:
  """The masked examples of the held-out blocks, once each, in manifest order (evaluation)."""
  from realm_tf.data import corpus  # pylint: disable=g-import-not-at-top
  records = corpus.read_annotations(annotation_dir)
  return masker.dataset(records, keep_index=True,
                        keep=lambda r: corpus.record_is_heldout(r, heldout_fraction))
