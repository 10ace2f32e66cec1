"""Corpus embedding for a refresh: every worker embeds its shards of a document set with one
export, and the chief waits for the others' parts and merges them in manifest order.

The parts of one embedding run live in `<index_dir>/.work/<step>-<export id>/<corpus
fingerprint>` (`work_dir`), so a restarted worker skips the shards it finished. The document
set's manifests (`DocumentSet.manifest`) are read once and handed to every step here.
"""
import os
import time
from typing import Callable, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.data import corpus as corpus_lib
from realm_tf.io import chief
from realm_tf.retrieval import embed_corpus
from realm_tf.retrieval import embedder_export
from realm_tf.retrieval import refresh_round
from realm_tf.retrieval.document_set import DocumentSet, manifest_fingerprint


def work_dir(index_dir: str, embedder, manifest) -> str:
  """`<index_dir>/.work/<step>-<export id>/<corpus fingerprint>`: parts of one embedding run."""
  return os.path.join(refresh_round.work_root(index_dir),
                      f"{embedder.step:08d}-{embed_corpus.export_identity(embedder)}",
                      manifest_fingerprint(manifest))


def load_checked_embedder(export_dir: str, docs: DocumentSet, corpus_dirs,
                          strategy: tf.distribute.Strategy):
  """Checks the export's metadata against each of `corpus_dirs` of `docs` (cheap: vocabulary,
  document length; ExportError naming both files), then loads it under `strategy`."""
  metadata = embedder_export.read_metadata(export_dir)
  for d in corpus_dirs:
    embedder_export.check_corpus_compatible(metadata, docs.manifest(d), export_dir,
                                            os.path.join(d, corpus_lib.MANIFEST))
  with strategy.scope():
    return embedder_export.load_embedder(export_dir)


def merges(config) -> bool:
  """Whether this worker merges every worker's parts and publishes the bundle (a refresher's
  RefreshConfig `config`): shard 0 of the refresh job's independent workers, and of a
  multi-worker trainer's processes (which embed together under one strategy) the chief."""
  return config.shard_index == 0 and chief.is_chief_process()


class CorpusEmbedding:
  """One worker's embedding of (some directories of) a document set with one export.

  `config` is the refresher's RefreshConfig (shards, batch size, waits); `sleep` its clock.
  """

  def __init__(self, config, strategy: tf.distribute.Strategy,
               sleep: Callable[[float], None] = time.sleep):
    self.config = config
    self.strategy = strategy
    self.sleep = sleep
    self.last_stats = None

  def embed(self, embedder, docs: DocumentSet, corpus_dirs, on_part_done=None,
            keep_alive: Optional[Callable[[], None]] = None
            ) -> Optional[List[Tuple[np.ndarray, np.ndarray]]]:
    """Embeds this worker's shards of each of `corpus_dirs`; the chief (`merges`) then waits for
    every part and returns the merged (block_ids, embeddings) of each directory, others None.

    `keep_alive` (the chief's round: renewing its export lease) is called after every part this
    worker finishes and at every poll while it waits for the others'."""
    cfg = self.config

    def part_done(shard):
      if keep_alive is not None:
        keep_alive()
      if on_part_done is not None:
        on_part_done(shard)

    for d in corpus_dirs:
      stats = embed_corpus.embed_shards(
          embedder, d, work_dir(cfg.index_dir, embedder, docs.manifest(d)), self.strategy,
          cfg.num_shards, cfg.shard_index, cfg.batch_size, on_part_done=part_done,
          manifest=docs.manifest(d))
      logging.info("%s: embedded shards %s, skipped finished shards %s (%.1f blocks/s).", d,
                   stats.embedded, stats.skipped, stats.blocks_per_second)
      self.last_stats = stats
    if not merges(cfg):
      return None
    merged = []
    for d in corpus_dirs:
      manifest = docs.manifest(d)
      work = work_dir(cfg.index_dir, embedder, manifest)
      self.wait_for_parts(work, manifest, keep_alive)
      merged.append(embed_corpus.merge_parts(work, manifest, embedder.embedding_dim, d))
    return merged

  def wait_for_parts(self, work: str, manifest,
                     keep_alive: Optional[Callable[[], None]] = None) -> None:
    """Waits (back-off) for every part of `work`, however many newer exports appear meanwhile,
    calling `keep_alive` at every poll."""
    delay, start = self.config.poll_min_seconds, time.time()
    while True:
      if keep_alive is not None:
        keep_alive()
      missing = embed_corpus.missing_parts(work, manifest)
      if not missing:
        return
      timeout = self.config.part_wait_timeout
      if timeout is not None and time.time() - start > timeout:
        raise corpus_lib.CorpusError(
            f"Timed out after {timeout:.0f}s waiting for embeddings parts {missing} in {work} "
            "from the other workers.")
      logging.info("Waiting %.0fs for parts %s from other workers in %s.", delay, missing, work)
      self.sleep(delay)
      delay = min(2 * delay, self.config.poll_max_seconds)
