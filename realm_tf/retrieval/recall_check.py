"""The refresher's recall check: a new searcher must find what exact search finds.

`sample_query_embeddings` embeds pseudo-queries (block bodies cut to the query length) with the
export's query tower; `build_and_check` builds the ScaNN searcher over the new embeddings and
measures its recall@10 against exact (tiled brute-force) search on them, refusing a searcher
below the required minimum (`RecallTooLowError`), so a badly configured or degenerate index is
never published.
"""
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.data import corpus as corpus_lib
from realm_tf.retrieval.scann_searcher import ScannConfig, ScannSearcher
from realm_tf.retrieval.topk import TILE_QUERIES, exact_top_k
from realm_tf.text.packing import pack_query

RECALL_K = 10


class RecallTooLowError(RuntimeError):
  """The searcher's recall@10 against exact search is below the required minimum."""


_QUERY_PACKERS = {}


def _query_packer(seq_length: int, cls_id: int, sep_id: int):
  """`pack_query` traced once per process (tracing TF.Text's trimmers takes seconds)."""
  key = (seq_length, cls_id, sep_id)
  if key not in _QUERY_PACKERS:
    _QUERY_PACKERS[key] = tf.function(
        lambda body: pack_query(body, seq_length, cls_id, sep_id), autograph=False,
        input_signature=[tf.RaggedTensorSpec([None, None], tf.int32, ragged_rank=1)])
  return _QUERY_PACKERS[key]


def sample_query_embeddings(embedder, shard_paths: Sequence[str], num_queries: int,
                            seed: int = 0) -> np.ndarray:
  """Query-tower embeddings of pseudo-queries (block bodies cut to the query length).

  Drawn with a fixed seed from the document set's corpus shards (`shard_paths`, in manifest
  order), so the recall check sees the query tower's distribution rather than document
  embeddings.
  """
  paths = list(shard_paths)
  ds = corpus_lib.read_blocks("", paths=paths).map(lambda ex: ex["body_ids"])
  ds = ds.shuffle(10_000, seed=seed).take(num_queries).ragged_batch(256)
  ds = ds.map(_query_packer(embedder.query_seq_length, embedder.cls_id, embedder.sep_id))
  out = [embedder.embed_queries(packed).numpy() for packed in ds]
  return np.concatenate(out).astype(np.float32)


def build_and_check(embeddings: np.ndarray, queries: np.ndarray, scann: ScannConfig,
                    min_recall: float, exact_tile_size: int = 65536):
  """Builds the ScaNN searcher and measures recall@10 vs exact search on `queries`.

  Returns (searcher, recall, k); the caller releases the searcher. Raises RecallTooLowError below
  `min_recall` (the searcher released).
  """
  searcher = ScannSearcher(embeddings, scann)
  k = min(RECALL_K, embeddings.shape[0])
  exact_rows, _ = exact_top_k(queries, embeddings, k,
                              exact_tile_size * min(len(queries), TILE_QUERIES))
  approx_rows = searcher.search(tf.constant(queries), tf.constant(k, tf.int32))[0].numpy()
  recall = neighbour_recall(approx_rows, exact_rows, k)
  logging.info("ScaNN (%s) recall@%d against exact search on %d queries: %.4f.",
               searcher.config.mode, k, len(queries), recall)
  if recall < min_recall:
    searcher.release()
    raise RecallTooLowError(
        f"ScaNN recall@{k} = {recall:.4f} against exact search on {len(queries)} queries is below "
        f"--min_recall={min_recall}; not publishing (config: {searcher.info()['config']}).")
  return searcher, recall, k


def neighbour_recall(approx_rows, exact_rows, k: Optional[int] = None) -> float:
  """Recall@k of an approximate searcher: the mean fraction of the exact top-k rows that its
  top-k also returned."""
  approx_rows, exact_rows = np.asarray(approx_rows), np.asarray(exact_rows)
  k = k or exact_rows.shape[1]
  hits = [len(set(a[:k].tolist()) & set(e[:k].tolist())) for a, e in zip(approx_rows, exact_rows)]
  return float(np.sum(hits)) / float(k * len(exact_rows)) if len(exact_rows) else 0.0
