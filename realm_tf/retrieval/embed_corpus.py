"""Embeds every block of a corpus with an embedder export, in parallel and restartably.

Two levels of parallelism, as in the original's 16-TPU corpus embedding:

* inside one worker, `strategy.run` splits each global batch across the strategy's replicas (TPU
  cores, GPUs, or several logical CPU devices); every batch is padded to the full global batch so
  shapes stay static (TPU) and the padding rows are dropped afterwards;
* across hosts of one strategy (MultiWorkerMirroredStrategy, a TPU pod), each input pipeline
  (`distribute_datasets_from_function`, one per host) embeds its own share of the corpus shards
  and writes their parts; `embed_shards` returns on every host once all of them are written;
* across independent workers, corpus shard `i` belongs to worker `i % num_shards` (`--num_shards`,
  `--shard_index`).

Each finished corpus shard is written as one `part-<shard:05d>.npz` (block ids + embeddings + a
small JSON header naming the export and the shard's sha256) through a temporary file and an atomic
rename; a restarted worker skips parts that are complete and valid. `merge_parts` concatenates the
parts in corpus-manifest order (the index row order).
"""
import dataclasses
import hashlib
import io
import json
import os
import time
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.data import corpus as corpus_lib
from realm_tf.io import atomic
from realm_tf.io.errors import error_text
from realm_tf.retrieval.document_set import load_nonempty_manifest
from realm_tf.retrieval.embedder_export import LoadedEmbedder, check_corpus_compatible
from realm_tf.text.packing import INPUT_KEYS, pack_document
from realm_tf.utils.progress import ItemProgress
from realm_tf.utils.strategy import input_pipelines

PART_PATTERN = "part-{:05d}.npz"


@dataclasses.dataclass
class EmbedStats:
  """What one `embed_shards` call did: shards embedded, skipped as already done, blocks, time."""
  embedded: List[int] = dataclasses.field(default_factory=list)
  skipped: List[int] = dataclasses.field(default_factory=list)
  num_blocks: int = 0
  seconds: float = 0.0

  @property
  def blocks_per_second(self) -> float:
    return self.num_blocks / self.seconds if self.seconds > 0 else 0.0


def export_identity(embedder: LoadedEmbedder) -> str:
  """Short hash identifying an export's metadata (step, configuration, creation time)."""
  return hashlib.sha256(json.dumps(embedder.metadata, sort_keys=True).encode()).hexdigest()[:16]


def assigned_shards(num_corpus_shards: int, num_shards: int = 1, shard_index: int = 0) -> List[int]:
  """Corpus shard indices that worker `shard_index` of `num_shards` embeds."""
  if num_shards < 1 or not 0 <= shard_index < num_shards:
    raise ValueError(f"Need 0 <= shard_index < num_shards; got {shard_index}, {num_shards}.")
  return [i for i in range(num_corpus_shards) if i % num_shards == shard_index]


def part_path(work_dir: str, shard: int) -> str:
  """`<work_dir>/part-<shard:05d>.npz`."""
  return os.path.join(work_dir, PART_PATTERN.format(shard))


def write_part(path: str, block_ids: np.ndarray, embeddings: np.ndarray, header: Dict) -> None:
  """Writes one part file through a temporary name and an atomic rename."""
  buf = io.BytesIO()
  np.savez(buf, block_ids=np.asarray(block_ids, np.int64),
           embeddings=np.asarray(embeddings, np.float32), header=np.array(json.dumps(header)))
  # unique: a restarted worker never writes into the temporary of a stale one.
  atomic.write_bytes(path, buf.getvalue(), unique=True)


def read_part(path: str) -> Tuple[np.ndarray, np.ndarray, Dict]:
  """Reads a part file → (block_ids, embeddings, header); raises ValueError if unreadable."""
  with tf.io.gfile.GFile(path, "rb") as f:
    data = np.load(io.BytesIO(f.read()), allow_pickle=False)
    return data["block_ids"], data["embeddings"], json.loads(str(data["header"]))


def _part_is_done(path: str, expected: Dict) -> bool:
  if not tf.io.gfile.exists(path):
    return False
  try:
    ids, emb, header = read_part(path)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("Ignoring unreadable part %s (%s); re-embedding its shard.", path, e)
    return False
  ok = (all(header.get(k) == v for k, v in expected.items())
        and len(ids) == expected["num_blocks"] == len(emb))
  if not ok:
    logging.warning("Part %s does not match the current export/shard; re-embedding.", path)
  return ok


_RAGGED_IDS = tf.RaggedTensorSpec([None, None], tf.int32, ragged_rank=1)
_PACKERS = {}


def _packer(seq_length: int, cls_id: int, sep_id: int, global_batch: int):
  """A traced (once per process) function: ragged block batch → padded full packed batch.

  Converting and tracing TF.Text's trimming ops takes seconds, so the packer is traced without
  AutoGraph (it has no data-dependent Python control flow) and shared by every dataset built for
  the same lengths instead of being re-traced per corpus shard.
  """
  key = (seq_length, cls_id, sep_id, global_batch)
  if key not in _PACKERS:
    @tf.function(input_signature=[{"block_id": tf.TensorSpec([None], tf.int64),
                                   "title_ids": _RAGGED_IDS, "body_ids": _RAGGED_IDS}],
                 autograph=False)
    def pack(ex):
      packed = pack_document(ex["title_ids"], ex["body_ids"], seq_length, cls_id, sep_id)
      pad = global_batch - tf.shape(ex["block_id"])[0]
      out = {k: tf.ensure_shape(tf.pad(packed[k], [[0, pad], [0, 0]]), [global_batch, seq_length])
             for k in INPUT_KEYS}
      out["block_id"] = tf.ensure_shape(
          tf.pad(ex["block_id"], [[0, pad]], constant_values=-1), [global_batch])
      return out
    _PACKERS[key] = pack
  return _PACKERS[key]


def _packed_dataset(paths: List[str], embedder: LoadedEmbedder, global_batch: int,
                    positions: Optional[List[int]] = None, replicas: int = 1):
  """Blocks of `paths` (those at `positions`, default all) → full batches of `global_batch`
  packed documents, one shard after another, then padding batches up to a multiple of
  `replicas` (the replicas this dataset feeds: each takes one batch a step, and a step that
  some cannot fill is dropped).

  Batches never straddle two shards; each row carries `shard` (its position in `paths`) and its
  `block_id`, both -1 on padding rows. One pipeline serves all shards, so its start-up cost is
  paid once per call rather than once per shard.
  """
  pack = _packer(embedder.doc_seq_length, embedder.cls_id, embedder.sep_id, global_batch)
  positions = list(range(len(paths))) if positions is None else positions

  @tf.function(autograph=False)
  def select(ex):
    return {k: ex[k] for k in ("block_id", "title_ids", "body_ids")}

  @tf.function(autograph=False)
  def tag(batch, index):
    return dict(batch, shard=tf.where(batch["block_id"] >= 0, index, -1))

  def shard_batches(index, path):
    ds = tf.data.TFRecordDataset(path, compression_type=corpus_lib.COMPRESSION)
    ds = ds.map(corpus_lib.parse_block).map(select)
    return ds.ragged_batch(global_batch).map(pack).map(lambda b: tag(b, index))

  ds = tf.data.Dataset.from_tensor_slices((tf.constant(positions, tf.int32),
                                           tf.constant([paths[i] for i in positions], tf.string)))
  ds = ds.flat_map(shard_batches)
  if replicas > 1:
    padding = tf.data.Dataset.from_tensors(
        {k: tf.fill(spec.shape, tf.constant(-1 if k in ("block_id", "shard") else 0, spec.dtype))
         for k, spec in ds.element_spec.items()})
    ds = ds.concatenate(padding.repeat(replicas - 1)).batch(replicas, drop_remainder=True)
    ds = ds.unbatch()
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
  # Nothing here is autotuned (fixed prefetch, sequential maps), and with tf.data's autotuning
  # on, the end of the pipeline (or its deletion) waited 39-40 s in 6 of 21 passes over the
  # main job's 3,867 blocks while the MiniLM tower ran (0 of 12 with it off; docs/LEARNING.md).
  options.autotune.enabled = False
  return ds.with_options(options).prefetch(2)


def _distributed_step(embedder: LoadedEmbedder, strategy: tf.distribute.Strategy,
                      jit_compile: bool = False):
  """One traced `strategy.run(embed_documents)` per (embedder, strategy, jit_compile), reused
  across calls. The replica step reads the packed INPUT_KEYS only (int32, static shapes);
  `jit_compile` XLA-compiles it."""
  cache = embedder.__dict__.setdefault("_distributed_steps", {})
  key = (id(strategy), jit_compile)
  if key not in cache:
    embed = tf.function(embedder.embed_documents, jit_compile=True,
                        autograph=False) if jit_compile else \
        embedder.embed_documents

    @tf.function(autograph=False)
    def step(batch):
      features = {k: batch[k] for k in INPUT_KEYS}
      return strategy.run(embed, args=(features,))
    cache[key] = (strategy, step)
  return cache[key][1]


def iter_embedded_shards(embedder: LoadedEmbedder, paths: List[str],
                         strategy: Optional[tf.distribute.Strategy] = None,
                         batch_size: int = 32, progress: Optional[ItemProgress] = None,
                         jit_compile: bool = False
                         ) -> Iterator[Tuple[int, np.ndarray, np.ndarray]]:
  """Embeds the blocks of `paths`; yields (position in paths, block_ids [n], embeddings [n, D])
  once per non-empty shard this client embeds. `progress` counts the blocks as they are embedded.

  Input pipeline `p` of `P` (one per host) embeds the shards at positions `p mod P`
  (`pipeline_positions`), in order: a single client yields every shard, each client of a
  MultiWorkerMirroredStrategy those of its own host.

  `batch_size` is per replica; each step embeds `batch_size × num_replicas` blocks with
  `strategy.run`. Load the embedder inside `strategy.scope()` so its variables are mirrored.
  Batches stay in host memory (their int64 block ids are read here, never on a device); the step
  takes their packed features. `jit_compile` XLA-compiles the step.
  """
  strategy = strategy or tf.distribute.get_strategy()
  count = input_pipelines(strategy)[0]

  def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
    return _packed_dataset(paths, embedder, batch_size,
                           pipeline_positions(len(paths), count, [context.input_pipeline_id]),
                           context.num_replicas_in_sync // count)

  dist = strategy.distribute_datasets_from_function(
      dataset_fn, tf.distribute.InputOptions(experimental_fetch_to_device=False))
  step = _distributed_step(embedder, strategy, jit_compile)

  def local(values):
    return np.concatenate([t.numpy() for t in strategy.experimental_local_results(values)])

  open_shards = {}  # input pipeline → (position, [ids], [embeddings]) of its shard under way
  for batch in dist:
    emb = local(step(batch))
    b_ids, b_shard = local(batch["block_id"]), local(batch["shard"])
    keep = b_ids >= 0
    if not keep.any():
      continue
    if progress is not None:
      progress.add(int(keep.sum()))
    emb, b_ids, b_shard = emb[keep], b_ids[keep], b_shard[keep]
    for shard in np.unique(b_shard):  # a shard per local pipeline at most
      rows = b_shard == shard
      shard, pipeline = int(shard), int(shard) % count
      if pipeline in open_shards and open_shards[pipeline][0] != shard:
        done = open_shards.pop(pipeline)
        yield done[0], np.concatenate(done[1]), np.concatenate(done[2])
      entry = open_shards.setdefault(pipeline, (shard, [], []))
      entry[1].append(b_ids[rows])
      entry[2].append(emb[rows].astype(np.float32))
  for position, ids, embs in sorted(open_shards.values(), key=lambda e: e[0]):
    yield position, np.concatenate(ids), np.concatenate(embs)


def pipeline_positions(num_paths: int, num_pipelines: int, pipelines: List[int]) -> List[int]:
  """Positions (in a list of `num_paths` shards) that input pipelines `pipelines` embed."""
  return [i for i in range(num_paths) if i % num_pipelines in pipelines]


def _barrier(strategy: tf.distribute.Strategy) -> None:
  """Returns once every client of a multi-client strategy has called it (a collective)."""
  ones = strategy.experimental_distribute_values_from_function(lambda _: tf.ones([1]))
  strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None).numpy()


def embed_blocks(embedder: LoadedEmbedder, paths: List[str],
                 strategy: Optional[tf.distribute.Strategy] = None,
                 batch_size: int = 32, jit_compile: bool = False
                 ) -> Tuple[np.ndarray, np.ndarray]:
  """Embeds all blocks of `paths` → (block_ids int64 [n], embeddings float32 [n, D]), in order.
  One client holds them all: under a multi-client strategy embed with `embed_shards`."""
  count, local_pipelines = input_pipelines(strategy or tf.distribute.get_strategy())
  if len(local_pipelines) < count:
    raise ValueError("embed_blocks keeps every block in one client; under a multi-client strategy "
                     "(a client per host) embed with embed_shards and merge_parts.")
  parts = list(iter_embedded_shards(embedder, paths, strategy, batch_size,
                                    jit_compile=jit_compile))
  if not parts:
    return np.zeros([0], np.int64), np.zeros([0, embedder.embedding_dim], np.float32)
  parts.sort(key=lambda p: p[0])  # pipelines of one client interleave their shards
  return (np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]))


def embed_shards(embedder: LoadedEmbedder, corpus_dir: str, work_dir: str,
                 strategy: Optional[tf.distribute.Strategy] = None, num_shards: int = 1,
                 shard_index: int = 0, batch_size: int = 32,
                 on_part_done: Optional[Callable[[int], None]] = None,
                 manifest: Optional[Dict] = None) -> EmbedStats:
  """Embeds this worker's corpus shards into `work_dir`, skipping parts already finished.

  `manifest`: the corpus manifest its caller read and checked against the export already (the
  refresher's document set); without it, it is read and checked here.

  Raises CorpusError naming the file for an empty corpus, a corrupt shard (sha256 or record
  damage) or a shard whose block count differs from the manifest, and ExportError when the export
  does not fit the corpus. `on_part_done(shard)` is called after each part is published.

  Under a strategy with several input pipelines (hosts) every client calls this with the same
  arguments and work dir: each host embeds and publishes its own share of the shards left to do,
  and the call returns on every client once all are published (`merge_parts` then holds each
  block once); the stats are this client's.
  """
  strategy = strategy or tf.distribute.get_strategy()
  manifest_path = os.path.join(corpus_dir, corpus_lib.MANIFEST)
  if manifest is None:
    manifest = load_nonempty_manifest(corpus_dir)
    check_corpus_compatible(embedder.metadata, manifest, embedder.path, manifest_path)
  tf.io.gfile.makedirs(work_dir)
  stats = EmbedStats()
  start = time.time()
  identity = export_identity(embedder)
  todo = []
  for shard in assigned_shards(len(manifest["shards"]), num_shards, shard_index):
    entry = manifest["shards"][shard]
    expected = {"export": identity, "shard_file": entry["file"], "shard_sha256": entry["sha256"],
                "num_blocks": int(entry["num_blocks"])}
    if _part_is_done(part_path(work_dir, shard), expected):
      stats.skipped.append(shard)
      continue
    shard_path = os.path.join(corpus_dir, entry["file"])
    if corpus_lib.file_sha256(shard_path) != entry["sha256"]:
      raise corpus_lib.CorpusError(f"Corpus shard {shard_path} does not match the sha256 in "
                                   f"{manifest_path} (corrupt or replaced).")
    todo.append((shard, shard_path, expected))

  def publish(position, ids, emb):
    shard, shard_path, expected = todo[position]
    if len(ids) != expected["num_blocks"]:
      raise corpus_lib.CorpusError(f"Corpus shard {shard_path} holds {len(ids)} blocks but "
                                   f"{manifest_path} lists {expected['num_blocks']}.")
    write_part(part_path(work_dir, shard), ids, emb, expected)
    stats.embedded.append(shard)
    stats.num_blocks += len(ids)
    logging.info("Embedded corpus shard %s (%d blocks).", shard_path, len(ids))
    if on_part_done is not None:
      on_part_done(shard)

  count, local_pipelines = input_pipelines(strategy)
  mine = pipeline_positions(len(todo), count, local_pipelines)
  progress = ItemProgress(sum(todo[i][2]["num_blocks"] for i in mine), "embed", "blocks")
  published, last = set(), (mine[0] if mine else 0)  # `last`: the shard an error names
  try:
    for position, ids, emb in (iter_embedded_shards(
        embedder, [t[1] for t in todo], strategy, batch_size, progress) if todo else ()):
      last = position
      publish(position, ids, emb)
      published.add(position)
  except tf.errors.DataLossError as e:
    raise corpus_lib.CorpusError(f"Corpus shard {todo[last][1]} is unreadable: "
                                 f"{error_text(e)}") from e
  except tf.errors.InvalidArgumentError as e:
    if "parse" not in e.message.lower():
      raise
    raise corpus_lib.CorpusError(f"Corpus shard {todo[last][1]} holds a record that is "
                                 f"not a block: {error_text(e)}") from e
  for empty in sorted(set(mine) - published):  # shards that produced no batch
    publish(empty, np.zeros([0], np.int64), np.zeros([0, embedder.embedding_dim], np.float32))
  if len(local_pipelines) < count:
    _barrier(strategy)  # every host's parts are published when any host returns
  stats.seconds = time.time() - start
  return stats


def missing_parts(work_dir: str, manifest: Dict) -> List[int]:
  """Corpus shard indices whose part file is not (yet) in `work_dir`."""
  return [i for i in range(len(manifest["shards"]))
          if not tf.io.gfile.exists(part_path(work_dir, i))]


def merge_parts(work_dir: str, manifest: Dict, embedding_dim: int,
                corpus_dir: str = "") -> Tuple[np.ndarray, np.ndarray]:
  """Concatenates all parts in manifest order → (block_ids [N] int64, embeddings [N, D] float32).

  Preallocates the result so peak memory is one matrix plus one part. Raises CorpusError naming a
  missing or inconsistent part.
  """
  n = int(manifest["num_blocks"])
  block_ids = np.empty([n], np.int64)
  embeddings = np.empty([n, embedding_dim], np.float32)
  row = 0
  for i, entry in enumerate(manifest["shards"]):
    path = part_path(work_dir, i)
    if not tf.io.gfile.exists(path):
      raise corpus_lib.CorpusError(f"Embeddings part {path} for corpus shard "
                                   f"{os.path.join(corpus_dir, entry['file'])} is missing.")
    ids, emb, header = read_part(path)
    if header.get("shard_sha256") != entry["sha256"] or len(ids) != int(entry["num_blocks"]):
      raise corpus_lib.CorpusError(f"Embeddings part {path} does not match corpus shard "
                                   f"{entry['file']} of the manifest.")
    block_ids[row:row + len(ids)] = ids
    embeddings[row:row + len(ids)] = emb
    row += len(ids)
  return block_ids, embeddings
