"""Serving exports of REALM's parts: query/doc embedders, searcher and reader as SavedModels.

Every export takes raw strings (questions, titles, bodies) and tokenizes inside the graph with
TF.Text ops (`FastBertNormalize`, `FastWordpieceTokenizeWithOffsets`), so a client needs no
Python preprocessing and any TF Serving client can call it. No export contains a `py_function`:
`check_saved_model_ops` proves it by listing every op of every graph and function in
saved_model.pb.

Models are written in TF Serving's layout, `<export_base>/<model_name>/<version>/`, through a
hidden temporary directory and one atomic rename (`publish_saved_model`), so a server polling the
base path never sees half a version. Beside the SavedModel, `assets.extra/` holds the warm-up
requests (see warmup.py) and `realm_export.json` (what was exported from what).

    realm_query_embedder  questions [B] → embeddings [B, D]
    realm_doc_embedder    titles [B], bodies [B] → embeddings [B, D]
    realm_searcher        query_embeddings [B, D] → block_ids, rows, scores [B, k]
                          (stock exact MIPS, or `realm_searcher_scann` with ScaNN ops)
    realm_reader          questions [B] + block ids [B, K] (or block texts [B, K]) → answers

`BlockTable` holds the corpus inside a SavedModel as variables (block ids, titles, texts, body
wordpieces and their byte offsets into the text), so an answer span is cut out of the original
text in the graph. `select_answers` turns the reader's span logits into the top distinct answers.
docs/SERVING_SIGNATURES.md lists every signature.
"""
import json
import os
import time
import uuid
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow.core.protobuf import saved_model_pb2

from realm_tf.openqa import features as features_lib
from realm_tf.text import RealmTokenizer, pack_document, pack_query
from realm_tf.text.packing import INPUT_KEYS

SERVING_DEFAULT = "serving_default"
EXTRA_DIR = "assets.extra"
EXPORT_INFO = "realm_export.json"
PY_FUNCTION_OPS = ("PyFunc", "PyFuncStateless", "EagerPyFunc")
NEG_INF = -1e9

QUERY_EMBEDDER = "realm_query_embedder"
DOC_EMBEDDER = "realm_doc_embedder"
SEARCHER = "realm_searcher"
READER = "realm_reader"
VARIANTS = ("stock", "scann")


class ServingExportError(ValueError):
  """An export cannot be built from its inputs, or a written export breaks a serving rule."""


def variant_model_name(model_name: str, variant: str) -> str:
  """`realm_searcher` + `scann` → `realm_searcher_scann`; the stock variant keeps the bare name."""
  if variant not in VARIANTS:
    raise ServingExportError(f"Unknown variant {variant!r}; choose from {VARIANTS}.")
  return model_name if variant == "stock" else f"{model_name}_{variant}"


# ---------------------------------------------------------------------------------------------
# Publishing and checking SavedModels.


def list_model_versions(model_base: str) -> List[int]:
  """Published versions (integer directory names) under `<export_base>/<model_name>`."""
  if not tf.io.gfile.isdir(model_base):
    return []
  return sorted(int(n.rstrip("/")) for n in tf.io.gfile.listdir(model_base)
                if n.rstrip("/").isdigit())


def next_version(export_base: str, model_names: Iterable[str]) -> int:
  """One more than the newest version of any of `model_names` (1 for a fresh base), so models
  exported together share a version number."""
  newest = 0
  for name in model_names:
    versions = list_model_versions(os.path.join(export_base, name))
    newest = max([newest] + versions)
  return newest + 1


def publish_saved_model(module: tf.Module, export_base: str, model_name: str, version: int,
                        signatures: Mapping[str, Callable], *,
                        warmup_requests: Sequence = (), info: Optional[Dict] = None,
                        options: Optional[tf.saved_model.SaveOptions] = None) -> str:
  """Saves `module` as `<export_base>/<model_name>/<version>/`, atomically.

  The SavedModel, `assets.extra/tf_serving_warmup_requests` (from `warmup_requests`, PredictRequest
  protos) and `assets.extra/realm_export.json` (`info`) are written into a hidden temporary
  directory beside the target, checked for py_function ops, and renamed into place.

  Raises:
    ServingExportError: the version already exists, or the graph holds a py_function.
  """
  from realm_tf.export import warmup as warmup_lib  # pylint: disable=g-import-not-at-top
  if version <= 0:
    raise ServingExportError(f"Version must be a positive integer; got {version}.")
  model_base = os.path.join(export_base, model_name)
  final = os.path.join(model_base, str(int(version)))
  if tf.io.gfile.exists(final):
    raise ServingExportError(f"{final} already exists; pass a new --version (versions are "
                             "immutable once published: servers may have loaded it).")
  tf.io.gfile.makedirs(model_base)
  tmp = os.path.join(model_base, f".tmp-{int(version)}-{uuid.uuid4().hex[:8]}")
  try:
    tf.saved_model.save(module, tmp, signatures=dict(signatures), options=options)
    check_saved_model_ops(tmp)
    extra = os.path.join(tmp, EXTRA_DIR)
    tf.io.gfile.makedirs(extra)
    if warmup_requests:
      warmup_lib.write_warmup_file(tmp, warmup_requests)
    meta = dict(info or {})
    meta.update({"model_name": model_name, "version": int(version), "created": time.time(),
                 "signatures": sorted(signatures)})
    with tf.io.gfile.GFile(os.path.join(extra, EXPORT_INFO), "w") as f:
      json.dump(meta, f, indent=2, sort_keys=True, default=str)
    tf.io.gfile.rename(tmp, final)
  except BaseException:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.rmtree(tmp)
    raise
  logging.info("Published %s.", final)
  return final


def read_export_info(export_dir: str) -> Dict:
  """`assets.extra/realm_export.json` of a published export."""
  with tf.io.gfile.GFile(os.path.join(export_dir, EXTRA_DIR, EXPORT_INFO)) as f:
    return json.load(f)


def saved_model_op_types(export_dir: str) -> Dict[str, List[str]]:
  """Every op type in saved_model.pb → where it occurs (graph or function names).

  Covers each MetaGraph's top-level graph and its whole function library, i.e. everything any
  signature or restored function can run.
  """
  saved_model = saved_model_pb2.SavedModel()
  with tf.io.gfile.GFile(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
    saved_model.ParseFromString(f.read())
  ops: Dict[str, List[str]] = {}
  for mg in saved_model.meta_graphs:
    for node in mg.graph_def.node:
      ops.setdefault(node.op, []).append("<graph>")
    for fn in mg.graph_def.library.function:
      for node in fn.node_def:
        ops.setdefault(node.op, []).append(fn.signature.name)
  return ops


def check_saved_model_ops(export_dir: str, forbidden_prefixes: Sequence[str] = ()) -> List[str]:
  """Raises ServingExportError if the SavedModel runs a py_function (or an op type starting with
  one of `forbidden_prefixes`, e.g. "Scann" for the stock variant); returns the sorted op types."""
  ops = saved_model_op_types(export_dir)
  bad = sorted(op for op in ops if op in PY_FUNCTION_OPS or
               any(op.startswith(p) for p in forbidden_prefixes))
  if bad:
    where = {op: sorted(set(ops[op]))[:3] for op in bad}
    raise ServingExportError(f"SavedModel {export_dir} contains forbidden ops {where} "
                             "(py_function cannot be served; stock exports must not use ScaNN).")
  return sorted(ops)


class _Tracked(tf.Module):
  """Tracks a list of variables (a Keras layer's weights) without tracking the Keras objects:
  saving then writes the traced functions and the weights, not Keras' layer serialisation."""

  def __init__(self, variables, name=None):
    super().__init__(name=name)
    self.tracked_variables = list(variables)


# ---------------------------------------------------------------------------------------------
# In-graph text features.


def question_features(tokenizer: RealmTokenizer, questions, query_seq_length: int,
                      reader_query_length: int) -> Dict[str, tf.Tensor]:
  """Question strings [B] → the open-QA model's question features, in the graph.

  Same layout as `realm_tf.openqa.features.QuestionFeaturizer`: `query/*` int32 [B, Tq]
  (`[CLS] q [SEP]`), `question_ids` int32 [B, reader_query_length - 2] (zero padded) and
  `question_length` int32 [B]; plus `wordpieces` (ragged [B, (n)]).
  """
  ids = tokenizer.tokenize(questions)
  packed = pack_query(ids, query_seq_length, tokenizer.cls_id, tokenizer.sep_id)
  budget = reader_query_length - 2
  kept = ids[:, :budget]
  out = {f"query/{k}": tf.cast(packed[k], tf.int32) for k in INPUT_KEYS}
  out["question_ids"] = tf.cast(kept.to_tensor(0, shape=[None, budget]), tf.int32)
  out["question_length"] = tf.cast(kept.row_lengths(), tf.int32)
  out["wordpieces"] = ids
  return out


class BlockTable(tf.Module):
  """The corpus blocks of an index, in index row order, as SavedModel variables.

  Variables: `block_ids` int64 [N], `titles` / `texts` string [N], the body wordpieces `piece_ids`
  int32 [P] with `piece_starts` / `piece_limits` int32 [P] (byte offsets into the block text) and
  `row_splits` int64 [N + 1]; plus `sorted_block_ids` / `sorted_rows` to map block ids to rows with
  `searchsorted` (a hash table would put N keys into the graph as constants).

  The wordpieces are recomputed from the text with offsets and must equal the corpus' stored
  `body_ids` (the corpus builder guarantees that re-tokenizing a body gives its ids back); a
  mismatch names the block.
  """

  def __init__(self, block_ids: np.ndarray, titles: Sequence, texts: Sequence,
               body_ids: Optional[Sequence[np.ndarray]], tokenizer: RealmTokenizer,
               name: str = "block_table"):
    super().__init__(name=name)
    block_ids = np.asarray(block_ids, np.int64)
    n = len(block_ids)
    if n == 0:
      raise ServingExportError("BlockTable: no blocks.")
    if len(titles) != n or len(texts) != n or (body_ids is not None and len(body_ids) != n):
      raise ServingExportError(f"BlockTable: {n} block ids but {len(titles)} titles, "
                               f"{len(texts)} texts, "
                               f"{None if body_ids is None else len(body_ids)} bodies.")
    if len(np.unique(block_ids)) != n:
      raise ServingExportError("BlockTable: duplicate block ids.")
    enc = lambda s: s if isinstance(s, bytes) else str(s).encode("utf-8")  # pylint: disable=unnecessary-lambda-assignment
    texts = [enc(t) for t in texts]
    titles = [enc(t) for t in titles]
    # Eager: tracing costs more than running the ops once per 1,024 texts.
    tokenize = tokenizer.tokenize_with_offsets
    flat_ids, flat_starts, flat_limits, lengths = [], [], [], []
    for lo in range(0, n, 1024):
      ids, starts, limits = tokenize(tf.constant(texts[lo:lo + 1024]))
      splits = ids.row_splits.numpy()
      v_ids, v_s, v_l = (ids.flat_values.numpy(), starts.flat_values.numpy(),
                         limits.flat_values.numpy())
      for i in range(len(splits) - 1):
        a, b = splits[i], splits[i + 1]
        row = lo + i
        if body_ids is not None:
          want = np.asarray(body_ids[row], np.int32)
          if want.shape != (b - a,) or not np.array_equal(want, v_ids[a:b]):
            raise ServingExportError(
                f"Block {int(block_ids[row])} (row {row}): re-tokenizing its text does not give "
                f"its stored body wordpieces ({b - a} vs {len(want)} pieces), so answer spans "
                "could not be mapped back to the text; rebuild the corpus with this vocabulary.")
        lengths.append(b - a)
      flat_ids.append(v_ids)
      flat_starts.append(v_s)
      flat_limits.append(v_l)
    row_splits = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    order = np.argsort(block_ids, kind="stable")
    self.size = n
    self.block_ids = tf.Variable(block_ids, trainable=False, name="block_ids")
    self.titles = tf.Variable(tf.constant(titles, tf.string), trainable=False, name="titles")
    self.texts = tf.Variable(tf.constant(texts, tf.string), trainable=False, name="texts")
    self.piece_ids = tf.Variable(np.concatenate(flat_ids).astype(np.int32), trainable=False,
                                 name="piece_ids")
    self.piece_starts = tf.Variable(np.concatenate(flat_starts).astype(np.int32),
                                    trainable=False, name="piece_starts")
    self.piece_limits = tf.Variable(np.concatenate(flat_limits).astype(np.int32),
                                    trainable=False, name="piece_limits")
    self.row_splits = tf.Variable(row_splits, trainable=False, name="row_splits")
    self.sorted_block_ids = tf.Variable(block_ids[order], trainable=False,
                                        name="sorted_block_ids")
    self.sorted_rows = tf.Variable(order.astype(np.int32), trainable=False, name="sorted_rows")

  @classmethod
  def from_index(cls, index, tokenizer: RealmTokenizer) -> "BlockTable":
    """From an open-QA `FrozenIndex` (rows in index order, texts kept)."""
    bodies = [np.asarray(index.body_ids_np[i, :index.body_length_np[i]])
              for i in range(index.size)]
    return cls(index.block_ids, list(index.titles), list(index.bodies), bodies, tokenizer)

  def rows_for_block_ids(self, block_ids):
    """Block ids (int64, any shape) → index rows int32; InvalidArgument naming an unknown id."""
    block_ids = tf.cast(block_ids, tf.int64)
    flat = tf.reshape(block_ids, [-1])
    pos = tf.searchsorted(self.sorted_block_ids, flat, side="left", out_type=tf.int32)
    pos = tf.minimum(pos, self.size - 1)
    found = tf.equal(tf.gather(self.sorted_block_ids, pos), flat)
    missing = tf.boolean_mask(flat, tf.logical_not(found))
    check = tf.debugging.Assert(
        tf.reduce_all(found),
        ["block_ids not in the exported corpus (first few):", missing[:5]], summarize=5)
    with tf.control_dependencies([check]):
      rows = tf.gather(self.sorted_rows, pos)
    return tf.reshape(rows, tf.shape(block_ids))

  def gather(self, rows) -> Dict[str, tf.Tensor]:
    """Index rows [B, K] → block data: `body_ids` int32 [B, K, L] (zero padded), `body_length`
    int32 [B, K], `starts` / `limits` int32 [B, K, L], `texts` / `titles` string [B, K],
    `block_ids` int64 [B, K]."""
    rows = tf.cast(rows, tf.int32)
    shape = tf.shape(rows)
    flat = tf.reshape(rows, [-1])
    out = ragged_bodies(
        tf.RaggedTensor.from_row_splits(self.piece_ids.read_value(), self.row_splits.read_value(),
                                        validate=False),
        tf.RaggedTensor.from_row_splits(self.piece_starts.read_value(),
                                        self.row_splits.read_value(), validate=False),
        tf.RaggedTensor.from_row_splits(self.piece_limits.read_value(),
                                        self.row_splits.read_value(), validate=False),
        flat, shape)
    out["texts"] = tf.reshape(tf.gather(self.texts, flat), shape)
    out["titles"] = tf.reshape(tf.gather(self.titles, flat), shape)
    out["block_ids"] = tf.reshape(tf.gather(self.block_ids, flat), shape)
    return out


def ragged_bodies(ids: tf.RaggedTensor, starts: tf.RaggedTensor, limits: tf.RaggedTensor,
                  rows, shape) -> Dict[str, tf.Tensor]:
  """Gathers `rows` [M] of ragged wordpieces/offsets and reshapes them to `shape` + [L]."""
  if rows is not None:
    ids, starts, limits = (tf.gather(ids, rows), tf.gather(starts, rows),
                           tf.gather(limits, rows))
  lengths = tf.cast(ids.row_lengths(), tf.int32)
  width = tf.maximum(tf.reduce_max(tf.concat([lengths, [1]], 0)), 1)
  dense = lambda r: tf.cast(r.to_tensor(0, shape=[tf.size(lengths), width]), tf.int32)  # pylint: disable=unnecessary-lambda-assignment
  full = tf.concat([shape, [width]], 0)
  return {"body_ids": tf.reshape(dense(ids), full),
          "starts": tf.reshape(dense(starts), full),
          "limits": tf.reshape(dense(limits), full),
          "body_length": tf.reshape(lengths, shape)}


def text_blocks(tokenizer: RealmTokenizer, texts) -> Dict[str, tf.Tensor]:
  """Block texts [B, K] → the same block data as `BlockTable.gather`, tokenized in the graph."""
  texts = tf.convert_to_tensor(texts, tf.string)
  shape = tf.shape(texts)
  flat = tf.reshape(texts, [-1])
  ids, starts, limits = tokenizer.tokenize_with_offsets(flat)
  out = ragged_bodies(ids, starts, limits, None, shape)
  out["texts"] = texts
  return out


# ---------------------------------------------------------------------------------------------
# Answer selection.


def select_answers(span_logits, block_offset, blocks: Mapping[str, tf.Tensor], num_answers: int,
                   max_candidates: int) -> Dict[str, tf.Tensor]:
  """The top `num_answers` distinct answer strings of each question.

  Args:
    span_logits: float32 [B, K, T, W] reader logits (retriever logit included; invalid spans at
      -1e9), as `OpenQAModel.read` returns them.
    block_offset: int32 [B, K], reader position of each block's first body wordpiece.
    blocks: `starts` / `limits` int32 [B, K, L] byte offsets of the body wordpieces and `texts`
      string [B, K] (see BlockTable.gather / text_blocks).
    num_answers: A, answers returned per question.
    max_candidates: M ≥ A, best spans considered; spans whose text repeats a better span's are
      dropped, so up to M - A duplicates are absorbed.

  Returns:
    `answers` string [B, A] best first ("" past the last valid one), `probabilities` float32
    [B, A] (each span's softmax probability over every span of the K blocks — the first equals
    OpenQAModel.predict_spans' `probability`), `answer_scores` float32 [B, A] (logits),
    `answer_block_index` int32 [B, A] (which of the K blocks; -1 for no answer).
  """
  if max_candidates < num_answers:
    raise ServingExportError(f"max_candidates={max_candidates} < num_answers={num_answers}.")
  span_logits = tf.cast(span_logits, tf.float32)
  shape = tf.shape(span_logits)
  b, k, t, w = shape[0], shape[1], shape[2], shape[3]
  flat = tf.reshape(span_logits, [b, -1])
  log_norm = tf.reduce_logsumexp(flat, axis=-1, keepdims=True)
  pad = tf.maximum(max_candidates - tf.shape(flat)[1], 0)
  flat = tf.pad(flat, [[0, 0], [0, pad]], constant_values=2 * NEG_INF)
  top_logits, idx = tf.math.top_k(flat, k=max_candidates, sorted=True)        # [B, M]
  valid = top_logits > NEG_INF / 2
  block = tf.minimum(idx // (t * w), k - 1)
  rem = idx % (t * w)
  start = rem // w
  end = start + rem % w
  offset = tf.gather(block_offset, block, batch_dims=1)
  width = tf.shape(blocks["starts"])[2]
  first = tf.clip_by_value(start - offset, 0, width - 1)
  last = tf.clip_by_value(end - offset, 0, width - 1)
  starts = tf.gather(tf.gather(blocks["starts"], block, batch_dims=1), first[..., None],
                     batch_dims=2)[..., 0]
  limits = tf.gather(tf.gather(blocks["limits"], block, batch_dims=1), last[..., None],
                     batch_dims=2)[..., 0]
  texts = tf.gather(blocks["texts"], block, batch_dims=1)
  text = tf.strings.substr(texts, starts, tf.maximum(limits - starts, 0), unit="BYTE")
  text = tf.where(valid, text, "")
  # Drop spans whose text equals a better-ranked span's.
  same = tf.logical_and(tf.equal(text[:, :, None], text[:, None, :]), valid[:, None, :])
  earlier = tf.linalg.band_part(tf.ones([max_candidates, max_candidates], tf.bool), -1, 0)
  earlier = tf.logical_and(earlier, tf.logical_not(tf.eye(max_candidates, dtype=tf.bool)))
  repeated = tf.reduce_any(tf.logical_and(same, earlier[None]), axis=2)
  keep = tf.logical_and(valid, tf.logical_not(repeated))
  rank = tf.where(keep, -tf.range(max_candidates, dtype=tf.float32)[None, :],
                  tf.cast(-10 * max_candidates, tf.float32))
  _, pick = tf.math.top_k(rank, k=num_answers, sorted=True)                    # [B, A]
  chosen = tf.gather(keep, pick, batch_dims=1)
  logits = tf.gather(top_logits, pick, batch_dims=1)
  return {
      "answers": tf.where(chosen, tf.gather(text, pick, batch_dims=1), ""),
      "probabilities": tf.where(chosen, tf.exp(logits - log_norm), 0.0),
      "answer_scores": tf.where(chosen, logits, NEG_INF),
      "answer_block_index": tf.where(chosen, tf.gather(block, pick, batch_dims=1), -1),
  }


def read_blocks(model, features: Mapping[str, tf.Tensor], blocks: Mapping[str, tf.Tensor],
                retrieval_logits, num_answers: int, max_candidates: int) -> Dict[str, tf.Tensor]:
  """Reader over `[CLS] question [SEP] body [SEP]` for blocks [B, K], then `select_answers`.

  `model` is an `OpenQAModel` (its `read` and config are used); `features` come from
  `question_features`; `blocks` from `BlockTable.gather` or `text_blocks`.
  """
  cfg = model.config.reader
  inputs = features_lib.pack_reader_inputs(
      features["question_ids"], features["question_length"], blocks["body_ids"],
      blocks["body_length"], cfg.seq_length, model.cls_id, model.sep_id)
  span_logits, _ = model.read(inputs, tf.cast(retrieval_logits, tf.float32), training=False)
  return select_answers(span_logits, inputs["block_offset"], blocks, num_answers, max_candidates)


# ---------------------------------------------------------------------------------------------
# Component modules.


def _string_spec(name, rank=1):
  return tf.TensorSpec([None] * rank, tf.string, name=name)


class QueryEmbedderModule(tf.Module):
  """`realm_query_embedder`: questions [B] → the fine-tuned query tower's embeddings [B, D]."""

  def __init__(self, model, tokenizer: RealmTokenizer):
    super().__init__(name="realm_query_embedder")
    self.weights = _Tracked(list(model.query_encoder.variables) +
                            list(model.query_projection.variables))
    self.tokenizer = tokenizer
    cfg = model.config

    def embed(questions):
      feats = question_features(tokenizer, questions, cfg.retriever.query_seq_length,
                                cfg.reader.query_length)
      return {"embeddings": model.embed_questions(feats, training=False)}

    self.embed = tf.function(embed, input_signature=[_string_spec("questions")])

  def signatures(self):
    return {SERVING_DEFAULT: self.embed}


class DocEmbedderModule(tf.Module):
  """`realm_doc_embedder`: (titles [B], bodies [B]) → document embeddings [B, D].

  The document tower is the index bundle's embedder export (the tower the index was built with;
  open-QA fine-tuning keeps it frozen), re-saved with tokenization and packing
  (`[CLS] title [SEP] body [SEP]`, body trimmed first) in front of it.
  """

  def __init__(self, embedder, tokenizer: RealmTokenizer):
    super().__init__(name="realm_doc_embedder")
    self.embedder_module = embedder.module
    self.tokenizer = tokenizer
    length = int(embedder.doc_seq_length)
    cls_id, sep_id = int(embedder.cls_id), int(embedder.sep_id)
    module = embedder.module

    def embed(titles, bodies):
      packed = pack_document(tokenizer.tokenize(titles), tokenizer.tokenize(bodies), length,
                             cls_id, sep_id)
      out = module.embed_documents({k: tf.cast(packed[k], tf.int32) for k in INPUT_KEYS})
      return {"embeddings": tf.cast(out["embeddings"], tf.float32)}

    self.embed = tf.function(embed, input_signature=[_string_spec("titles"),
                                                     _string_spec("bodies")])

  def signatures(self):
    return {SERVING_DEFAULT: self.embed}


class StockMips(tf.Module):
  """Exact MIPS in stock ops: scores = q · Eᵀ (matmul) then top_k, like OpenQAModel.retrieve."""

  kind = "stock"

  def __init__(self, embeddings: np.ndarray, name: str = "stock_mips"):
    super().__init__(name=name)
    embeddings = np.asarray(embeddings, np.float32)
    self.num_rows, self.dim = embeddings.shape
    self.embeddings = tf.Variable(embeddings, trainable=False, name="embeddings")

  def search(self, queries, k):
    """(rows int32 [B, k], scores float32 [B, k]), best first."""
    scores = tf.matmul(tf.cast(queries, tf.float32), self.embeddings, transpose_b=True)
    top = tf.math.top_k(scores, k=k, sorted=True)
    return top.indices, top.values


class ScannMips(tf.Module):
  """ScaNN MIPS (`Scann>*` ops) over the same matrix; needs the ScaNN ops where it is served."""

  kind = "scann"

  def __init__(self, embeddings: np.ndarray, scann_config=None, name: str = "scann_mips"):
    super().__init__(name=name)
    from realm_tf.retrieval.scann_searcher import ScannConfig, ScannSearcher  # pylint: disable=g-import-not-at-top
    embeddings = np.asarray(embeddings, np.float32)
    self.num_rows, self.dim = embeddings.shape
    self.searcher = ScannSearcher(embeddings, scann_config or ScannConfig())

  def search(self, queries, k):
    rows, scores = self.searcher.search(tf.cast(queries, tf.float32), tf.cast(k, tf.int32))
    # ScaNN's ops leave the rank unknown; restore [B, k] so signatures stay batch-major.
    shape = [tf.shape(queries)[0], k if isinstance(k, int) else -1]
    return tf.reshape(rows, shape), tf.reshape(scores, shape)


def make_mips(embeddings: np.ndarray, variant: str, scann_config=None):
  """StockMips or ScannMips over `embeddings`."""
  if variant == "stock":
    return StockMips(embeddings)
  if variant == "scann":
    return ScannMips(embeddings, scann_config)
  raise ServingExportError(f"Unknown variant {variant!r}; choose from {VARIANTS}.")


def save_options(variant: str) -> tf.saved_model.SaveOptions:
  """SaveOptions letting ScaNN ops into the ScaNN variant's graph."""
  return tf.saved_model.SaveOptions(namespace_whitelist=["Scann"] if variant == "scann" else None)


class SearcherModule(tf.Module):
  """`realm_searcher[_scann]`: query embeddings [B, D] → top-k block ids, rows and scores.

  `serving_default` returns the export's fixed `k` (batchable); `search_k` takes `k` as a scalar
  input (not batchable server-side: its inputs have no common batch dimension).
  """

  def __init__(self, embeddings: np.ndarray, block_ids: np.ndarray, k: int, variant: str,
               scann_config=None):
    super().__init__(name="realm_searcher")
    n = len(block_ids)
    if embeddings.shape[0] != n:
      raise ServingExportError(f"{embeddings.shape[0]} embeddings but {n} block ids.")
    self.k = min(int(k), n)
    self.variant = variant
    self.mips = make_mips(embeddings, variant, scann_config)
    self.block_ids = tf.Variable(np.asarray(block_ids, np.int64), trainable=False,
                                 name="block_ids")
    dim = embeddings.shape[1]
    spec = tf.TensorSpec([None, dim], tf.float32, name="query_embeddings")

    def run(query_embeddings, k):
      rows, scores = self.mips.search(query_embeddings, k)
      return {"block_ids": tf.gather(self.block_ids, rows), "rows": tf.cast(rows, tf.int32),
              "scores": tf.cast(scores, tf.float32)}

    self.search = tf.function(lambda query_embeddings: run(query_embeddings, self.k),
                              input_signature=[spec])

    def search_k(query_embeddings, k):
      check = tf.debugging.assert_less_equal(k, n, message="k exceeds the number of blocks")
      check2 = tf.debugging.assert_positive(k, message="k must be positive")
      with tf.control_dependencies([check, check2]):
        k = tf.identity(k)
      return run(query_embeddings, k)

    self.search_k = tf.function(search_k, input_signature=[
        spec, tf.TensorSpec([], tf.int32, name="k")])

  def signatures(self):
    return {SERVING_DEFAULT: self.search, "search_k": self.search_k}


class ReaderModule(tf.Module):
  """`realm_reader`: questions [B] and K blocks each → the top A answers per question.

  Signatures (outputs `answers` string [B, A], `probabilities`, `answer_scores` float32 [B, A],
  `answer_block_index` int32 [B, A] into the given blocks):
    serving_default: `questions` [B], `block_ids` int64 [B, K] (blocks of the exported corpus),
      read with a retriever logit of 0.
    read_scored: + `retrieval_scores` float32 [B, K], added to every span logit of its block as
      in open-QA (realm_searcher's output → realm_reader reproduces realm_openqa).
    read_texts: `questions` [B], `block_texts` string [B, K] (any text, tokenized in the graph).
  """

  def __init__(self, model, table: BlockTable, tokenizer: RealmTokenizer, num_answers: int = 5,
               max_candidates: int = 20):
    super().__init__(name="realm_reader")
    self.weights = _Tracked(list(model.reader.variables))
    self.table = table
    self.tokenizer = tokenizer
    cfg = model.config

    def feats(questions):
      return question_features(tokenizer, questions, cfg.retriever.query_seq_length,
                               cfg.reader.query_length)

    def by_ids(questions, block_ids, retrieval_scores):
      blocks = table.gather(table.rows_for_block_ids(block_ids))
      return read_blocks(model, feats(questions), blocks, retrieval_scores, num_answers,
                         max_candidates)

    def read(questions, block_ids):
      return by_ids(questions, block_ids, tf.zeros(tf.shape(block_ids), tf.float32))

    def read_texts(questions, block_texts):
      blocks = text_blocks(tokenizer, block_texts)
      return read_blocks(model, feats(questions), blocks,
                         tf.zeros(tf.shape(block_texts), tf.float32), num_answers,
                         max_candidates)

    ids_spec = tf.TensorSpec([None, None], tf.int64, name="block_ids")
    self.read = tf.function(read, input_signature=[_string_spec("questions"), ids_spec])
    self.read_scored = tf.function(by_ids, input_signature=[
        _string_spec("questions"), ids_spec,
        tf.TensorSpec([None, None], tf.float32, name="retrieval_scores")])
    self.read_texts = tf.function(read_texts, input_signature=[
        _string_spec("questions"), _string_spec("block_texts", rank=2)])

  def signatures(self):
    return {SERVING_DEFAULT: self.read, "read_scored": self.read_scored,
            "read_texts": self.read_texts}


# ---------------------------------------------------------------------------------------------
# Export entry points.

COMPONENTS = ("query_embedder", "doc_embedder", "searcher", "reader")


def _base_info(model, bundle) -> Dict:
  info = {"openqa_config": model.config.to_dict(), "num_blocks": int(model.index.size)}
  if bundle is not None:
    info.update({"index_bundle": bundle.path, "index_version": int(bundle.version)})
  return info


def export_components(model, tokenizer: RealmTokenizer, export_base: str, version: int,
                      components: Sequence[str] = COMPONENTS, variants: Sequence[str] = ("stock",),
                      bundle=None, table: Optional[BlockTable] = None, searcher_k: int = 10,
                      num_answers: int = 5, max_candidates: int = 20, scann_config=None,
                      warmup_questions: Optional[Sequence[str]] = None) -> Dict[str, str]:
  """Exports the chosen components of a fine-tuned open-QA model; returns {model name: path}.

  Args:
    model: a built `realm_tf.openqa.model.OpenQAModel` (query tower, reader, FrozenIndex).
    tokenizer: the RealmTokenizer the model was trained with.
    export_base: TF Serving base directory; models go to `<export_base>/<name>/<version>`.
    components: subset of COMPONENTS.
    variants: searcher variants ("stock" → realm_searcher, "scann" → realm_searcher_scann).
    bundle: the IndexBundle (needed for doc_embedder: its embedder export is the document tower).
    table: a BlockTable of the model's index (built when omitted and the reader is exported).
  """
  from realm_tf.export import warmup as warmup_lib  # pylint: disable=g-import-not-at-top
  unknown = sorted(set(components) - set(COMPONENTS))
  if unknown:
    raise ServingExportError(f"Unknown components {unknown}; choose from {COMPONENTS}.")
  questions = list(warmup_questions or warmup_lib.DEFAULT_QUESTIONS)
  info = _base_info(model, bundle)
  out = {}
  if "query_embedder" in components:
    m = QueryEmbedderModule(model, tokenizer)
    out[QUERY_EMBEDDER] = publish_saved_model(
        m, export_base, QUERY_EMBEDDER, version, m.signatures(), info=info,
        warmup_requests=warmup_lib.string_requests(QUERY_EMBEDDER, "questions", questions))
  if "doc_embedder" in components:
    if bundle is None:
      raise ServingExportError("doc_embedder needs the index bundle (its embedder export is the "
                               "document tower); pass --index_dir.")
    m = DocEmbedderModule(bundle.query_embedder, tokenizer)
    titles = [str(t) for t in model.index.titles[:len(questions)]]
    bodies = [str(t) for t in model.index.bodies[:len(questions)]]
    out[DOC_EMBEDDER] = publish_saved_model(
        m, export_base, DOC_EMBEDDER, version, m.signatures(), info=info,
        warmup_requests=warmup_lib.requests(DOC_EMBEDDER, [
            {"titles": titles[:1], "bodies": bodies[:1]}, {"titles": titles, "bodies": bodies}]))
  if "searcher" in components:
    dim = model.index.embeddings_np.shape[1]
    for variant in variants:
      name = variant_model_name(SEARCHER, variant)
      m = SearcherModule(model.index.embeddings_np, model.index.block_ids, searcher_k, variant,
                         scann_config)
      q = np.random.default_rng(0).normal(size=(4, dim)).astype(np.float32)
      out[name] = publish_saved_model(
          m, export_base, name, version, m.signatures(), options=save_options(variant),
          info=dict(info, variant=variant, k=m.k),
          warmup_requests=warmup_lib.requests(name, [{"query_embeddings": q[:1]},
                                                      {"query_embeddings": q}]))
  if "reader" in components:
    table = table or BlockTable.from_index(model.index, tokenizer)
    m = ReaderModule(model, table, tokenizer, num_answers, max_candidates)
    k = model.reader_beam_size
    ids = np.asarray(model.index.block_ids[:k], np.int64)
    texts = np.array([str(t).encode("utf-8") for t in model.index.bodies[:k]], dtype=object)
    batch = {"questions": questions[:1], "block_ids": ids[None]}
    out[READER] = publish_saved_model(
        m, export_base, READER, version, m.signatures(),
        info=dict(info, num_answers=num_answers, max_candidates=max_candidates),
        warmup_requests=warmup_lib.requests(READER, [batch]) + warmup_lib.requests(
            READER, [dict(batch, retrieval_scores=np.zeros([1, k], np.float32))],
            signature_name="read_scored") + warmup_lib.requests(
                READER, [{"questions": questions[:1], "block_texts": texts[None]}],
                signature_name="read_texts"))
  return out
