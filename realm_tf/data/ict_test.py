"""Tests of ICT (query sentence, block without it) examples."""
import pytest
import numpy as np
import tensorflow as tf

from realm_tf.data import ict
from realm_tf.text import RealmTokenizer

BODY = ("Warsaw is the capital of Poland. It lies on the Vistula river. The city has 1.8 "
        "million people! Is it old? Its first mention dates to 1313.")
SENTENCES = ["Warsaw is the capital of Poland.", "It lies on the Vistula river.",
             "The city has 1.8 million people!", "Is it old?", "Its first mention dates to 1313."]


class ICTTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tok = RealmTokenizer()
    # One builder for all tests: each builder traces the tokenizer graph once (seconds).
    cls.builder = ict.ICTExampleBuilder(ict.IctExampleConfig(seed=3), cls.tok)

  def _ids(self, text):
    return self.tok.tokenize([text])[0].numpy().tolist()

  def _blocks(self, n):
    block = {"block_id": tf.constant(42, tf.int64), "doc_id": tf.constant("Warsaw#0"),
             "title": tf.constant("Warsaw"), "body": tf.constant(BODY),
             "title_ids": tf.constant(self._ids("Warsaw"), tf.int32),
             "body_ids": tf.constant(self._ids(BODY), tf.int32)}
    return tf.data.Dataset.from_tensors(block).repeat(n)

  def test_query_is_a_sentence_and_removed_from_the_block(self):
    builder = self.builder
    sentence_ids = [self._ids(s) for s in SENTENCES]
    seen = set()
    for ex in builder.dataset(self._blocks(40)).as_numpy_iterator():
      self.assertEqual(ex["query_input_word_ids"].shape, (96,))
      self.assertEqual(ex["block_input_word_ids"].shape, (288,))
      self.assertEqual(ex["block_id"], 42)
      q = ex["query_input_word_ids"][: ex["query_input_mask"].sum()].tolist()
      self.assertEqual((q[0], q[-1]), (self.tok.cls_id, self.tok.sep_id))
      self.assertIn(q[1:-1], sentence_ids)  # "1.8" does not split a sentence
      k = sentence_ids.index(q[1:-1])
      seen.add(k)
      b = ex["block_input_word_ids"][: ex["block_input_mask"].sum()].tolist()
      title = self._ids("Warsaw")
      self.assertEqual(b[: len(title) + 2], [self.tok.cls_id] + title + [self.tok.sep_id])
      expected_body = sum((s for i, s in enumerate(sentence_ids)
                           if i != k or not ex["sentence_removed"]), [])
      self.assertEqual(b[len(title) + 2:-1], expected_body)
      types = ex["block_input_type_ids"][: len(b)]
      self.assertEqual(types.tolist(), [0] * (len(title) + 2) + [1] * (len(b) - len(title) - 2))
    self.assertLen(seen, 5)  # every sentence gets picked

  def test_removal_rate_is_ninety_percent(self):
    removed = []
    for seed in range(20):
      builder = ict.ICTExampleBuilder(ict.IctExampleConfig(seed=seed), self.tok)
      removed.append(list(tf.data.Dataset.range(500).map(builder.sentence_removed)
                          .as_numpy_iterator()))
    removed = np.array(removed)
    self.assertBetween(removed.mean(), 0.88, 0.92)  # 10,000 draws: 3 sigma = 0.009
    self.assertTrue(np.all(removed.mean(axis=1) > 0.8))  # every seed, 500 draws
    self.assertFalse(np.all(removed[0] == removed[1]))  # seeds differ
    # The examples use exactly this decision.
    builder = self.builder
    got = [ex["sentence_removed"] for ex in builder.dataset(self._blocks(30))
           .as_numpy_iterator()]
    self.assertEqual(got, removed[3][:30].tolist())

  @pytest.mark.slow  # covered more cheaply elsewhere; make test-slow

  def test_deterministic_and_resumable(self):
    builder = self.builder
    ds = builder.dataset(self._blocks(8))
    full = list(ds.as_numpy_iterator())
    again = list(ds.as_numpy_iterator())
    resumed = list(builder.dataset(self._blocks(5), start_index=3).as_numpy_iterator())
    for a, b in zip(full, again):
      np.testing.assert_array_equal(a["query_input_word_ids"], b["query_input_word_ids"])
    for a, b in zip(full[3:], resumed):
      np.testing.assert_array_equal(a["query_input_word_ids"], b["query_input_word_ids"])
      self.assertEqual(a["sentence_removed"], b["sentence_removed"])

  def test_single_sentence_blocks_are_skipped(self):
    block = {"block_id": tf.constant(1, tf.int64), "doc_id": tf.constant("d"),
             "title": tf.constant("t"), "body": tf.constant("Only one sentence here."),
             "title_ids": tf.constant(self._ids("t"), tf.int32),
             "body_ids": tf.constant(self._ids("Only one sentence here."), tf.int32)}
    builder = self.builder
    self.assertEmpty(list(builder.dataset(tf.data.Dataset.from_tensors(block))))


if __name__ == "__main__":
  tf.test.main()
