"""Publishing a refreshed index: build the searcher, check its recall against exact search, and
publish the bundle with the manifest that says what it holds.

The one writer of a refreshed bundle's manifest (the import of Google's released index records
its own source beside the same fields). A searcher below `min_recall` is refused with
RecallTooLowError and nothing is published; the searcher's native index is freed once the
bundle is written (readers load the bundle's copy).
"""
from typing import Dict, Optional

from absl import logging

from realm_tf.data import corpus as corpus_lib
from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.retrieval import refresh_round
from realm_tf.retrieval.document_set import DocumentSet
from realm_tf.retrieval.recall_check import RECALL_K, build_and_check, sample_query_embeddings


def publish_index(config, num_replicas: int, embedder, docs: DocumentSet, block_ids,
                  embeddings, extra: Optional[Dict] = None, source_export: Optional[str] = None,
                  rnd: Optional[refresh_round.Round] = None):
  """Builds and checks the searcher over `embeddings` (rows `block_ids` of `docs`) and publishes
  the bundle under `config.index_dir` (a RefreshConfig); returns (bundle, staleness or None).
  With the refresh round `rnd`, its staleness is recorded in the manifest (read last, as the
  bundle goes live) and logged."""
  if len(block_ids) == 0:
    raise corpus_lib.CorpusError(f"The document set {docs.corpus_dirs} is empty after removing "
                                 f"{len(docs.removed)} block ids; nothing to index.")
  shard_paths = [path for d in docs.corpus_dirs
                 for path in corpus_lib.record_paths(d, docs.manifest(d))]
  queries = sample_query_embeddings(embedder, shard_paths, config.recall_queries)
  searcher, recall, k = build_and_check(embeddings, queries, config.scann, config.min_recall,
                                        config.exact_tile_size)
  manifest = bundle_lib.bundle_manifest(
      source_export=source_export or embedder.path, step=embedder.step,
      export_metadata=embedder.metadata, corpus_dirs=docs.corpus_dirs,
      corpus_fingerprints=docs.fingerprints(), corpus_fingerprint=docs.fingerprint(),
      num_removed=len(docs.removed), **{f"recall_at_{RECALL_K}": recall}, recall_k=k,
      recall_sample_size=int(len(queries)), min_recall=config.min_recall,
      num_workers=config.num_shards, num_replicas=num_replicas)
  manifest.update(extra or {})
  stale = None
  if rnd is not None:
    manifest["staleness"] = stale = refresh_round.staleness(rnd, config.model_dir)
  try:
    bundle = bundle_lib.publish(config.index_dir, export_dir=embedder.path, searcher=searcher,
                                embeddings=embeddings, block_ids=block_ids, manifest=manifest,
                                removed_block_ids=docs.removed, keep=config.keep,
                                grace_seconds=config.grace_seconds)
  finally:
    searcher.release()
  if stale is not None:
    logging.info(
        "Index v%d (export step %d) is live with the trainer at step %d: %d steps stale (%d "
        "behind as its round began + %d during the round's %.0f s; newest export: step %d).",
        bundle.version, stale["export_step"], stale["trainer_step"], stale["steps"],
        stale["lag_at_start"], stale["steps_during_round"], stale["round_seconds"],
        stale["newest_export_step"])
  return bundle, stale
