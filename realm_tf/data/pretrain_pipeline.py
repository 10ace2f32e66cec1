"""The REALM pre-training input pipeline after masking: retrieve, drop own block, add null, featurize.

    masked queries ─batch─▶ embed with the bundle's (stale) query embedder ─▶ MIPS search
      ─▶ drop the query's own block ─▶ prepend the null document ─▶ featurize candidates
         ([CLS] title [SEP] body [SEP] for the retriever, [CLS] x [SEP] body [SEP] for the reader)

Everything runs as TF ops inside tf.data, so the pipeline can be placed on tf.data service
workers. The input is ordered and each example carries its raw position `index`; a batch
reports `data_position` (one past its last raw index) so training resumes exactly.
"""
import dataclasses
from typing import Callable, Optional

import tensorflow as tf

from realm_tf.data.block_store import BlockStore
from realm_tf.text import pack_document, pack_pair

INPUT_KEYS = ("input_word_ids", "input_mask", "input_type_ids")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Shapes of the featurized pre-training batch."""
  batch_size: int = 8
  num_candidates: int = 8  # null + retrieved
  query_seq_length: int = 96
  doc_seq_length: int = 288
  joint_seq_length: int = 384


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


def featurize(batch, retrieved_ids, store: BlockStore, config: PipelineConfig,
              cls_id: int, sep_id: int):
  """Builds the RealmPretrainer batch from masked queries and their retrieved block ids."""
  b = tf.shape(batch["input_word_ids"])[0]
  c = config.num_candidates
  ids, valid = drop_own_block(retrieved_ids, batch["block_id"], c - 1)
  rows = store.rows(ids)  # [B, C-1]
  valid = tf.logical_and(valid, rows >= 0)
  docs = store.documents(rows)  # [B, C-1, Td]
  null_doc = pack_document(_empty_ragged(1), _empty_ragged(1), config.doc_seq_length,
                           cls_id, sep_id)
  x = query_wordpieces(batch["input_word_ids"], batch["input_mask"])
  x_rep = tf.gather(x, tf.repeat(tf.range(b), c - 1))
  bodies = store.bodies_ragged(tf.reshape(rows, [-1]))
  joint = pack_pair(x_rep, bodies, config.joint_seq_length, cls_id, sep_id)
  null_joint = pack_pair(x, _empty_ragged(b), config.joint_seq_length, cls_id, sep_id)
  out = {}
  for k in INPUT_KEYS:
    out[f"query/{k}"] = batch[k]
    null_k = tf.tile(null_doc[k][None], [b, 1, 1])
    out[f"candidates/{k}"] = tf.concat([null_k, docs[k]], axis=1)
    j = tf.reshape(joint[k], [b, c - 1, config.joint_seq_length])
    out[f"joint/{k}"] = tf.concat([null_joint[k][:, None], j], axis=1)
  out["candidate_mask"] = tf.concat([tf.ones([b, 1]), tf.cast(valid, tf.float32)], axis=1)
  out["retrieved_block_ids"] = ids
  for k in ("masked_positions", "masked_ids", "masked_weights", "block_id"):
    out[k] = batch[k]
  # Per example (not scalar) so the batch can be split across replicas.
  out["data_position"] = tf.fill([b], tf.reduce_max(batch["index"]) + 1)
  return out


def make_pretrain_dataset(masked: tf.data.Dataset, retrieve_fn: Callable, store: BlockStore,
                          config: PipelineConfig, cls_id: int, sep_id: int,
                          data_service: Optional[str] = None) -> tf.data.Dataset:
  """Featurized, batched pre-training examples from `start_position` on.

  Args:
    masked: ordered masked examples (the Masked example contract plus `index`, the raw position
      of the example in the repeated annotation stream), already started at `start_position`
      and with rejected examples filtered out.
    retrieve_fn: packed query features [B, Tq] → retrieved block ids [B, K] (K ≥ C).
    data_service: `grpc://host:port` of a tf.data service dispatcher to run the pipeline on.
  """
  ds = masked.batch(config.batch_size, drop_remainder=True)

  def _map(batch):
    retrieved = retrieve_fn({k: batch[k] for k in INPUT_KEYS})
    return featurize(batch, retrieved, store, config, cls_id, sep_id)

  ds = ds.map(_map, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if data_service:
    ds = ds.apply(tf.data.experimental.service.distribute(
        processing_mode="parallel_epochs",
        service=data_service, job_name="realm_pretrain"))
  return ds.prefetch(tf.data.AUTOTUNE)


def bundle_retrieve_fn(bundle, k: int) -> Callable:
  """Retrieval with an index bundle: its (stale) query embedder, then its searcher → block ids."""
  embedder = bundle.query_embedder
  searcher = bundle.searcher
  block_ids = tf.constant(bundle.block_ids, tf.int64)
  found = min(k, int(bundle.num_rows))

  @tf.autograph.experimental.do_not_convert
  def retrieve(features):
    rows, _ = searcher.search(embedder.embed_queries(features), tf.constant(found, tf.int32))
    # A corpus smaller than k leaves -1 (unknown block) columns, masked out downstream.
    return tf.pad(tf.gather(block_ids, rows), [[0, 0], [0, k - found]], constant_values=-1)

  return retrieve


def indexed_masked_examples(annotation_dir: str, masker, start_position: int = 0,
                            repeat: bool = True) -> tf.data.Dataset:
  """Masked examples carrying `index`, their raw position in the (repeated) annotation stream.

  The position, not the count of accepted examples, is what a checkpoint stores, so resuming
  skips raw records without masking them again.
  """
  from realm_tf.data import corpus  # pylint: disable=g-import-not-at-top
  records = corpus.read_annotations(annotation_dir)
  if repeat:
    records = records.repeat()
  records = records.skip(start_position).enumerate(start=start_position)

  def _mask(index, record):
    ex = masker(index, record)
    ex["index"] = index
    return ex

  ds = records.map(_mask, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.filter(lambda ex: ex["valid"])
  return ds.map(lambda ex: {k: v for k, v in ex.items() if k != "valid"})
