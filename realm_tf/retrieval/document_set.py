"""The document set an index bundle covers: corpus directories, later ones overriding earlier
blocks with the same id, minus removed block ids.

The refresher records it in each bundle's manifest (`to_manifest`, with the removed ids in
`removed_block_ids.npy`), so later full refreshes keep additions and removals; `combine` applies
it to embedding parts, `read_ids_file` reads a `--remove` file.
"""
import dataclasses
import hashlib
import json
from typing import Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from realm_tf.data import corpus as corpus_lib


@dataclasses.dataclass
class DocumentSet:
  """Corpus directories (base first, later ones override by block id) minus removed block ids."""
  corpus_dirs: List[str]
  removed: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros([0], np.int64))

  def fingerprints(self) -> List[str]:
    return [corpus_fingerprint(d) for d in self.corpus_dirs]

  def fingerprint(self) -> str:
    """The base corpus fingerprint when unchanged, else a hash of all parts and removals."""
    fps = self.fingerprints()
    if len(fps) == 1 and not len(self.removed):
      return fps[0]
    key = json.dumps({"corpora": fps, "removed": hashlib.sha256(
        np.asarray(sorted(self.removed), np.int64).tobytes()).hexdigest()}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]

  def to_manifest(self) -> Dict:
    return {"corpus_dirs": list(self.corpus_dirs), "corpus_fingerprints": self.fingerprints(),
            "num_removed": int(len(self.removed))}


def corpus_fingerprint(corpus_dir: str) -> str:
  """The fingerprint of a corpus directory's manifest (recorded, or computed from it)."""
  manifest = corpus_lib.load_manifest(corpus_dir)
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
