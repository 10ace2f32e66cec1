"""Training tasks: per-example loss and metrics for the shared `Trainer`.

A task maps (model, batch, training) to (per_example_loss [B], {name: (sum, count)}), so
metrics aggregate exactly across replicas.
"""
import tensorflow as tf

from realm_tf.modeling.retriever import INPUT_KEYS


def realm_pretrain_task(model, batch, training):
  """REALM: −log Σ_z p(z|x) p(y|z,x), with utility, null posterior and MLM accuracy."""
  stats = model.compute_outputs(batch, training=training)
  per_example_loss = -stats["marginal_log_prob"]
  n = tf.cast(tf.size(per_example_loss), tf.float32)
  return per_example_loss, {
      "retrieval_utility": (tf.reduce_sum(stats["retrieval_utility"]), n),
      "null_posterior": (tf.reduce_sum(stats["null_posterior"]), n),
      "mlm_accuracy": (tf.reduce_sum(stats["token_correct"]),
                       tf.reduce_sum(tf.cast(batch["masked_weights"], tf.float32))),
  }


def ict_task(model, batch, training):
  """Inverse Cloze Task: the pseudo-query's own block against in-batch negatives (per replica)."""
  q = model.embed_queries({k: batch[f"query/{k}"] for k in INPUT_KEYS}, training=training)
  d = model.embed_documents({k: batch[f"block/{k}"] for k in INPUT_KEYS}, training=training)
  logits = tf.matmul(q, d, transpose_b=True)
  labels = tf.range(tf.shape(logits)[0])
  per_example_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
  correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
  return per_example_loss, {"accuracy": (tf.reduce_sum(correct), tf.cast(tf.size(correct),
                                                                          tf.float32))}
