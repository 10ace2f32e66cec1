"""The REALM pre-training model and its marginal-likelihood loss.

For each masked query x the input pipeline supplies C candidate documents: the null document
(index 0, always present) and the top retrieved blocks with the query's own block removed.
The model recomputes relevance `f(x, z)` with the current parameters of both towers (so
gradients reach both, although retrieval used a stale index), runs the knowledge-augmented
encoder on every (x, z) pair, and marginalises over z for each masked token, as the original
(language/realm/model.py) does:

    loss = -mean_m log Σ_z p(z|x) p(y_m|z,x) = -mean_m logsumexp_z(log_softmax(f)(z) + log p(y_m|z,x))

Marginalising each token separately (rather than the product over a query's masks) keeps the
posterior over candidates from sharpening with the number of masks, so the retriever's gradient
p(z|x) - p(z|x,y_m) stays informative.
"""
import dataclasses
from typing import Union

import tensorflow as tf
import tf_keras

from realm_tf.modeling.encoder_config import EncoderConfig, get_encoder_config
from realm_tf.modeling.knowledge_encoder import KnowledgeAugmentedEncoder
from realm_tf.modeling.retriever import INPUT_KEYS, Retriever, RetrieverConfig
from realm_tf.text import packing
from realm_tf.config_base import ConfigBase

_NEG_INF = -1e9


@dataclasses.dataclass(frozen=True)
class RealmConfig(ConfigBase):
  """Sizes and shapes of the pre-training model (paper defaults except the encoder preset)."""
  NESTED = {"retriever_encoder": EncoderConfig, "reader_encoder": EncoderConfig}
  retriever_encoder: Union[str, EncoderConfig] = "tiny"
  reader_encoder: Union[str, EncoderConfig] = "tiny"
  projection_size: int = 128
  share_towers: bool = False
  query_seq_length: int = packing.QUERY_LENGTH
  doc_seq_length: int = packing.BLOCK_LENGTH
  joint_seq_length: int = packing.JOINT_LENGTH
  num_candidates: int = 8  # the null document + 7 retrieved
  max_predictions: int = 10  # masked wordpieces per query (the original's max_masks)
  retriever_pooling: str = "cls"  # RetrieverConfig.pooling
  retriever_projection_dropout: float = 0.1  # RetrieverConfig.projection_dropout
  retriever_projection_scale_init: float = 1.0  # RetrieverConfig.projection_scale_init
  # Where the retriever's gradient comes from (`marginal_log_likelihood`): "marginal", the paper's
  # marginal over every candidate, the null document included; or "retrieved", the marginal over
  # the retrieved candidates alone (the prior renormalised without the null document).
  retriever_objective: str = "marginal"
  # A learned scalar added to the null document's score: the prior's "do not retrieve" logit,
  # trained by the marginal's gradient p(null|x,y) - p(null|x) alone. Under "retrieved" it is the
  # only way the null document's prior learns (the query and block embeddings get none of that
  # gradient); under "marginal" it adds to the paper's null-embedding score.
  null_score_bias: bool = False

  @property
  def reader_encoder_config(self) -> EncoderConfig:
    return get_encoder_config(self.reader_encoder)

  @property
  def retriever_config(self) -> RetrieverConfig:
    return RetrieverConfig(encoder=self.retriever_encoder, projection_size=self.projection_size,
                           share_towers=self.share_towers, query_seq_length=self.query_seq_length,
                           doc_seq_length=self.doc_seq_length, pooling=self.retriever_pooling,
                           projection_dropout=self.retriever_projection_dropout,
                           projection_scale_init=self.retriever_projection_scale_init)



RETRIEVER_OBJECTIVES = ("marginal", "retrieved", "helpful")


def _log_marginal(scores, mask, target_log_probs):
  """log Σ_z p(z|x) p(y_m|z,x) [B, M], the prior a softmax of `scores` [B, C] over the candidates
  `mask` keeps; `target_log_probs` [B, C, M] are log p(y_m|z,x)."""
  log_prior = tf.nn.log_softmax(scores + (1.0 - mask) * _NEG_INF, axis=-1)
  return tf.reduce_logsumexp((log_prior + (1.0 - mask) * _NEG_INF)[:, :, None] + target_log_probs,
                             axis=1)


def marginal_log_likelihood(relevance, candidate_mask, mlm_logits, masked_ids, masked_weights,
                            retriever_objective: str = "marginal"):
  """REALM's objective and its diagnostics, per example.

  Args:
    relevance: [B, C] retrieval scores f(x, z); candidate 0 is the null document.
    candidate_mask: [B, C] 1 for real candidates, 0 for padding (fewer retrieved).
    mlm_logits: [B, C, M, V] knowledge-augmented encoder logits at the masked positions.
    masked_ids: [B, M] target wordpieces. masked_weights: [B, M] 1 for real targets.
    retriever_objective: "marginal" (the paper): both parts follow the marginal's gradient.
      "retrieved": the value and the reader's gradient stay the paper's, but the retriever's
      gradient is that of log Σ_{z≠null} p(z|x, z≠null) p(y_m|z,x), and the null document's
      score (relevance[:, 0]) keeps the marginal's gradient, for the model's null bias. Under
      the paper's objective, whenever the reader explains a token better without evidence, every query is pulled
      towards the null document's one embedding (and it towards every query), a common
      direction that erodes the ranking of real blocks while a reader still learns to read. Here
      the retriever only learns which retrieved blocks help more than the others.
      "helpful": "retrieved", with each block's log p(y_m|z,x) raised to the null document's
      where it is lower, so that only blocks that help move the ranking; a query that no
      retrieved block helps gives the retriever no gradient.

  Returns:
    dict of [B] tensors, each a mean over the example's masked tokens m (0 without any):
    `marginal_log_prob` (log Σ_z p(z|x) p(y_m|z,x), whose negative is the loss),
    `null_log_prob` (log p(y_m|null,x)), `retrieval_utility` (their difference, the original's
    metric), `null_posterior` (p(null|x,y_m)); and `log_prior` [B, C], `token_correct` [B, M]
    (marginal argmax == target).

  Memory: the [B, C, M, V] logits are the largest tensor of pre-training. The target
  log-probabilities come from one fused softmax cross-entropy (whose backward pass needs no
  further [B, C, M, V] tensor), and the accuracy diagnostic is computed without gradient, one
  candidate at a time.
  """
  if retriever_objective not in RETRIEVER_OBJECTIVES:
    raise ValueError(f"retriever_objective must be one of {RETRIEVER_OBJECTIVES}, got "
                     f"{retriever_objective!r}.")
  relevance = tf.cast(relevance, tf.float32)
  mlm_logits = tf.cast(mlm_logits, tf.float32)
  cmask = tf.cast(candidate_mask, tf.float32)
  weights = tf.cast(masked_weights, tf.float32)
  log_prior = tf.nn.log_softmax(relevance + (1.0 - cmask) * _NEG_INF, axis=-1)  # [B, C]
  num_c = tf.shape(mlm_logits)[1]
  targets = tf.tile(tf.expand_dims(tf.cast(masked_ids, tf.int32), 1), [1, num_c, 1])  # [B, C, M]
  target_log_probs = -tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=targets, logits=mlm_logits)  # [B, C, M]
  joint = (log_prior + (1.0 - cmask) * _NEG_INF)[:, :, None] + target_log_probs  # [B, C, M]
  marginal = tf.reduce_logsumexp(joint, axis=1)  # [B, M]
  null_log_prob = target_log_probs[:, 0]  # [B, M]
  null_posterior = tf.exp(joint[:, 0] - marginal)  # [B, M]
  num_masks = tf.reduce_sum(weights, axis=-1)
  objective = marginal
  if retriever_objective in ("retrieved", "helpful"):
    # Same value as `marginal`; gradients: the reader's through `reader_term`, the retriever's
    # through `retrieved_term` (the prior over real candidates, the null document masked out).
    reader_term = tf.reduce_logsumexp(tf.stop_gradient(joint - target_log_probs) +
                                      target_log_probs, axis=1)
    real = cmask * tf.concat([tf.zeros_like(cmask[:, :1]), tf.ones_like(cmask[:, 1:])], axis=1)
    credited = target_log_probs
    if retriever_objective == "helpful":
      # A block that explains a token worse than the null document counts as the null document:
      # the retriever is credited for evidence, never blamed for a reader that cannot yet
      # ignore a block. Otherwise every query learns to rank the least harmful blocks first,
      # the same few for all (hub blocks; docs/LEARNING.md).
      credited = tf.maximum(target_log_probs, target_log_probs[:, :1])
    retrieved_term = _log_marginal(relevance, real, tf.stop_gradient(credited))
    # The null document's score keeps the marginal's gradient (p(null|x) is calibrated); the
    # model routes it to the learned null bias alone (`RealmPretrainer.call`).
    null_only = tf.concat([relevance[:, :1], tf.stop_gradient(relevance[:, 1:])], axis=1)
    null_term = _log_marginal(null_only, cmask, tf.stop_gradient(target_log_probs))
    objective = (reader_term + retrieved_term - tf.stop_gradient(retrieved_term) +
                 null_term - tf.stop_gradient(null_term))

  def token_mean(x):
    return tf.math.divide_no_nan(tf.reduce_sum(x * weights, axis=-1), num_masks)

  predicted = marginal_argmax(tf.stop_gradient(mlm_logits), tf.stop_gradient(log_prior))
  correct = tf.cast(tf.equal(predicted, tf.cast(masked_ids, tf.int32)), tf.float32) * weights
  return {
      "marginal_log_prob": token_mean(objective),
      "null_log_prob": token_mean(null_log_prob),
      "retrieval_utility": token_mean(marginal - null_log_prob),
      "null_posterior": token_mean(null_posterior),
      "log_prior": log_prior,
      "token_correct": correct,
  }


def marginal_argmax(mlm_logits, log_prior):
  """argmax_v Σ_z p(z|x) p(v|z,x) per masked position: int32 [B, M].

  Accumulates over candidates one at a time, so it holds [B, M, V] tensors, never a second
  [B, C, M, V] one.
  """
  shape = tf.shape(mlm_logits)

  def add(total, z):
    weight = tf.exp(log_prior[:, z])[:, None, None]
    return total + weight * tf.nn.softmax(mlm_logits[:, z], axis=-1)

  total = tf.foldl(add, tf.range(shape[1]),
                   initializer=tf.zeros([shape[0], shape[2], shape[3]], mlm_logits.dtype))
  return tf.argmax(total, axis=-1, output_type=tf.int32)


def _flatten_candidates(features):
  """{k: [B, C, T]} → {k: [B*C, T]}."""
  return {k: tf.reshape(features[k], [-1, tf.shape(features[k])[-1]]) for k in INPUT_KEYS}


class RealmPretrainer(tf_keras.Model):
  """Retriever + knowledge-augmented encoder trained end to end by marginal likelihood.

  Batch features (from `realm_tf.data.pretrain_pipeline`):
    query/{input_word_ids,input_mask,input_type_ids} [B, Tq]
    candidates/{...} [B, C, Td]      (null document first)
    joint/{...} [B, C, Tj]           ([CLS] x [SEP] body [SEP])
    candidate_mask [B, C], masked_positions / masked_ids / masked_weights [B, M]
  """

  def __init__(self, config: RealmConfig = RealmConfig(), **kwargs):
    super().__init__(**kwargs)
    self.config = config
    self.retriever = Retriever(config.retriever_config, name="retriever")
    self.knowledge_encoder = KnowledgeAugmentedEncoder(
        config.reader_encoder, seq_length=config.joint_seq_length, name="knowledge_encoder")
    self.null_score_bias = None
    if config.null_score_bias:
      self.null_score_bias = self.add_weight(name="null_score_bias", shape=[],
                                             initializer="zeros", trainable=True)

  def call(self, batch, training=False):
    """Returns relevance [B, C] and MLM logits [B, C, M, V]."""
    query = {k: batch[f"query/{k}"] for k in INPUT_KEYS}
    cands = {k: batch[f"candidates/{k}"] for k in INPUT_KEYS}
    joint = {k: batch[f"joint/{k}"] for k in INPUT_KEYS}
    b = tf.shape(query["input_word_ids"])[0]
    c = tf.shape(cands["input_word_ids"])[1]
    # A frozen tower (trainable=False: an ablation, or REALM with the reader held) runs in
    # inference mode: its dropout would only add noise to the signal it gives the other tower.
    retriever_training = training and self.retriever.trainable
    reader_training = training and self.knowledge_encoder.trainable
    q_emb = self.retriever.embed_queries(query, training=retriever_training)  # [B, D]
    d_emb = self.retriever.embed_documents(_flatten_candidates(cands),
                                           training=retriever_training)
    d_emb = tf.reshape(d_emb, [b, c, -1])
    relevance = tf.einsum("bd,bcd->bc", q_emb, d_emb)
    if self.config.retriever_objective in ("retrieved", "helpful"):
      # Under "retrieved" the towers get no gradient from the null document's score: only the
      # null bias (if any) learns from it (`marginal_log_likelihood`).
      relevance = tf.concat([tf.stop_gradient(relevance[:, :1]), relevance[:, 1:]], axis=1)
    if self.null_score_bias is not None:
      relevance = tf.concat([relevance[:, :1] + self.null_score_bias, relevance[:, 1:]], axis=1)
    positions = tf.repeat(batch["masked_positions"], c, axis=0)  # [B*C, M]
    logits = self.knowledge_encoder(_flatten_candidates(joint), positions,
                                    training=reader_training)
    logits = tf.reshape(logits, [b, c, tf.shape(logits)[1], tf.shape(logits)[2]])
    return {"relevance": relevance, "mlm_logits": logits}

  def compute_outputs(self, batch, training=False):
    """Forward pass + `marginal_log_likelihood` diagnostics for a batch."""
    out = self(batch, training=training)
    stats = marginal_log_likelihood(out["relevance"], batch["candidate_mask"], out["mlm_logits"],
                                    batch["masked_ids"], batch["masked_weights"],
                                    self.config.retriever_objective)
    stats["relevance"] = out["relevance"]
    return stats

  def build_all(self):
    """Creates every variable with one dummy batch."""
    cfg = self.config
    batch = {}
    for prefix, shape in (("query", [1, cfg.query_seq_length]),
                          ("candidates", [1, 2, cfg.doc_seq_length]),
                          ("joint", [1, 2, cfg.joint_seq_length])):
      for k in INPUT_KEYS:
        batch[f"{prefix}/{k}"] = tf.zeros(shape, tf.int32)
    batch["masked_positions"] = tf.zeros([1, cfg.max_predictions], tf.int32)
    self.retriever.build_towers()
    self(batch)
    return self
