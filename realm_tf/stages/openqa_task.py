"""Open-QA fine-tuning task for the shared `Trainer` (ORQA's retriever + reader losses).

The step reads the retrieved blocks' wordpieces from the host's block lookup between retrieval
and the losses, so the task is a `HostStagedTask`: `OpenQAModel.retrieve_beam` (device),
`beam_blocks` (host), `loss_from_beam` (device); with `jit_compile` the Trainer compiles the two
device parts. Called whole it is `OpenQAModel.compute_loss`.

Behind BM25 (`retriever="bm25"`, the paper's BM25 + reader baseline) the beam is the batch's
`bm25_rows` (BM25's top rows of each question, computed on the host before training by
`training_data`), every retrieval logit is zero (the reader reads without one, as ORQA's BM25
baseline does), and the loss is the reader's alone: BM25 is not trained.
"""
import functools

import tensorflow as tf

from realm_tf.training.trainer import HostStagedTask

RETRIEVERS = ("dense", "bm25")


def openqa_task(reader_positives: str = "none", retriever: str = "dense") -> HostStagedTask:
  """The fine-tuning task: (OpenQAModel, batch, training) → (per-example loss [B],
  {name: (sum, count)}).

  `reader_positives` (beam | gold | none, see `OpenQAModel.compute_loss`) says what the reader
  reads when none of its blocks bears an answer. `retriever` (RETRIEVERS) is where the blocks
  read come from: the query tower's beam (`dense`) or the batch's `bm25_rows` (`bm25`: no
  retrieval logit, no retriever loss; see the module docstring).

  Metrics: the two loss terms, how often the retriever beam / the K read blocks hold an answer,
  how often the reader loss is non-zero (the share of questions that train the reader), how
  often a positive block was substituted, and how often the best span is a gold span (a
  training-time exact-match proxy).
  """
  if retriever not in RETRIEVERS:
    raise ValueError(f"retriever must be one of {RETRIEVERS}, got {retriever!r}.")
  first = _bm25_beam if retriever == "bm25" else \
      lambda model, batch, training: model.retrieve_beam(batch, training=training)
  return HostStagedTask(
      device_first=first,
      host=lambda model, batch, beam: model.beam_blocks(batch, beam, reader_positives),
      device_second=functools.partial(_losses, reader_positives=reader_positives,
                                      retriever=retriever))


def _bm25_beam(model, batch, training):
  """The beam of `retrieve_beam`'s shape from the batch's BM25 rows: `beam_rows` int32 [B, M],
  zero `beam_scores`, and a zero question embedding `q` (so a gold positive is also read with a
  zero logit). The query tower is not run: nothing in the loss depends on it."""
  del training
  rows = tf.cast(batch["bm25_rows"], tf.int32)
  zeros = tf.zeros(tf.shape(rows), tf.float32)
  q = tf.zeros([tf.shape(rows)[0], model.config.retriever.projection_size], tf.float32)
  return {"q": q, "beam_scores": zeros, "beam_rows": rows}


def _losses(model, batch, beam, blocks, training, reader_positives, retriever):
  out = model.loss_from_beam(batch, beam, blocks, training=training,
                             reader_positives=reader_positives)
  n = tf.cast(tf.size(out["loss"]), tf.float32)
  loss, retriever_loss = out["loss"], out["retriever_loss"]
  if retriever == "bm25":  # BM25 is not trained: the reader's loss alone
    loss, retriever_loss = out["reader_loss"], tf.zeros_like(out["retriever_loss"])

  def total(x):
    return (tf.reduce_sum(tf.cast(x, tf.float32)), n)

  return loss, {
      "retriever_loss": total(retriever_loss),
      "reader_loss": total(out["reader_loss"]),
      "beam_has_answer": total(out["beam_has_answer"]),
      "reader_has_answer": total(out["reader_has_answer"]),
      "reader_loss_nonzero": total(tf.not_equal(out["reader_loss"], 0.0)),
      "reader_substituted": total(out["reader_substituted"]),
      "reader_correct": total(out["reader_correct"]),
  }
