"""Adding and removing documents relative to the live index: only the new blocks are embedded
(with the live bundle's own embedder) and the rest of its matrix is reused.

Run while no refresh round is under way (declaring a round removes other parts). Without a live
bundle it is a full refresh with the newest export of the corpus plus the additions.
"""
import os
from typing import Optional, Sequence

import numpy as np

from realm_tf.io import paths
from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.retrieval import embedder_export
from realm_tf.retrieval import refresh_round
from realm_tf.retrieval.document_set import DocumentSet, combine, read_ids_file


def update_documents(refresher, add_dirs: Sequence[str] = (),
                     remove_ids: Optional[np.ndarray] = None,
                     remove_file: Optional[str] = None) -> Optional[bundle_lib.IndexBundle]:
  """Adds the blocks of `add_dirs` and removes `remove_ids` (and those of `remove_file`) relative
  to `refresher`'s live bundle; returns the published bundle (None on a non-chief worker)."""
  config = refresher.config
  removed = np.zeros([0], np.int64) if remove_ids is None else np.asarray(remove_ids, np.int64)
  if remove_file:
    removed = np.concatenate([removed, read_ids_file(remove_file)])
  add_dirs = [paths.absolute(d) for d in add_dirs]
  live = refresher.live_bundle()
  if live is None:
    export = embedder_export.latest_export(config.model_dir)
    docs = DocumentSet([paths.absolute(config.corpus_dir)] + add_dirs)
    for d in add_dirs:
      docs.manifest(d)  # a clear error for a missing or empty directory, before anything else
    if export is None:
      raise embedder_export.ExportError(
          f"No bundle in {config.index_dir} and no embedder export under "
          f"{embedder_export.exports_dir(config.model_dir)}: nothing to add documents to.")
    embedder = refresher.load_embedder(export, docs, docs.corpus_dirs)
    merged = refresher.embedding.embed(embedder, docs, docs.corpus_dirs)
    if merged is None:
      return None
    docs.removed = removed
    ids, emb = combine(merged, docs.removed)
    return refresher.publish(embedder, docs, ids, emb, {"build": "full"})

  docs = refresher.document_set(live)
  added_docs = DocumentSet(add_dirs)
  for d in add_dirs:
    added_docs.manifest(d)  # a clear error for a missing or empty directory
  embedder = refresher.load_embedder(os.path.join(live.path, bundle_lib.QUERY_EMBEDDER),
                                     added_docs, add_dirs)
  parts = [(np.asarray(live.block_ids, np.int64), np.asarray(live.embeddings, np.float32))]
  added = refresher.embedding.embed(embedder, added_docs, add_dirs) if add_dirs else []
  if added is None:
    return None
  added_ids = np.concatenate([p[0] for p in added]) if added else np.zeros([0], np.int64)
  # Re-adding a removed block brings it back; removing wins over an earlier addition.
  prior_removed = np.setdiff1d(docs.removed, added_ids)
  all_removed = np.union1d(prior_removed, removed)
  ids, emb = combine(parts + list(added), all_removed)
  replaced = int(np.isin(added_ids, parts[0][0]).sum())
  removed_now = int(np.isin(removed, np.concatenate([parts[0][0], added_ids])).sum())
  new_docs = DocumentSet(docs.corpus_dirs + [d for d in add_dirs if d not in docs.corpus_dirs],
                         all_removed)
  new_docs.share_manifests(docs, added_docs)
  bundle = refresher.publish(embedder, new_docs, ids, emb, {
      "build": "incremental", "previous_version": live.version,
      "changes": {"base_version": live.version, "added_dirs": list(add_dirs),
                  "added_blocks": int(len(added_ids)) - replaced, "replaced_blocks": replaced,
                  "removed_blocks": removed_now, "remove_file": remove_file}},
      source_export=live.manifest.get("source_export"))
  rnd = refresh_round.read_round(config.index_dir)
  refresh_round.remove_parts(config.index_dir,
                             rnd.work_prefix() if rnd and not rnd.final else None)
  return bundle
