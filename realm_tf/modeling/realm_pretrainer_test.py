"""Tests of the REALM pre-training model: the loss by hand, gradients to every part."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.modeling.realm_pretrainer import (RealmConfig, RealmPretrainer,
                                                marginal_log_likelihood)

SMALL = RealmConfig(query_seq_length=12, doc_seq_length=16, joint_seq_length=24,
                    num_candidates=3, max_predictions=4)


def _np_log_softmax(x, axis=-1):
  x = x - x.max(axis=axis, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def synthetic_batch(config=SMALL, batch_size=2, seed=0):
  """A fixed random pre-training batch in the featurized layout."""
  rng = np.random.RandomState(seed)
  c, m = config.num_candidates, config.max_predictions
  batch = {}
  for prefix, length in (("query", config.query_seq_length), ("candidates", config.doc_seq_length),
                         ("joint", config.joint_seq_length)):
    shape = [batch_size, length] if prefix == "query" else [batch_size, c, length]
    batch[f"{prefix}/input_word_ids"] = tf.constant(rng.randint(1000, 1100, shape), tf.int32)
    batch[f"{prefix}/input_mask"] = tf.ones(shape, tf.int32)
    batch[f"{prefix}/input_type_ids"] = tf.zeros(shape, tf.int32)
  batch["masked_positions"] = tf.constant(rng.randint(1, 5, [batch_size, m]), tf.int32)
  batch["masked_ids"] = tf.constant(rng.randint(1000, 1100, [batch_size, m]), tf.int32)
  w = np.ones([batch_size, m], np.float32)
  w[:, m // 2:] = 0
  batch["masked_weights"] = tf.constant(w)
  cm = np.ones([batch_size, c], np.float32)
  cm[0, -1] = 0
  batch["candidate_mask"] = tf.constant(cm)
  return batch


def _joint_marginal(relevance, logits, ids):
  """log Σ_z p(z|x) Π_m p(y_m|z,x) for one example with every mask real (not REALM's loss)."""
  prior = _np_log_softmax(relevance)
  terms = [prior[z] + sum(_np_log_softmax(logits[z])[k, ids[k]] for k in range(len(ids)))
           for z in range(len(relevance))]
  return np.log(np.sum(np.exp(terms)))


def test_matches_hand_computation():
  rng = np.random.RandomState(3)
  b, c, m, v = 2, 3, 2, 5
  relevance = rng.randn(b, c).astype(np.float32)
  cmask = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
  logits = rng.randn(b, c, m, v).astype(np.float32)
  ids = np.array([[1, 4], [2, 0]], np.int32)
  weights = np.array([[1, 1], [1, 0]], np.float32)
  out = marginal_log_likelihood(relevance, cmask, logits, ids, weights)

  for i in range(b):
    valid = [z for z in range(c) if cmask[i, z]]
    prior = _np_log_softmax(relevance[i, valid])
    marginals, nulls, null_posts = [], [], []
    for k in range(m):  # each masked token marginalises over the candidates on its own
      if not weights[i, k]:
        continue
      terms = [prior[j] + _np_log_softmax(logits[i, z])[k, ids[i, k]]
               for j, z in enumerate(valid)]
      marginals.append(np.log(np.sum(np.exp(terms))))
      nulls.append(terms[0] - prior[0])
      null_posts.append(np.exp(terms[0] - marginals[-1]))
    np.testing.assert_allclose(out["marginal_log_prob"][i], np.mean(marginals),
                               rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(out["null_log_prob"][i], np.mean(nulls), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(out["retrieval_utility"][i], np.mean(marginals) - np.mean(nulls),
                               rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(out["null_posterior"][i], np.mean(null_posts),
                               rtol=1e-6, atol=1e-5)
  # Two tokens explained by two different candidates: the per-token marginal (the original's)
  # is not the marginal of their product.
  assert not np.allclose(out["marginal_log_prob"][0],
                         _joint_marginal(relevance[0], logits[0], ids[0]) / 2,
                         rtol=1e-6, atol=1e-6)


def _hand_gradients(relevance, cmask, logits, ids, weights):
  """d(token-mean marginal)/d relevance and /d logits of one example, by the posterior formulas."""
  valid = [z for z in range(len(relevance)) if cmask[z]]
  real = [z for z in valid if z != 0]
  prior = np.full(len(relevance), -np.inf)
  prior[valid] = _np_log_softmax(relevance[valid])
  real_prior = np.full(len(relevance), -np.inf)
  real_prior[real] = _np_log_softmax(relevance[real])
  masks = [k for k in range(len(ids)) if weights[k]]
  d_rel_paper, d_rel_retrieved = np.zeros_like(relevance), np.zeros_like(relevance)
  d_logits = np.zeros_like(logits)
  for k in masks:
    lp = np.array([_np_log_softmax(logits[z])[k, ids[k]] for z in range(len(relevance))])
    post = np.exp(prior + lp - np.logaddexp.reduce((prior + lp)[valid]))
    real_post = np.exp(real_prior + lp - np.logaddexp.reduce((real_prior + lp)[real]))
    d_rel_paper += (post - np.exp(prior)) / len(masks)
    d_rel_retrieved += (real_post - np.exp(real_prior)) / len(masks)
    for z in valid:  # d log p(y|z,x) / d logits = onehot - softmax, weighted by the posterior
      soft = np.exp(_np_log_softmax(logits[z][k]))
      d_logits[z, k] += post[z] * (np.eye(len(soft))[ids[k]] - soft) / len(masks)
  return d_rel_paper, d_rel_retrieved, d_logits


def _objective_results(relevance, cmask, logits, ids, weights, objectives):
  """{objective: (marginal_log_prob, d total / d relevance, d total / d logits)} as numpy."""
  results = {}
  for objective in objectives:
    rel, lg = tf.Variable(relevance), tf.Variable(logits)
    with tf.GradientTape() as tape:
      out = marginal_log_likelihood(rel, cmask, lg, ids, weights, objective)
      total = tf.reduce_sum(out["marginal_log_prob"])
    results[objective] = (out["marginal_log_prob"].numpy(),) + tuple(
        g.numpy() for g in tape.gradient(total, [rel, lg]))
  return results


def test_retriever_objectives_match_hand_gradients():
  # "marginal": the paper's gradient, p(z|x,y) - p(z|x) over every candidate. "retrieved": the
  # same value and reader gradient, but the real candidates' gradient is the posterior minus the
  # prior over the retrieved candidates only; the null document's score keeps the paper's.
  rng = np.random.RandomState(5)
  b, c, m, v = 2, 4, 3, 6
  relevance = rng.randn(b, c).astype(np.float32)
  cmask = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], np.float32)
  logits = rng.randn(b, c, m, v).astype(np.float32)
  ids = rng.randint(0, v, [b, m]).astype(np.int32)
  weights = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
  results = _objective_results(relevance, cmask, logits, ids, weights,
                               ("marginal", "retrieved"))
  np.testing.assert_allclose(results["retrieved"][0], results["marginal"][0], rtol=1e-6)
  for i in range(b):
    paper, retrieved, d_logits = _hand_gradients(relevance[i], cmask[i], logits[i], ids[i],
                                                 weights[i])
    np.testing.assert_allclose(results["marginal"][1][i], paper, atol=1e-5)
    # Real candidates: the retrieved-only gradient; the null document's score: the paper's
    # (the model routes it to the learned null bias alone).
    np.testing.assert_allclose(results["retrieved"][1][i][1:], retrieved[1:], atol=1e-5)
    assert retrieved[0] == 0.0 and abs(paper[0]) > 1e-3
    np.testing.assert_allclose(results["retrieved"][1][i][0], paper[0], atol=1e-5)
    for objective in ("marginal", "retrieved"):
      np.testing.assert_allclose(results[objective][2][i], d_logits, atol=1e-5)


def test_helpful_credits_only_blocks_that_beat_the_null_document():
  # Query 0: candidate 2 predicts the targets better than the null document, candidates 1 and 3
  # worse; query 1: every retrieved block worse. "helpful" scores a worse block as the null
  # document: query 0's gradient is the retrieved-only posterior minus prior with those
  # likelihoods, and query 1's real candidates get none. The value, the reader's and the null
  # score's gradients stay the paper's.
  rng = np.random.RandomState(7)
  b, c, m, v = 2, 4, 3, 6
  relevance = rng.randn(b, c).astype(np.float32)
  cmask = np.ones([b, c], np.float32)
  ids = rng.randint(0, v, [b, m]).astype(np.int32)
  weights = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
  logits = rng.randn(b, c, m, v).astype(np.float32) * 0.1
  onehot = np.eye(v, dtype=np.float32)[ids]  # [b, m, v]
  logits[0, 0] += 2.0 * onehot[0]
  logits[0, 2] += 4.0 * onehot[0]
  logits[1, 0] += 4.0 * onehot[1]
  results = _objective_results(relevance, cmask, logits, ids, weights,
                               ("retrieved", "helpful"))
  helped, retrieved = results["helpful"], results["retrieved"]
  np.testing.assert_allclose(helped[0], retrieved[0], rtol=1e-6)
  np.testing.assert_allclose(helped[2], retrieved[2], atol=1e-6)
  np.testing.assert_allclose(helped[1][:, 0], retrieved[1][:, 0], atol=1e-6)
  real_prior = np.exp(_np_log_softmax(relevance[0, 1:]))
  hand = np.zeros(c - 1)
  for k in range(m):
    lp = np.array([_np_log_softmax(logits[0, z])[k, ids[0, k]] for z in range(c)])
    credit = np.maximum(lp[1:], lp[0])
    post = real_prior * np.exp(credit - credit.max())
    hand += (post / post.sum() - real_prior) / m
  assert hand[1] > 1e-3 and hand[0] < 0 and hand[2] < 0
  np.testing.assert_allclose(helped[1][0, 1:], hand, atol=1e-5)
  assert np.abs(retrieved[1][1, 1:]).max() > 1e-3
  np.testing.assert_allclose(helped[1][1, 1:], 0.0, atol=1e-7)


@pytest.mark.parametrize("objective", ["marginal", "retrieved", "helpful"])
def test_the_null_bias_learns_the_null_prior_and_retrieved_keeps_the_towers_out(objective):
  config = dataclasses.replace(SMALL, null_score_bias=True, retriever_objective=objective)
  model = RealmPretrainer(config)
  batch = synthetic_batch(config, batch_size=1)  # one query: one bias can balance its prior
  start = model(batch)["relevance"].numpy()
  # A bias that gives the null document half of the prior, so that it has a gradient.
  real = np.where(batch["candidate_mask"].numpy()[:, 1:] > 0, start[:, 1:], -1e9)
  model.null_score_bias.assign(float(np.mean(np.logaddexp.reduce(real, axis=1) - start[:, 0])))
  with tf.GradientTape(persistent=True) as tape:
    out = model(batch)
    rel = out["relevance"]
    # Candidate-dependent offsets make the posterior differ from the prior (an untrained reader
    # reads every candidate alike, which leaves the null score almost no gradient).
    offsets = np.random.default_rng(0).normal(0.0, 3.0, out["mlm_logits"].shape)
    stats = marginal_log_likelihood(rel, batch["candidate_mask"],
                                    out["mlm_logits"] + tf.constant(offsets, tf.float32),
                                    batch["masked_ids"], batch["masked_weights"], objective)
    total = tf.reduce_sum(stats["marginal_log_prob"])
    null_score = tf.reduce_sum(rel[:, 0])
  # The bias's gradient is the null score's: Σ_b (p(null|x,y) - p(null|x)) per token mean.
  d_rel = tape.gradient(total, rel).numpy()
  np.testing.assert_allclose(tape.gradient(total, model.null_score_bias).numpy(),
                             d_rel[:, 0].sum(), rtol=1e-5, atol=1e-7)
  assert np.abs(d_rel[:, 0]).max() > 1e-3, d_rel[:, 0]
  # The null document's score reaches the towers under the paper's objective only.
  towers = tape.gradient(null_score, model.retriever.trainable_variables)
  reached = any(g is not None and float(tf.reduce_max(tf.abs(tf.convert_to_tensor(g)))) > 0
                for g in towers)
  assert reached == (objective == "marginal")
  without = RealmPretrainer(dataclasses.replace(config, null_score_bias=False))
  without(batch)
  assert "null_score_bias" not in " ".join(v.name for v in without.trainable_variables)


def test_unknown_retriever_objective_is_refused():
  with pytest.raises(ValueError, match="retriever_objective"):
    marginal_log_likelihood(tf.zeros([1, 2]), tf.ones([1, 2]), tf.zeros([1, 2, 1, 3]),
                            tf.zeros([1, 1], tf.int32), tf.ones([1, 1]), "null")


def test_padded_candidates_get_no_mass():
  relevance = tf.constant([[0.0, 100.0, 0.0]])
  logits = tf.zeros([1, 3, 1, 4])
  out = marginal_log_likelihood(relevance, tf.constant([[1.0, 0.0, 1.0]]), logits,
                                tf.constant([[1]]), tf.constant([[1.0]]))
  np.testing.assert_allclose(tf.exp(out["log_prior"])[0], [0.5, 0.0, 0.5], rtol=1e-6, atol=1e-6)


def test_gradients_reach_both_towers_and_mlm_head():
  model = RealmPretrainer(SMALL)
  batch = synthetic_batch()
  with tf.GradientTape() as tape:
    loss = -tf.reduce_mean(model.compute_outputs(batch, training=True)["marginal_log_prob"])
  grads = dict(zip([v.name for v in model.trainable_variables],
                   tape.gradient(loss, model.trainable_variables)))

  def nonzero(prefix):
    hits = [g for n, g in grads.items() if prefix in n and g is not None]
    return bool(hits) and any(float(tf.reduce_max(tf.abs(tf.convert_to_tensor(g)))) > 0
                              for g in hits)

  assert nonzero("query_encoder/transformer")
  assert nonzero("query_projection")
  assert nonzero("doc_encoder/transformer")
  assert nonzero("doc_projection")
  assert nonzero("knowledge_encoder/transformer")
  assert nonzero("mlm_head")


@pytest.mark.parametrize("frozen", ["knowledge_encoder", "retriever"])
def test_a_frozen_tower_runs_without_dropout_while_the_other_trains(frozen):
  model = RealmPretrainer(SMALL)
  batch = synthetic_batch()
  model(batch)
  getattr(model, frozen).trainable = False
  first, second = model(batch, training=True), model(batch, training=True)
  frozen_out, trained_out = (("mlm_logits", "relevance") if frozen == "knowledge_encoder"
                             else ("relevance", "mlm_logits"))
  np.testing.assert_array_equal(first[frozen_out].numpy(), second[frozen_out].numpy())
  assert not np.allclose(first[trained_out].numpy(), second[trained_out].numpy())


def test_mlm_head_is_tied_to_word_embeddings():
  model = RealmPretrainer(SMALL).build_all()
  head_table = model.knowledge_encoder.mlm_head.embedding_table
  assert head_table is model.knowledge_encoder.encoder.get_embedding_table()


def _full_size_tensors(config, batch_size):
  """Allocating ops of one traced training step (forward + backward) whose output holds
  batch × candidates × masks × vocab floats: the [B, C, M, V] tensors that bound memory."""
  from realm_tf.stages import tasks  # pylint: disable=g-import-not-at-top
  model = RealmPretrainer(config).build_all()
  batch = synthetic_batch(config, batch_size=batch_size)

  @tf.function
  def step(b):
    with tf.GradientTape() as tape:
      loss, metrics = tasks.realm_pretrain_task(model, b, True)
      loss = tf.reduce_sum(loss)
    return tape.gradient(loss, model.trainable_variables), metrics

  graph = step.get_concrete_function(batch).graph
  size = batch_size * config.num_candidates * config.max_predictions * \
      config.reader_encoder_config.vocab_size
  # Views and pass-throughs allocate nothing (a while loop's outputs include its loop-invariant
  # inputs).
  free = {"Reshape", "Identity", "IdentityN", "StopGradient", "ExpandDims", "Squeeze",
          "Placeholder", "Const", "Shape", "While", "StatelessWhile"}
  weights = {v.shape.num_elements() for v in model.variables}  # weights and their gradients
  found, larger = [], []
  for op in graph.get_operations():
    if op.type in free:
      continue
    for out in op.outputs:
      if out.dtype.is_floating and out.shape.is_fully_defined():
        if out.shape.num_elements() == size:
          found.append(op.type)
        elif out.shape.num_elements() > size and out.shape.num_elements() not in weights:
          larger.append((op.type, out.shape.as_list()))
  return found, larger


def test_default_masks_per_query_are_the_originals_ten():
  assert RealmConfig().max_predictions == 10


def test_a_training_step_holds_few_full_size_logit_tensors():
  """The logits [B, C, M, V] are pre-training's largest tensor; the loss uses one fused
  cross-entropy and the accuracy diagnostic builds no second one (counted op by op)."""
  found, larger = _full_size_tensors(SMALL, batch_size=2)
  # Nothing is larger than the logits (a broadcast matmul against the tied output table once
  # built [B*C, vocab, hidden] for the table's gradient).
  assert not larger, larger
  # The logits (matmul, + bias), the fused cross-entropy, and its backprop times the incoming
  # gradient. (Before: 11, with a log-softmax, its gradient, a scatter of the gathered targets
  # and the accuracy's own [B, C, M, V] sum.)
  assert len(found) <= 4, found
