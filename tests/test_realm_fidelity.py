"""REALM learns what only retrieval can teach it (the retrieval-needed fidelity test).

A generated code book (`realm_tf.testing.synthetic`): the knowledge corpus holds one fact block
per entity, "the code of <name> is <code> ." stated twice; the pre-training corpus holds the
sentence "the code of <name> is <code> .", whose code is masked. Every entity has its own code, so
the only block that can fill the mask is that entity's fact block. Nothing else in the input
tells the code.

Tiny towers and a tiny reader, from scratch:
  * the reader is warmed up (the pipeline's reader warm-up: MLM on a corpus, no retrieval) on
    *another* code book (other names, the same code words). There it learns to read a fact
    block, not these facts. During REALM it is held fixed: a trainable tiny reader memorises
    12 facts through the null document within a few dozen steps, after which retrieval stops
    mattering (measured while designing this test: training MLM accuracy 1.0 by step 50 and
    recall@1 unchanged at 0.25);
  * the retriever starts from random weights: recall@1 of the helpful block is at chance.
REALM with inline index refresh must then raise recall@1 of the helpful block, over the entities
whose queries it trains on, from chance to ≥ 0.8, make held-out retrieval utility positive
(entities whose sentences are never trained on: retrieval now helps their masked code) and lower
the null posterior there. (Recall@1 of the 4 held-out entities is reported, not asserted: measured
while tuning this test it was 0/4 after 160 steps and 1/4 after 240, against 12/12 trained; in one
run at today's 100 steps, refreshed every 50, 3/4 against 12/12, held-out utility 1.19. A warm-up
of 250 steps instead of 450, mlm accuracy 0.71 against 0.83, left REALM at 2/12.)
The same run with the retriever frozen (and the reader trained instead) must not (a slow
test): the gain comes through the retriever's marginal-likelihood gradient. The REALM run uses
the main job's retriever objective ("helpful": the marginal over the retrieved blocks, without
the null document, a block that explains the code worse than the null document scored as the null
document) by default, and "retrieved" and the paper's ("marginal", 200 steps) under `-m slow`.
Breaking that gradient makes this test fail: `tf.stop_gradient` on the relevance scores in
RealmPretrainer.call stops the run ("no trainable variable receives a gradient"), and handing
each retrieved candidate's gradient to another (the candidates' order reversed in the gradient
only) leaves recall@1 at chance, 1/12 (both checked 2026-11-26; the second again after the
stages began seeding their models, 2026-11-27: 1/12).
"""
import os

import numpy as np
import pytest
import tf_keras

from realm_tf.data import corpus as corpus_lib
from realm_tf.data import masking as masking_lib
from realm_tf.evaluation.heldout import HeldOutConfig
from realm_tf.modeling.encoder_config import EncoderConfig
from realm_tf.modeling.realm_pretrainer import RealmConfig
from realm_tf.modeling.retriever import RetrieverConfig
from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.retrieval.refresh import IndexRefresher, RefreshConfig
from realm_tf.testing import synthetic
from realm_tf.text import RealmTokenizer
from realm_tf.stages import ict_experiment
from realm_tf.stages.ict_experiment import IctConfig, IctJobConfig
from realm_tf.stages import reader_warmup
from realm_tf.stages.reader_warmup import ReaderWarmupConfig, ReaderWarmupJobConfig
from realm_tf.stages.realm_experiment import PretrainConfig, RealmExperiment

TINY = EncoderConfig(hidden_size=64, num_layers=2, num_attention_heads=2, intermediate_size=256,
                     dropout_rate=0.0, attention_dropout_rate=0.0)
QUERY, DOC = 12, 24
CODES = 16
HELDOUT = 0.25
STEPS = 100
EVERY = 50


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("fidelity"))
  tok = RealmTokenizer()
  codes = synthetic.code_words(tok, CODES)
  book = synthetic.code_book(os.path.join(root, "book"), tok, num_entities=CODES, codes=codes,
                             distinct=True, max_block_length=DOC)
  practice = synthetic.code_book(os.path.join(root, "practice"), tok, num_entities=1024, seed=1,
                                 codes=codes, max_block_length=DOC)
  tf_keras.utils.set_random_seed(0)
  warmup = reader_warmup.run(ReaderWarmupJobConfig(
      ReaderWarmupConfig(knowledge_encoder=TINY, query_length=QUERY, seq_length=QUERY + DOC,
                         max_predictions=8, mask_rate=0.5, remove_rate=1.0, batch_size=32,
                         num_train_steps=450, learning_rate=4e-3, warmup_steps=45,
                         checkpoint_every=450, log_every=50),
      corpus_dir=practice.corpus_dir, model_dir=os.path.join(root, "reader_warmup")))
  # Not XLA-compiled: compiled, the warm-up was a quarter faster with the same mlm accuracy
  # (0.826), but from that reader the paper's objective (`-m slow`) ended with held-out utility
  # below 0 (-0.118 at 09f1fc4, below 0 again at 19976db; it must be > 0), and uncompiled it
  # passes (at 19976db, 2026-11-28). Its 200 steps are near the edge of what this code book needs.
  masked = synthetic.masked_features(
      book.annotations_dir, masking_lib.MaskingConfig(query_length=QUERY, max_predictions=1), tok)
  helpful = [book.fact_block_ids[i] for i in masked["index"]]
  records = list(corpus_lib.read_annotations(book.annotations_dir))
  heldout = np.array([bool(corpus_lib.record_is_heldout(records[i], HELDOUT))
                      for i in masked["index"]])
  assert 0 < heldout.sum() < len(heldout) // 2, heldout
  return {"root": root, "book": book, "reader": os.path.join(root, "reader_warmup"),
          "warmup": warmup, "masked": masked, "helpful": helpful, "heldout": heldout}


def _recall(bundle, world, heldout: bool) -> float:
  """Recall@1 of the helpful block over the trained (or the held-out) entities' queries."""
  pick = world["heldout"] == heldout
  return synthetic.helpful_recall_at_1(bundle, {k: v[pick] for k, v in world["masked"].items()},
                                       list(np.asarray(world["helpful"])[pick]))


def _run(world, name, train_retriever, train_reader, refresh, steps=STEPS,
         objective="helpful"):
  """REALM on the code book from random towers; returns recall@1 of the trained entities before
  and after, the held-out entities' recall@1 after, and the held-out log."""
  root, book = os.path.join(world["root"], name), world["book"]
  retriever = RetrieverConfig(encoder=TINY, share_towers=True, pooling="mean",
                              query_seq_length=QUERY, doc_seq_length=DOC,
                              projection_dropout=0.0, projection_scale_init=0.1)
  init = ict_experiment.run(IctJobConfig(  # untrained towers, exported
      IctConfig(retriever=retriever, num_train_steps=0, warmup_steps=0, seed=1),  # its init
      corpus_dir=book.corpus_dir, model_dir=os.path.join(root, "init")))
  refresher = IndexRefresher(RefreshConfig(model_dir=os.path.join(root, "realm"),
                                           corpus_dir=book.corpus_dir,
                                           index_dir=os.path.join(root, "index"), min_recall=0.0,
                                           recall_queries=CODES))
  before = _recall(refresher.refresh(init["export"]), world, heldout=False)
  config = PretrainConfig(
      model=RealmConfig(retriever_encoder=TINY, reader_encoder=TINY, share_towers=True,
                        query_seq_length=QUERY, doc_seq_length=DOC, joint_seq_length=QUERY + DOC,
                        num_candidates=8, max_predictions=1, retriever_pooling="mean",
                        retriever_projection_dropout=0.0, retriever_projection_scale_init=0.1,
                        retriever_objective=objective),
      batch_size=16, num_train_steps=steps, learning_rate=2e-3, warmup_steps=steps // 10,
      refresh=refresh, refresh_every_steps=EVERY, export_every_steps=EVERY,
      checkpoint_every=steps, log_every=EVERY, heldout_fraction=HELDOUT,
      train_retriever=train_retriever, train_reader=train_reader)
  experiment = RealmExperiment(config, book.corpus_dir, book.annotations_dir,
                               os.path.join(root, "index"), os.path.join(root, "realm"),
                               refresher=refresher if refresh == "inline" else None,
                               heldout=HeldOutConfig(fraction=HELDOUT, num_queries=4,
                                                     batch_size=4, num_questions=0))
  experiment.train(retriever_init=init["export"], reader_init=world["reader"])
  final = bundle_lib.latest(os.path.join(root, "index"))
  return (before, _recall(final, world, heldout=False), _recall(final, world, heldout=True),
          experiment.heldout_log())


def test_the_warmed_up_reader_reads_a_fact_block(world):
  assert world["warmup"]["mlm_accuracy"] > 0.6, world["warmup"]


# The main job's retriever objective runs by default; the others are the same test, marked slow
# to keep the default run short. The paper's objective (the null document in the retriever's
# gradient too) gets twice the steps: at 100 it reached recall@1 0.58 (2026-11-26).
@pytest.mark.parametrize("objective,steps", [
    ("helpful", STEPS),
    pytest.param("retrieved", STEPS, marks=pytest.mark.slow),
    pytest.param("marginal", 2 * STEPS, marks=pytest.mark.slow)])
def test_realm_learns_to_retrieve_the_one_helpful_block(world, objective, steps):
  before, after, heldout_after, log = _run(world, f"realm_{objective}", train_retriever=True,
                                           train_reader=False, refresh="inline", steps=steps,
                                           objective=objective)
  chance = 1.0 / CODES
  assert before <= 3 * chance, before          # random towers: about chance
  assert after >= 0.8, (before, after, heldout_after)
  start, end = log[0], log[-1]
  assert start["step"] == 0 and end["step"] == steps
  # Held-out entities (never trained as queries): retrieval now helps, and the reader relies on
  # the retrieved block rather than the null document.
  assert end["heldout_retrieval_utility"] > 0, log
  assert end["heldout_retrieval_utility"] > start["heldout_retrieval_utility"], log
  assert end["heldout_null_posterior"] < start["heldout_null_posterior"], log
  world["realm_recall"] = after


# The ablation is a control experiment, kept out of the default run for its time (`make test-slow`
# runs it): the defect it guards against, no gain through the retriever's gradient, already fails
# the default test above (see the module docstring: a stopped or misrouted gradient).
@pytest.mark.slow
def test_a_frozen_retriever_does_not_get_there(world):
  # The ablation: the same run, but only the reader learns. Its index cannot change (so it is
  # not refreshed), whatever the number of steps; a quarter of the budget shows it.
  before, after, _, _ = _run(world, "frozen", train_retriever=False, train_reader=True,
                             refresh="none", steps=STEPS // 4)
  assert after < 0.5, (before, after)
  assert after < world.get("realm_recall", 1.0), after
  np.testing.assert_allclose(after, before, atol=1e-9)  # the index never changed
