"""Open-QA fine-tuning task for the shared `Trainer` (ORQA's retriever + reader losses)."""
import tensorflow as tf


def openqa_task(model, batch, training):
  """(OpenQAModel, batch, training) → (per-example loss [B], {name: (sum, count)}).

  Metrics: the two loss terms, how often the retriever beam / the K read blocks hold an answer,
  and how often the best span is a gold span (a training-time exact-match proxy).
  """
  out = model.compute_loss(batch, training=training)
  n = tf.cast(tf.size(out["loss"]), tf.float32)

  def total(x):
    return (tf.reduce_sum(tf.cast(x, tf.float32)), n)

  return out["loss"], {
      "retriever_loss": total(out["retriever_loss"]),
      "reader_loss": total(out["reader_loss"]),
      "beam_has_answer": total(out["beam_has_answer"]),
      "reader_has_answer": total(out["reader_has_answer"]),
      "reader_correct": total(out["reader_correct"]),
  }
