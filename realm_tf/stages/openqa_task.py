"""Open-QA fine-tuning task for the shared `Trainer` (ORQA's retriever + reader losses).

The step reads the retrieved blocks' wordpieces from the host's block lookup between retrieval
and the losses, so the task is a `HostStagedTask`: `OpenQAModel.retrieve_beam` (device),
`beam_blocks` (host), `loss_from_beam` (device); with `jit_compile` the Trainer compiles the two
device parts. Called whole it is `OpenQAModel.compute_loss`.
"""
import functools

import tensorflow as tf

from realm_tf.training.trainer import HostStagedTask


def openqa_task(reader_positives: str = "none") -> HostStagedTask:
  """The fine-tuning task: (OpenQAModel, batch, training) → (per-example loss [B],
  {name: (sum, count)}).

  `reader_positives` (beam | gold | none, see `OpenQAModel.compute_loss`) says what the reader
  reads when none of its blocks bears an answer.

  Metrics: the two loss terms, how often the retriever beam / the K read blocks hold an answer,
  how often the reader loss is non-zero (the share of questions that train the reader), how
  often a positive block was substituted, and how often the best span is a gold span (a
  training-time exact-match proxy).
  """
  return HostStagedTask(
      device_first=lambda model, batch, training: model.retrieve_beam(batch, training=training),
      host=lambda model, batch, beam: model.beam_blocks(batch, beam, reader_positives),
      device_second=functools.partial(_losses, reader_positives=reader_positives))


def _losses(model, batch, beam, blocks, training, reader_positives):
  out = model.loss_from_beam(batch, beam, blocks, training=training,
                             reader_positives=reader_positives)
  n = tf.cast(tf.size(out["loss"]), tf.float32)

  def total(x):
    return (tf.reduce_sum(tf.cast(x, tf.float32)), n)

  return out["loss"], {
      "retriever_loss": total(out["retriever_loss"]),
      "reader_loss": total(out["reader_loss"]),
      "beam_has_answer": total(out["beam_has_answer"]),
      "reader_has_answer": total(out["reader_has_answer"]),
      "reader_loss_nonzero": total(tf.not_equal(out["reader_loss"], 0.0)),
      "reader_substituted": total(out["reader_substituted"]),
      "reader_correct": total(out["reader_correct"]),
  }
