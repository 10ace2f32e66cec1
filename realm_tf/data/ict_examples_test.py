"""Tests of ICT (query sentence, block without it) examples."""
import numpy as np
import pytest
import tensorflow as tf

from realm_tf.data import ict_examples

BODY = ("Warsaw is the capital of Poland. It lies on the Vistula river. The city has 1.8 "
        "million people! Is it old? Its first mention dates to 1313.")
SENTENCES = ["Warsaw is the capital of Poland.", "It lies on the Vistula river.",
             "The city has 1.8 million people!", "Is it old?", "Its first mention dates to 1313."]


@pytest.fixture(scope="module")
def builder(tok):
  # One builder for all tests: each builder traces the tokenizer graph once (seconds).
  return ict_examples.ICTExampleBuilder(ict_examples.IctExampleConfig(seed=3), tok)


def _ids(tok, text):
  return tok.tokenize([text])[0].numpy().tolist()


def _blocks(tok, n):
  block = {"block_id": tf.constant(42, tf.int64), "doc_id": tf.constant("Warsaw#0"),
           "title": tf.constant("Warsaw"), "body": tf.constant(BODY),
           "title_ids": tf.constant(_ids(tok, "Warsaw"), tf.int32),
           "body_ids": tf.constant(_ids(tok, BODY), tf.int32)}
  return tf.data.Dataset.from_tensors(block).repeat(n)


def test_query_is_a_sentence_and_removed_from_the_block(tok, builder):
  sentence_ids = [_ids(tok, s) for s in SENTENCES]
  seen = set()
  for ex in builder.dataset(_blocks(tok, 40)).as_numpy_iterator():
    assert ex["query_input_word_ids"].shape == (96,)
    assert ex["block_input_word_ids"].shape == (288,)
    assert ex["block_id"] == 42
    q = ex["query_input_word_ids"][: ex["query_input_mask"].sum()].tolist()
    assert (q[0], q[-1]) == (tok.cls_id, tok.sep_id)
    assert q[1:-1] in sentence_ids  # "1.8" does not split a sentence
    k = sentence_ids.index(q[1:-1])
    seen.add(k)
    b = ex["block_input_word_ids"][: ex["block_input_mask"].sum()].tolist()
    title = _ids(tok, "Warsaw")
    assert b[: len(title) + 2] == [tok.cls_id] + title + [tok.sep_id]
    expected_body = sum((s for i, s in enumerate(sentence_ids)
                         if i != k or not ex["sentence_removed"]), [])
    assert b[len(title) + 2:-1] == expected_body
    types = ex["block_input_type_ids"][: len(b)]
    assert types.tolist() == [0] * (len(title) + 2) + [1] * (len(b) - len(title) - 2)
  assert len(seen) == 5  # every sentence gets picked


def test_removal_rate_is_ninety_percent(tok, builder):
  removed = []
  for seed in range(20):
    seeded = ict_examples.ICTExampleBuilder(ict_examples.IctExampleConfig(seed=seed), tok)
    removed.append(list(tf.data.Dataset.range(500).map(seeded.sentence_removed)
                        .as_numpy_iterator()))
  removed = np.array(removed)
  assert 0.88 <= removed.mean() <= 0.92  # 10,000 draws: 3 sigma = 0.009
  assert np.all(removed.mean(axis=1) > 0.8)  # every seed, 500 draws
  assert not np.all(removed[0] == removed[1])  # seeds differ
  # The examples use exactly this decision.
  got = [ex["sentence_removed"] for ex in builder.dataset(_blocks(tok, 30))
         .as_numpy_iterator()]
  assert got == removed[3][:30].tolist()


@pytest.mark.slow  # covered more cheaply elsewhere; make test-slow
def test_deterministic_and_resumable(tok, builder):
  ds = builder.dataset(_blocks(tok, 8))
  full = list(ds.as_numpy_iterator())
  again = list(ds.as_numpy_iterator())
  resumed = list(builder.dataset(_blocks(tok, 5), start_index=3).as_numpy_iterator())
  for a, b in zip(full, again):
    np.testing.assert_array_equal(a["query_input_word_ids"], b["query_input_word_ids"])
  for a, b in zip(full[3:], resumed):
    np.testing.assert_array_equal(a["query_input_word_ids"], b["query_input_word_ids"])
    assert a["sentence_removed"] == b["sentence_removed"]


def test_single_sentence_blocks_are_skipped(tok, builder):
  block = {"block_id": tf.constant(1, tf.int64), "doc_id": tf.constant("d"),
           "title": tf.constant("t"), "body": tf.constant("Only one sentence here."),
           "title_ids": tf.constant(_ids(tok, "t"), tf.int32),
           "body_ids": tf.constant(_ids(tok, "Only one sentence here."), tf.int32)}
  assert not list(builder.dataset(tf.data.Dataset.from_tensors(block)))
