"""Small fixtures for the retrieval tests: tiny block corpora (random tokens, or six short documents
with their salient-span annotations), tiny embedder exports, clustered data.

Corpora are written with the real corpus writer (`corpus.write_shard` + `write_manifest`), so the
tests exercise the same files the corpus builder produces.
"""
import json
import os
import re
from typing import List, Optional, Sequence

import numpy as np

from realm_tf.data import corpus as corpus_lib

QUERY_LEN = 16
DOC_LEN = 32


def make_corpus(corpus_dir: str, shard_sizes: Sequence[int] = (8, 8, 8), seed: int = 0,
                doc_prefix: str = "doc", max_block_length: int = DOC_LEN,
                vocab_fingerprint: Optional[str] = None) -> List[int]:
  """Writes a corpus of random-token blocks; returns the block ids in row order."""
  if vocab_fingerprint is None:
    from realm_tf.text import vocab_fingerprint as fp  # pylint: disable=g-import-not-at-top
    vocab_fingerprint = fp()
  os.makedirs(corpus_dir, exist_ok=True)
  rng = np.random.default_rng(seed)
  shards, ids, doc = [], [], 0
  for s, size in enumerate(shard_sizes):
    records = []
    for _ in range(size):
      doc_id = f"{doc_prefix}{doc}"
      block_id = corpus_lib.block_id_for(doc_id, 0)
      title = rng.integers(1000, 30000, size=int(rng.integers(1, 4))).tolist()
      body = rng.integers(1000, 30000, size=int(rng.integers(5, 40))).tolist()
      records.append(corpus_lib.block_example(block_id, doc_id, f"Title {doc}", f"Body {doc}",
                                              title, body))
      ids.append(block_id)
      doc += 1
    path = os.path.join(corpus_dir, corpus_lib.SHARD_PATTERN.format(s, len(shard_sizes)))
    shards.append(corpus_lib.write_shard(path, records))
  corpus_lib.write_manifest(corpus_dir, shards, vocab_fingerprint, max_block_length)
  return ids


def make_retriever(seed: int = 0, query_seq_length: int = QUERY_LEN,
                   doc_seq_length: int = DOC_LEN):
  """A built `tiny` Retriever with short sequence lengths (fast on CPU)."""
  import tf_keras  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.retriever import Retriever, RetrieverConfig  # pylint: disable=g-import-not-at-top
  tf_keras.utils.set_random_seed(seed)
  config = RetrieverConfig(encoder="tiny", query_seq_length=query_seq_length,
                           doc_seq_length=doc_seq_length)
  return Retriever(config).build_towers()


def copy_export(src: str, model_dir: str, step: int, drop: Sequence[str] = ()) -> str:
  """Publishes a copy of export `src` as step `step` (same weights; cheaper than exporting).

  `drop` names files or directories to leave out, to fake a half-written export.
  """
  import json  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import embedder_export as ee  # pylint: disable=g-import-not-at-top
  dst = ee.export_path(model_dir, step)
  shutil.copytree(src, dst)
  meta_path = os.path.join(dst, ee.METADATA)
  with open(meta_path) as f:
    meta = json.load(f)
  meta["step"] = step
  with open(meta_path, "w") as f:
    json.dump(meta, f)
  for name in drop:
    path = os.path.join(dst, name)
    if os.path.isdir(path):
      shutil.rmtree(path)
    else:
      os.remove(path)
  return dst


def clustered(n: int, dim: int = 128, num_clusters: int = 64, noise: float = 0.4,
              seed: int = 0, num_queries: int = 0):
  """Gaussian clusters around random centres, float32 [n, dim] (a MIPS benchmark staple).

  With `num_queries`, returns (points, queries): queries drawn around the same centres.
  """
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(num_clusters, dim)).astype(np.float32)

  def draw(m):
    return (centres[rng.integers(0, num_clusters, m)]
            + noise * rng.normal(size=(m, dim))).astype(np.float32)

  points = draw(n)
  return (points, draw(num_queries)) if num_queries else points


# Six short documents whose salient spans (years, places) recur across them.
DOCS = [
    ("Marie Curie", "Marie Curie was born in Warsaw in 1867. She won the Nobel Prize in 1903."),
    ("Warsaw", "Warsaw is the capital of Poland. Chopin left Warsaw for Paris in 1831."),
    ("Sorbonne", "The Sorbonne is in Paris. Pierre Curie taught there in 1904."),
    ("Vistula", "The Vistula is the longest river in Poland. It reaches the sea near Gdansk."),
    ("Chopin", "Frederic Chopin was born in 1810. He died in Paris in 1849."),
    ("Nobel Prize", "Alfred Nobel founded the prize in 1895. The first prizes came in 1901."),
]


ENTITIES = re.compile(r"\b(1[0-9]{3}|Warsaw|Paris|Poland|Gdansk|Chopin)\b")


def write_corpus_and_annotations(root: str, tok, max_block_length: int = 48):
  """A corpus of `DOCS` under `root`/corpus, one block per document, and its annotations under
  `root`/annotations: each block's sentences, with years and places as salient spans (no
  spaCy). Returns (corpus_dir, annotations_dir)."""
  corpus_dir, ann_dir = os.path.join(root, "corpus"), os.path.join(root, "annotations")
  os.makedirs(corpus_dir)
  os.makedirs(ann_dir)
  blocks, annotations = [], []
  for i, (title, text) in enumerate(DOCS):
    block_id = corpus_lib.block_id_for(f"doc{i}", 0)
    blocks.append(corpus_lib.block_example(
        block_id, f"doc{i}", title, text, tok.tokenize([title])[0].numpy().tolist(),
        tok.tokenize([text])[0].numpy().tolist()))
    raw = text.encode("utf-8")
    cut = raw.index(b". ") + 1
    spans = [(m.start(), m.end()) for m in ENTITIES.finditer(text)]  # ASCII: bytes == chars
    annotations.append(corpus_lib.annotation_example(
        title, text, [(0, cut), (cut + 1, len(raw))], spans, ["X"] * len(spans), block_id))
  shard = corpus_lib.write_shard(
      os.path.join(corpus_dir, corpus_lib.SHARD_PATTERN.format(0, 1)), blocks)
  corpus_lib.write_manifest(corpus_dir, [shard], tok.fingerprint, max_block_length=max_block_length)
  entry = corpus_lib.write_shard(
      os.path.join(ann_dir, corpus_lib.ANNOTATION_SHARD_PATTERN.format(0, 1)), annotations)
  entry["num_records"] = entry.pop("num_blocks")
  with open(os.path.join(ann_dir, corpus_lib.ANNOTATION_MANIFEST), "w") as f:
    json.dump({"num_records": len(DOCS), "shards": [entry]}, f)
  return corpus_dir, ann_dir
