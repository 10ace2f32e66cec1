"""The document set an index bundle covers: corpus directories, later ones overriding earlier
blocks with the same id, minus removed block ids.

The refresher records it in each bundle's manifest (`bundle.bundle_manifest`, with the removed ids
in `removed_block_ids.npy`), so later full refreshes keep additions and removals; `combine` applies
it to embedding parts, `read_ids_file` reads a `--remove` file.
"""
import dataclasses
import hashlib
import json
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from realm_tf.data import corpus as corpus_lib


@dataclasses.dataclass
class DocumentSet:
  """Corpus directories (base first, later ones override by block id) minus removed block ids.

  Each directory's manifest is read once, by the first call that needs it, and handed to every
  later one (`manifest`): one refresh reads each corpus manifest once.
  """
  corpus_dirs: List[str]
  removed: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros([0], np.int64))
  _manifests: Dict[str, Dict] = dataclasses.field(default_factory=dict, repr=False,
                                                  compare=False)

  def manifest(self, corpus_dir: str) -> Dict:
    """`corpus_dir`'s manifest, checked (an empty corpus is a CorpusError naming it)."""
    if corpus_dir not in self._manifests:
      self._manifests[corpus_dir] = load_nonempty_manifest(corpus_dir)
    return self._manifests[corpus_dir]

  def share_manifests(self, *others: "DocumentSet") -> None:
    """Takes the manifests `others` have read already, so they are not read again here."""
    for other in others:
      for d, manifest in other._manifests.items():  # pylint: disable=protected-access
        self._manifests.setdefault(d, manifest)

  def fingerprints(self) -> List[str]:
    """Each directory's corpus fingerprint, in order."""
    return [manifest_fingerprint(self.manifest(d)) for d in self.corpus_dirs]

  def fingerprint(self) -> str:
    """The base corpus fingerprint when unchanged, else a hash of all parts and removals."""
    fps = self.fingerprints()
    if len(fps) == 1 and not len(self.removed):
      return fps[0]
    key = json.dumps({"corpora": fps, "removed": hashlib.sha256(
        np.asarray(sorted(self.removed), np.int64).tobytes()).hexdigest()}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def load_nonempty_manifest(corpus_dir: str) -> Dict:
  """`corpus.load_manifest` plus a clear error for an empty corpus."""
  manifest = corpus_lib.load_manifest(corpus_dir)
  if int(manifest["num_blocks"]) <= 0 or not manifest["shards"]:
    raise corpus_lib.CorpusError(
        f"Corpus {os.path.join(corpus_dir, corpus_lib.MANIFEST)} is empty (0 blocks): "
        "nothing to index.")
  return manifest


def manifest_fingerprint(manifest: Dict) -> str:
  """A corpus manifest's fingerprint (recorded, or computed from it)."""
  return manifest.get("fingerprint") or corpus_lib.corpus_fingerprint(manifest)


def read_ids_file(path: str) -> np.ndarray:
  """Block ids to remove: one integer per line; blank lines and `#` comments ignored."""
  if not tf.io.gfile.exists(path):
    raise corpus_lib.CorpusError(f"Block ids file {path} does not exist.")
  ids = []
  with tf.io.gfile.GFile(path, "r") as f:
    for line_no, line in enumerate(f, 1):
      line = line.split("#", 1)[0].strip()
      if not line:
        continue
      try:
        ids.append(int(line))
      except ValueError as e:
        raise corpus_lib.CorpusError(
            f"{path}:{line_no}: expected one integer block id per line, got {line!r}.") from e
  return np.asarray(ids, np.int64)


def combine(parts: Sequence[Tuple[np.ndarray, np.ndarray]], removed: np.ndarray
            ) -> Tuple[np.ndarray, np.ndarray]:
  """Concatenates (block_ids, embeddings) parts; a later part replaces earlier rows of the same
  block id; rows whose id is in `removed` are dropped. Returns (block_ids, embeddings)."""
  ids, emb = parts[0]
  for new_ids, new_emb in parts[1:]:
    keep = ~np.isin(ids, new_ids)
    ids = np.concatenate([ids[keep], new_ids])
    emb = np.concatenate([np.asarray(emb)[keep], new_emb])
  if len(removed):
    keep = ~np.isin(ids, removed)
    if not keep.all():
      ids, emb = ids[keep], np.asarray(emb)[keep]
  return np.asarray(ids, np.int64), np.asarray(emb, np.float32)
