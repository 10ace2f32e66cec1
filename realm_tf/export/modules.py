"""The tf.Modules behind the part exports: query/doc embedders, searcher and reader.

Each takes raw strings (questions, titles, bodies) or embeddings, tokenizes inside the graph with
TF.Text ops (`FastBertNormalize`, `FastWordpieceTokenizeWithOffsets`), so a client needs no Python
preprocessing and any TF Serving client can call it, and contains no `py_function`:

    realm_query_embedder  questions [B] → embeddings [B, D]
    realm_doc_embedder    titles [B], bodies [B] → embeddings [B, D]
    realm_searcher        query_embeddings [B, D] → block_ids, rows, scores [B, k]
                          (stock exact MIPS, or `realm_searcher_scann` with ScaNN ops)
    realm_reader          questions [B] + block texts [B, K] → answers

Every module's `signatures()` is what `versioning.publish_saved_model` saves; components.py
builds and publishes them, and docs/SERVING_SIGNATURES.md lists every signature.
"""
import numpy as np
import tensorflow as tf

from realm_tf.export.answers import question_features, read_blocks
from realm_tf.export.block_table import text_blocks
from realm_tf.export.mips import make_mips
from realm_tf.export.versioning import SERVING_DEFAULT, ServingExportError
from realm_tf.text import RealmTokenizer, pack_document
from realm_tf.text.packing import INPUT_KEYS

QUERY_EMBEDDER = "realm_query_embedder"
DOC_EMBEDDER = "realm_doc_embedder"
SEARCHER = "realm_searcher"
READER = "realm_reader"


class TrackedVariables(tf.Module):
  """Tracks a list of variables (a Keras layer's weights) without tracking the Keras objects:
  saving then writes the traced functions and the weights, not Keras' layer serialisation."""

  def __init__(self, variables, name=None):
    super().__init__(name=name)
    self.tracked_variables = list(variables)


def _string_spec(name, rank=1):
  return tf.TensorSpec([None] * rank, tf.string, name=name)


class QueryEmbedderModule(tf.Module):
  """`realm_query_embedder`: questions [B] → the fine-tuned query tower's embeddings [B, D]."""

  def __init__(self, model, tokenizer: RealmTokenizer):
    super().__init__(name="realm_query_embedder")
    self.weights = TrackedVariables(list(model.query_encoder.variables) +
                            list(model.query_projection.variables))
    self.tokenizer = tokenizer
    cfg = model.config

    def embed(questions):
      feats = question_features(tokenizer, questions, cfg.retriever.query_seq_length,
                                cfg.reader.query_length)
      return {"embeddings": model.embed_questions(feats, training=False)}

    self.embed = tf.function(embed, autograph=False,
                             input_signature=[_string_spec("questions")])

  def signatures(self):
    """{signature name: tf.function} to save (see the class docstring)."""
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

    self.embed = tf.function(embed, autograph=False, input_signature=[
        _string_spec("titles"), _string_spec("bodies")])

  def signatures(self):
    """{signature name: tf.function} to save (see the class docstring)."""
    return {SERVING_DEFAULT: self.embed}


class SearcherModule(tf.Module):
  """`realm_searcher[_scann]`: query embeddings [B, D] → top-k block ids, rows and scores.

  `serving_default` returns the export's fixed `k` (batchable); `search_k` takes `k` as a scalar
  input (not batchable server-side: its inputs have no common batch dimension).
  """

  def __init__(self, embeddings: np.ndarray, block_ids: np.ndarray, k: int, variant: str,
               scann_config=None, embedding_variable=None, scann_source=None):
    """`embedding_variable`: a variable already holding `embeddings` (the model's index
    variable), which the stock variant then uses instead of a copy (see make_mips);
    `scann_source` (mips.ScannSource): the searcher the ScaNN variant serves, else one is built
    with `scann_config`."""
    super().__init__(name="realm_searcher")
    n = len(block_ids)
    if embeddings.shape[0] != n:
      raise ServingExportError(f"{embeddings.shape[0]} embeddings but {n} block ids.")
    self.k = min(int(k), n)
    self.variant = variant
    self.mips = make_mips(embeddings, variant, scann_config, embedding_variable, scann_source)
    self.block_ids = tf.Variable(np.asarray(block_ids, np.int64), trainable=False,
                                 name="block_ids")
    dim = embeddings.shape[1]
    spec = tf.TensorSpec([None, dim], tf.float32, name="query_embeddings")

    def run(query_embeddings, k):
      rows, scores = self.mips.search(query_embeddings, k)
      return {"block_ids": tf.gather(self.block_ids, rows), "rows": tf.cast(rows, tf.int32),
              "scores": tf.cast(scores, tf.float32)}

    self.search = tf.function(lambda query_embeddings: run(query_embeddings, self.k),
                              input_signature=[spec], autograph=False)

    def search_k(query_embeddings, k):
      check = tf.debugging.assert_less_equal(k, n, message="k exceeds the number of blocks")
      check2 = tf.debugging.assert_positive(k, message="k must be positive")
      with tf.control_dependencies([check, check2]):
        k = tf.identity(k)
      return run(query_embeddings, k)

    self.search_k = tf.function(search_k, autograph=False, input_signature=[
        spec, tf.TensorSpec([], tf.int32, name="k")])

  def signatures(self):
    """{signature name: tf.function} to save (see the class docstring)."""
    return {SERVING_DEFAULT: self.search, "search_k": self.search_k}


class ReaderModule(tf.Module):
  """`realm_reader`: questions [B] and K block texts each → the top A answers per question.

  The reader holds no corpus (`realm_openqa` holds the one copy; its `blocks` signature gives the
  texts of block ids): it tokenizes the texts it is given in the graph, as `realm_openqa` does
  for the blocks it retrieves. Signatures (outputs `answers` string [B, A], `probabilities`,
  `answer_scores` float32 [B, A], `answer_block_index` int32 [B, A] into the given blocks):
    serving_default: `questions` [B], `block_texts` string [B, K], read with a retriever logit
      of 0.
    read_scored: + `retrieval_scores` float32 [B, K], added to every span logit of its block as
      in open-QA (realm_searcher's scores and the texts of its block ids → realm_reader
      reproduces realm_openqa).
  """

  def __init__(self, model, tokenizer: RealmTokenizer, num_answers: int = 5,
               max_candidates: int = 20):
    super().__init__(name="realm_reader")
    self.weights = TrackedVariables(list(model.reader.variables))
    self.tokenizer = tokenizer
    cfg = model.config

    def read_scored(questions, block_texts, retrieval_scores):
      feats = question_features(tokenizer, questions, cfg.retriever.query_seq_length,
                                cfg.reader.query_length)
      return read_blocks(model, feats, text_blocks(tokenizer, block_texts), retrieval_scores,
                         num_answers, max_candidates, tokenizer)

    def read(questions, block_texts):
      return read_scored(questions, block_texts, tf.zeros(tf.shape(block_texts), tf.float32))

    texts_spec = _string_spec("block_texts", rank=2)
    self.read = tf.function(read, autograph=False,
                            input_signature=[_string_spec("questions"), texts_spec])
    self.read_scored = tf.function(read_scored, autograph=False, input_signature=[
        _string_spec("questions"), texts_spec,
        tf.TensorSpec([None, None], tf.float32, name="retrieval_scores")])

  def signatures(self):
    """{signature name: tf.function} to save (see the class docstring)."""
    return {SERVING_DEFAULT: self.read, "read_scored": self.read_scored}
