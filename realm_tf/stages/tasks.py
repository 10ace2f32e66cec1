"""Training tasks: per-example loss and metrics for the shared `Trainer`.

A task maps (model, batch, training) to (per_example_loss [B], {name: (sum, count)}), so
metrics aggregate exactly across replicas.
"""
import tensorflow as tf

from realm_tf.modeling.retriever import INPUT_KEYS


def realm_pretrain_task(model, batch, training):
  """REALM: −mean_m log Σ_z p(z|x) p(y_m|z,x) per query, with utility, null posterior and MLM
  accuracy."""
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
  """Inverse Cloze Task: each pseudo-query's own block against the blocks of the global batch.

  Under a multi-replica strategy the block embeddings are gathered from every replica (as ORQA's
  `cross_shard_concat`), so the negatives, and the loss, do not depend on how the batch is split.
  """
  q = model.embed_queries({k: batch[f"query/{k}"] for k in INPUT_KEYS}, training=training)
  d = model.embed_documents({k: batch[f"block/{k}"] for k in INPUT_KEYS}, training=training)
  local = tf.shape(d)[0]
  labels = tf.range(local)
  ctx = tf.distribute.get_replica_context()
  if ctx is not None and ctx.num_replicas_in_sync > 1:
    d = ctx.all_gather(d, axis=0)  # [global batch, D]; gradients flow back to every replica
    labels += tf.cast(ctx.replica_id_in_sync_group, tf.int32) * local
  logits = tf.matmul(q, d, transpose_b=True)
  per_example_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
  correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
  return per_example_loss, {"accuracy": (tf.reduce_sum(correct), tf.cast(tf.size(correct),
                                                                          tf.float32))}
