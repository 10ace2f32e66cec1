"""Open-QA fine-tuning task for the shared `Trainer` (ORQA's retriever + reader losses)."""
import tensorflow as tf


def openqa_task(model, batch, training, reader_positives: str = "none"):
  """(OpenQAModel, batch, training) → (per-example loss [B], {name: (sum, count)}).

  `reader_positives` (beam | gold | none, see `OpenQAModel.compute_loss`) says what the reader
  reads when none of its blocks bears an answer; bind it with functools.partial.

  Metrics: the two loss terms, how often the retriever beam / the K read blocks hold an answer,
  how often the reader loss is non-zero (the share of questions that train the reader), how
  often a positive block was substituted, and how often the best span is a gold span (a
  training-time exact-match proxy).
  """
  out = model.compute_loss(batch, training=training, reader_positives=reader_positives)
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
