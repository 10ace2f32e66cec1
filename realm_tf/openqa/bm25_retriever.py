"""BM25 retrieval over the open-QA index's blocks: the sparse baselines behind the same reader.

`BM25Retriever(index, k, model, reader_logits)` ranks the FrozenIndex rows (title + body) with the
project's one BM25 (`realm_tf.retrieval.bm25`: `rank_bm25.BM25Okapi` over lower-cased word
tokens). It is a `retrieve_fn` for `evaluate.Predictor`: the fine-tuned reader reads BM25's top
blocks instead of the dense retriever's.

The reader adds a retrieval logit to every span score of a block (ORQA's S_retr + S_read), and a
reader fine-tuned behind the dense retriever learned its span scores with that term present. What
the reader is given for BM25's blocks (`reader_logits`, one of READER_LOGITS) decides what a BM25
figure measures:

  dense  the model's own retrieval logit for those blocks, q · emb[row] (q from its fine-tuned
         query tower, which carries the retrieval score scale), exactly what the dense path
         adds for the same block: the reader is read as it was trained, and only the choice of
         blocks differs. The baseline that isolates retrieval.
  zero   no retrieval logit. Right for a reader fine-tuned behind BM25 (`finetune
         --retriever=bm25`, which trains without one, as ORQA's BM25 + reader baseline does);
         for a reader fine-tuned behind the dense retriever it reads the reader without a term
         it was trained with, which biases the figure against BM25.

BM25's own scores are reported as each evidence block's `retrieval_score` either way.
"""
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.modeling.openqa_features import QUERY_KEYS
from realm_tf.retrieval.bm25 import BM25Index

READER_LOGITS = ("dense", "zero")


def default_reader_logits(finetuned_retriever: str) -> str:
  """The retrieval logit a reader is read with behind BM25: the one it was fine-tuned with
  (`dense` for a reader fine-tuned behind the dense retriever, `zero` behind BM25)."""
  return "zero" if finetuned_retriever == "bm25" else "dense"


class BM25Retriever:
  """Top-k index rows of each question by BM25, with the reader's logit for them (see the module
  docstring). `model` (the OpenQAModel over `index`) is needed to answer with
  `reader_logits="dense"`; `scores` and `search` use BM25 alone."""

  def __init__(self, index, k: int, model=None, reader_logits: str = "dense"):
    if not 1 <= k <= index.size:
      raise ValueError(f"BM25 k={k} must be in 1..{index.size} (the index size).")
    if reader_logits not in READER_LOGITS:
      raise ValueError(f"BM25 reader_logits must be one of {READER_LOGITS}, got "
                       f"{reader_logits!r}.")
    self.k = int(k)
    self.reader_logits = reader_logits
    self._model = model
    self._dense_logits = None
    self.index = BM25Index.from_texts(index.lookup.joined_texts(index.lookup_rows),
                                      num_docs=index.size)
    logging.info("BM25 over %d blocks (reader retrieval logits: %s).", index.size, reader_logits)

  def scores(self, question: str) -> np.ndarray:
    """BM25 score of every index row for one question, float32 [N]."""
    return self.index.scores(question)

  def search(self, questions: Sequence[str], k: Optional[int] = None):
    """(BM25 scores float32 [Q, k], index rows int32 [Q, k]) of the top k (default self.k) rows,
    best first; ties keep index order."""
    scores, rows = self.index.search(list(questions), k or self.k)
    return scores, rows.astype(np.int32)

  def model_logits(self, features: Dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """The model's retrieval logits for `rows` int [B, R]: q · emb[row] float32 [B, R], q the
    query tower's embedding of the featurized questions (`query/*` of `features`)."""
    if self._dense_logits is None:
      model = self._model
      length = model.config.feature_config.query_seq_length
      spec = {f"query/{key}": tf.TensorSpec([None, length], tf.int32) for key in QUERY_KEYS}

      def logits(query, block_rows):
        q = model.embed_questions(query, training=False)                       # [B, D]
        emb = tf.gather(tf.convert_to_tensor(model.index.variables()[0]), block_rows)
        return tf.reduce_sum(q[:, None, :] * emb, axis=-1)                      # [B, R]
      self._dense_logits = tf.function(
          logits, autograph=False, input_signature=[spec, tf.TensorSpec([None, None], tf.int32)])
    query = {f"query/{key}": tf.constant(features[f"query/{key}"], tf.int32)
             for key in QUERY_KEYS}
    return self._dense_logits(query, tf.constant(rows, tf.int32)).numpy().astype(np.float32)

  def __call__(self, examples: Sequence, features=None) -> Dict[str, np.ndarray]:
    """`retrieve_fn` protocol: {"rows" int32 [B, k], "scores" float32 [B, k] (BM25's),
    "reader_logits" float32 [B, k] (per `reader_logits`)}, best first; ties keep index order."""
    scores, rows = self.search([e.question for e in examples])
    if self.reader_logits == "dense":
      if self._model is None or features is None:
        raise ValueError("BM25 reader_logits='dense' needs the model (its query tower) and the "
                         "questions' features.")
      logits = self.model_logits(features, rows)
    else:
      logits = np.zeros_like(scores)
    return {"rows": rows, "scores": scores, "reader_logits": logits}
