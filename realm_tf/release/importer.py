"""Imports Google's released REALM/ORQA evidence index into a work directory, without
re-embedding a block.

    blocks.tfr + titles.tfr ──tokenise (RealmTokenizer)──▶ <work_dir>/corpus/ (+ lookup/)
    encoded.ckpt (block_emb) ──row slices──▶ searcher (ScaNN as ORQA, or exact) ─┐
    embedder (TF1 hub module) ──Retriever──▶ <work_dir>/release/embedder_exports/00000000 ─┴▶
                                                                   <work_dir>/index/00000001/

Row i of the three files is block id i in the corpus, row i of the block lookup and of the
bundle. The bundle's matrix is `block_emb` bit for bit. ORQA's retrieval is ScaNN (dot product,
a 1,000-leaf tree searching 100 leaves, asymmetric hashing with 2 dimensions per block, trained
on 100,000 points) whose candidates are scored exactly (`q . block_emb[ids]`); the ScaNN
searcher here re-orders exactly the candidates it returns (`reordering_num_neighbors` 0: as
many as asked for, ORQA's; more gives a better recall than ORQA had). `searcher="exact"` builds
the exact `BruteForceSearcher` instead.

Costs: every pass streams. The corpus pass holds one batch of records; the matrix is restored
slice by slice into a `.npy` file (plain writes) and enters TensorFlow without a copy: the
searcher's `embeddings` variable is that file's memory map (`host_matrix.mapped_tensor`), whose
pages are dropped while ScaNN builds and while the bundle is saved, so the searcher holds
`block_emb` once (ScaNN keeps hashing codes only: `rescoring="gather"`) and the import's peak is
ScaNN's own build (about 2.3x the matrix) or, exact, little more than the fixed cost; the query
tower is freed before the searcher is built. Refusals (row counts that differ across the
files, a checkpoint without `block_emb`, a width other than the query tower's, a record cut
short) name the file; everything is assembled in a hidden staging directory in the work dir
and renamed into place only at the end, so a refusal (or a crash) leaves nothing behind.
"""
import dataclasses
import gc
import itertools
import math
import os
import shutil
import time
import uuid
from typing import Dict, Iterator, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.config_base import ConfigBase
from realm_tf.data import block_lookup
from realm_tf.data import corpus as corpus_lib
from realm_tf.io import paths
from realm_tf.io import publish
from realm_tf.io.errors import error_text
from realm_tf.io.work_dir import WorkDir
from realm_tf.release import files
from realm_tf.release.files import ReleaseError
from realm_tf.retrieval import orqa_scann
from realm_tf.text import packing

SEARCHERS = ("scann", "exact")
RELEASE_SUBDIR = "release"          # <work_dir>/release: the query tower's export + import.json
IMPORT_RECORD = "import.json"
EXPORT_STEP = 0                     # the released embedder is the index's step-0 export
BLOCKS_PER_SHARD = 16_384           # one shuffle window per shard (docs/CORPUS.md)
TITLE_SEPARATOR = " "


@dataclasses.dataclass
class ImportConfig(ConfigBase):
  """What to import (the released files), where to, and the searcher to build."""
  blocks: str = ""                  # blocks.tfr (raw UTF-8 body texts)
  titles: str = ""                  # titles.tfr (raw UTF-8 page titles)
  embeddings: str = ""              # encoded.ckpt prefix; "": <embedder>/encoded/encoded.ckpt
  embedder: str = ""                # the TF1 embedder: hub module dir or checkpoint prefix
  work_dir: str = ""
  searcher: str = "scann"           # scann (ORQA's) | exact
  overwrite: bool = False
  num_shards: int = 0               # corpus shards; 0: one per 16,384 blocks
  query_length: int = packing.QUERY_LENGTH   # the query tower's input length (REALM's 96)
  block_length: int = packing.BLOCK_LENGTH   # [CLS] title [SEP] body [SEP] as embedded (288)
  num_attention_heads: Optional[int] = None  # default: bert_config.json, else hidden / 64
  scann_num_leaves: int = orqa_scann.NUM_LEAVES
  scann_num_leaves_to_search: int = orqa_scann.NUM_LEAVES_TO_SEARCH
  scann_training_sample_size: int = orqa_scann.TRAINING_SAMPLE_SIZE
  scann_dimensions_per_block: int = orqa_scann.DIMENSIONS_PER_BLOCK
  scann_reordering_num_neighbors: int = orqa_scann.REORDERING_NUM_NEIGHBORS  # 0: k (ORQA's)
  batch_size: int = 1024            # records per tokenisation batch (tf.data buffers ~4 per file)
  rows_per_slice: int = 65_536      # embedding rows restored at a time

  def __post_init__(self):
    if self.searcher not in SEARCHERS:
      raise ValueError(f"searcher must be one of {SEARCHERS}, got {self.searcher!r}.")

  @property
  def embeddings_prefix(self) -> str:
    """The encoded.ckpt prefix: given, or the one inside the embedder module (ORQA's layout)."""
    return self.embeddings or os.path.join(self.embedder, "encoded", "encoded.ckpt")


# ---- checks made before anything is written -----------------------------------------------------

def _embedder_source(config: ImportConfig):
  """(ArraySource, BERT scope, projection width) of the TF1 embedder; ReleaseError naming it."""
  from realm_tf.checkpoints import tf1_bert  # pylint: disable=g-import-not-at-top
  try:
    source = tf1_bert.tf1_source(config.embedder)
  except (FileNotFoundError, tf.errors.OpError, ValueError) as e:
    raise ReleaseError(f"{config.embedder}: not a TF1 embedder checkpoint ({error_text(e)}).") from None
  found = [p for p in tf1_bert.find_bert_prefixes(source.names()) if not p.startswith("reader/")]
  if len(found) != 1:
    raise ReleaseError(f"{config.embedder}: expected one BERT in the embedder, found scopes "
                       f"{found or 'none'}.")
  kernel = tf1_bert.projection_prefix(found[0]) + "dense/kernel"
  if kernel not in source:
    raise ReleaseError(f"{config.embedder}: no retrieval projection {kernel}; not a REALM/ORQA "
                       "embedder.")
  return source, found[0], int(source.shape(kernel)[-1])


def check_release(config: ImportConfig) -> Dict:
  """Checks what can be checked without a pass over the records: the embeddings checkpoint
  (block_emb, float32 [N, D]) and the query tower's width D. Returns {num_rows, width}."""
  for flag in ("blocks", "titles", "embedder", "work_dir"):
    if not getattr(config, flag):
      raise ValueError(f"--{flag} is required.")
  for path in (config.blocks, config.titles):
    if not tf.io.gfile.exists(path):
      raise ReleaseError(f"{path}: no such file.")
  num_rows, width = files.embeddings_shape(config.embeddings_prefix)
  _, _, tower_width = _embedder_source(config)
  if width != tower_width:
    raise ReleaseError(f"{config.embeddings_prefix}: block_emb is {width} wide, but the query "
                       f"tower {config.embedder} projects to {tower_width}.")
  return {"num_rows": num_rows, "width": width}


def _targets(work: WorkDir) -> Dict[str, str]:
  return {"corpus": work.corpus, "release": os.path.join(work.root, RELEASE_SUBDIR),
          "index": work.index}


# ---- the corpus pass ----------------------------------------------------------------------------

def _tokenized_batches(path: str, batch_size: int) -> Iterator:
  """(records, (ids, starts, limits) as numpy (values, row_splits)) batches of one file."""
  from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
  tokenizer = RealmTokenizer()

  def tokenize(texts):
    ids, _, limits = tokenizer.tokenize_with_offsets(texts)
    return texts, ids.flat_values, ids.row_splits, limits.flat_values

  for texts, values, splits, limits in files.record_batches(path, batch_size, tokenize):
    yield texts, values, splits, limits


def _refuse_counts(config: ImportConfig, num_rows: int, row: int, pending, iterators) -> None:
  """Counts the records left in both files and raises ReleaseError naming the file whose count
  differs from the checkpoint's rows."""
  counted = {}
  for path, batch, rest in zip((config.titles, config.blocks), pending, iterators):
    counted[path] = row + sum(len(b[0]) for b in itertools.chain([batch] if batch else [], rest))
  both = ", ".join(f"{os.path.basename(p)}: {n}" for p, n in counted.items())
  if counted[config.titles] == counted[config.blocks]:  # the checkpoint is the odd one out
    raise ReleaseError(f"{config.embeddings_prefix}: block_emb has {num_rows} rows, but the "
                       f"TFRecord files have {counted[config.blocks]} records ({both}).")
  bad = [p for p, n in counted.items() if n != num_rows]
  raise ReleaseError(f"{bad[0]}: {counted[bad[0]]} records, but {config.embeddings_prefix} has "
                     f"{num_rows} rows of block_emb ({both}).")


def _rows(config: ImportConfig, num_rows: int, stats: Dict) -> Iterator[bytes]:
  """Serialized block records of the two files in lockstep, row i = block id i; raises
  ReleaseError naming the file whose record count differs from the checkpoint's rows."""
  budget = config.block_length - 3  # [CLS] title [SEP] body [SEP]
  row = 0
  iterators = (_tokenized_batches(config.titles, config.batch_size),
               _tokenized_batches(config.blocks, config.batch_size))
  for t_batch, b_batch in itertools.zip_longest(*iterators):
    if (t_batch is None or b_batch is None or len(t_batch[0]) != len(b_batch[0])
        or row + len(t_batch[0]) > num_rows):
      _refuse_counts(config, num_rows, row, (t_batch, b_batch), iterators)
    t_texts, t_ids, t_splits, _ = t_batch
    b_texts, b_ids, b_splits, b_limits = b_batch
    for j in range(len(t_texts)):
      title_ids = t_ids[t_splits[j]:t_splits[j + 1]][:budget - 1]
      body_ids = b_ids[b_splits[j]:b_splits[j + 1]]
      body = b_texts[j]
      keep = budget - len(title_ids)
      if len(body_ids) > keep:  # cut where the last kept wordpiece ends
        body = body[:int(b_limits[b_splits[j] + keep - 1])]
        body_ids = body_ids[:keep]
        stats["truncated_blocks"] += 1
      try:
        title_text, body_text = t_texts[j].decode("utf-8"), body.decode("utf-8")
      except UnicodeDecodeError as e:
        raise ReleaseError(f"{config.titles} / {config.blocks}: record {row + 1} is not UTF-8 "
                           f"({e}).") from None
      yield corpus_lib.block_example(row, title_text, title_text, body_text,
                                     title_ids.tolist(), body_ids.tolist())
      row += 1
  if row != num_rows:
    _refuse_counts(config, num_rows, row, (None, None), iterators)


def write_corpus(config: ImportConfig, corpus_dir: str, num_rows: int) -> Dict:
  """Writes the block corpus (shards of consecutive rows, manifest) and its block lookup."""
  from realm_tf.text import vocab_fingerprint  # pylint: disable=g-import-not-at-top
  os.makedirs(corpus_dir)
  num_shards = config.num_shards or max(1, math.ceil(num_rows / BLOCKS_PER_SHARD))
  per_shard = math.ceil(num_rows / num_shards)
  stats = {"truncated_blocks": 0}
  rows = _rows(config, num_rows, stats)
  shards = []
  for s in range(num_shards):
    path = os.path.join(corpus_dir, corpus_lib.SHARD_PATTERN.format(s, num_shards))
    shards.append(corpus_lib.write_shard(path, itertools.islice(rows, per_shard)))
  for _ in rows:  # runs the generator's end-of-files check (surplus records raise)
    pass
  release = {"blocks": paths.absolute(config.blocks), "titles": paths.absolute(config.titles),
             "embeddings": paths.absolute(config.embeddings_prefix)}
  manifest = corpus_lib.write_manifest(
      corpus_dir, shards, vocab_fingerprint(), config.block_length,
      extra={"source": "orqa_release", "inputs": [release["blocks"], release["titles"]],
             "release": release, "truncated_blocks": stats["truncated_blocks"],
             "block_ids": "row index"})
  block_lookup.build_lookup(corpus_dir)
  return manifest


# ---- the query tower, the matrix, the bundle ------------------------------------------------------

def export_query_tower(config: ImportConfig, model_dir: str, width: int) -> str:
  """Exports a `Retriever` (one shared tower: REALM's embedder embedded queries and blocks) built
  from the TF1 embedder, [CLS] pooling, projection `width` with LayerNorm, queries of
  `query_length`; retrieval_score_scale 1 (ORQA's). Returns the export directory."""
  from realm_tf.checkpoints import tf1_bert  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.retriever import Retriever, RetrieverConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import embedder_export  # pylint: disable=g-import-not-at-top
  source, prefix, _ = _embedder_source(config)
  bert_json = tf1_bert.find_bert_config_json(config.embedder)
  if bert_json and config.num_attention_heads is None:
    encoder = tf1_bert.load_bert_config_json(bert_json)
  else:
    encoder = tf1_bert.infer_encoder_config(source, prefix, config.num_attention_heads)
  # Google's TF1 BERT (REALM's embedder) computes GELU with the tanh approximation.
  encoder = dataclasses.replace(encoder, hidden_act=tf1_bert.TF1_BERT_ACTIVATION)
  retriever = Retriever(RetrieverConfig(
      encoder=encoder, projection_size=width, share_towers=True, pooling="cls",
      projection_layer_norm=True, query_seq_length=config.query_length,
      doc_seq_length=config.block_length))
  retriever.build_towers()
  tf1_bert.load_tf1_retriever(source, retriever, query_prefix=prefix)
  path = embedder_export.export_embedder(
      retriever, model_dir, EXPORT_STEP, query_dtype="float32",
      extra={"retrieval_score_scale": 1.0, "source": "orqa_release",
             "embedder": paths.absolute(config.embedder)})
  del retriever, source
  gc.collect()
  return path


def scann_config(config: ImportConfig, num_rows: int):
  """ORQA's ScaNN settings with the import's knobs (`orqa_scann.orqa_scann_config`)."""
  return orqa_scann.orqa_scann_config(
      num_rows, config.scann_num_leaves, config.scann_num_leaves_to_search,
      config.scann_training_sample_size, config.scann_dimensions_per_block,
      config.scann_reordering_num_neighbors)


def build_searcher(config: ImportConfig, embeddings, mapped: Optional[np.ndarray] = None):
  """The bundle's searcher over the matrix (`embeddings`: a tensor over the memory map `mapped`,
  or an array): ScaNN as ORQA, or exact. Either holds the matrix once, as its `embeddings`
  variable (over `mapped`'s pages when given); `mapped`'s pages are dropped while ScaNN builds,
  so the matrix does not count twice beside the builder's own copy."""
  from realm_tf.retrieval import host_matrix  # pylint: disable=g-import-not-at-top
  if config.searcher == "exact":
    from realm_tf.retrieval.brute_force import BruteForceSearcher  # pylint: disable=g-import-not-at-top
    return BruteForceSearcher(embeddings)
  from realm_tf.retrieval.scann_searcher import ScannSearcher  # pylint: disable=g-import-not-at-top
  with host_matrix.dropping_pages(mapped):
    return ScannSearcher(embeddings, scann_config(config, int(embeddings.shape[0])))


def write_index(config: ImportConfig, index_dir: str, export_dir: str, embeddings_path: str,
                corpus: Dict, final_corpus_dir: str, final_export_dir: str) -> Dict:
  """Builds the searcher from `block_emb` as it is and publishes index bundle 00000001."""
  from realm_tf.retrieval import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.embedder_export import read_metadata  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import host_matrix  # pylint: disable=g-import-not-at-top
  # No copy: the searcher's variable is the staged file's pages, dropped while read.
  tensor, embeddings = host_matrix.mapped_tensor(embeddings_path)
  searcher = build_searcher(config, tensor, embeddings)
  del tensor
  manifest = bundle_lib.bundle_manifest(
      source_export=final_export_dir, step=EXPORT_STEP, export_metadata=read_metadata(export_dir),
      corpus_dirs=[final_corpus_dir], corpus_fingerprints=[corpus["fingerprint"]],
      corpus_fingerprint=corpus["fingerprint"], release=corpus["release"],
      source=orqa_scann.RELEASE_SOURCE,
      rescoring="exact inner products of the searcher's candidates",
      # ORQA's ScaNN settings for this corpus, whichever searcher was built: what `export`'s
      # ScaNN variants (and `evaluate --searcher=scann`) use when the searcher is exact.
      **{orqa_scann.RELEASE_SCANN_CONFIG: orqa_scann.scann_config_json(
          scann_config(config, int(embeddings.shape[0])).for_rows(int(embeddings.shape[0])))})
  try:
    with host_matrix.dropping_pages(embeddings):  # saving reads the variable: the file's pages
      published = bundle_lib.publish(index_dir, export_dir=export_dir, searcher=searcher,
                                     embeddings=embeddings,
                                     block_ids=np.arange(embeddings.shape[0], dtype=np.int64),
                                     manifest=manifest, keep=1)
  finally:
    searcher.release()
  del searcher, embeddings
  gc.collect()
  return published.manifest


# ---- the whole import ---------------------------------------------------------------------------

def _publish(staging: str, targets: Dict[str, str], overwrite: bool) -> None:
  """Moves each staged folder into place (the index last: it is what readers look for); with
  `overwrite` each folder it replaces is moved aside and deleted once the new one is in place."""
  for name, target in targets.items():
    publish.move_into_place(os.path.join(staging, name), target, replace=overwrite)


def run(config: ImportConfig) -> Dict:
  """Imports the release into `config.work_dir` (corpus/, release/, index/00000001/); returns
  the figures (rows, width, truncated blocks, seconds per stage, where each part went)."""
  t0 = time.perf_counter()
  checked = check_release(config)
  num_rows, width = checked["num_rows"], checked["width"]
  work = WorkDir(paths.absolute(config.work_dir))
  targets = _targets(work)
  if not config.overwrite:
    for target in targets.values():
      if os.path.exists(target):
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it.")
  created_root = not os.path.exists(work.root)
  staging = os.path.join(work.root, f".import-tmp-{uuid.uuid4().hex[:8]}")
  os.makedirs(staging)
  seconds = {}
  try:
    t = time.perf_counter()
    corpus = write_corpus(config, os.path.join(staging, "corpus"), num_rows)
    seconds["corpus_and_lookup"] = time.perf_counter() - t
    t = time.perf_counter()
    emb_path = os.path.join(staging, "block_emb.npy")
    files.copy_embeddings(config.embeddings_prefix, emb_path, config.rows_per_slice)
    seconds["embeddings"] = time.perf_counter() - t
    t = time.perf_counter()
    export = export_query_tower(config, os.path.join(staging, RELEASE_SUBDIR), width)
    seconds["query_tower"] = time.perf_counter() - t
    t = time.perf_counter()
    final_export = os.path.join(targets["release"], os.path.relpath(
        export, os.path.join(staging, RELEASE_SUBDIR)))
    bundle = write_index(config, os.path.join(staging, "index"), export, emb_path, corpus,
                         targets["corpus"], final_export)
    os.remove(emb_path)
    seconds["index"] = time.perf_counter() - t
    result = {
        "num_rows": num_rows, "width": width, "searcher": config.searcher,
        "searcher_config": bundle["searcher"].get("config"),
        "truncated_blocks": corpus["truncated_blocks"], "corpus_fingerprint": corpus["fingerprint"],
        "num_shards": len(corpus["shards"]), "release": corpus["release"],
        "embedder": paths.absolute(config.embedder), "query_length": config.query_length,
        "corpus_dir": targets["corpus"], "index_dir": targets["index"],
        "bundle": os.path.join(targets["index"], f"{int(bundle['version']):08d}"),
        "query_tower": final_export, "config": config.to_dict(), "created": time.time(),
    }
    from realm_tf.io import atomic  # pylint: disable=g-import-not-at-top
    atomic.write_json(os.path.join(staging, RELEASE_SUBDIR, IMPORT_RECORD), result)
    _publish(staging, targets, config.overwrite)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    if created_root and os.path.isdir(work.root) and not os.listdir(work.root):
      os.rmdir(work.root)
    raise
  shutil.rmtree(staging, ignore_errors=True)
  seconds["total"] = time.perf_counter() - t0
  result["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
  logging.info("Imported %d released blocks into %s in %.1f s.", num_rows, work.root,
               seconds["total"])
  return result
