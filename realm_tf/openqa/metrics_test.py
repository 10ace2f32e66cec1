"""Tests of the open-QA metrics: EM normalisation, regex match, has_answer, batch scoring."""
import numpy as np
import tensorflow as tf

from realm_tf.openqa import metrics

# The real CuratedTREC train pattern (line 701) that ends in a lone backslash.
_BROKEN = ("RAO|contamination|iodine|nuclear.+polluted|radiation|radioactive|radioactivi?ty|"
           "tritium|wastes?|xenon|the French physicist Marie Curie|Sievert \\(Sv\\)\\")


class NormalizeTest(tf.test.TestCase):

  def test_articles_punctuation_case_and_space(self):
    self.assertEqual(metrics.normalize_answer("The  Beatles!"), "beatles")
    self.assertEqual(metrics.normalize_answer("an apple, a day"), "apple day")
    # Articles only as whole words; "the" inside a word stays.
    self.assertEqual(metrics.normalize_answer("Theresa anthem"), "theresa anthem")
    self.assertEqual(metrics.normalize_answer("U.S.A."), "usa")
    self.assertEqual(metrics.normalize_answer("Rock 'n' Roll"), "rock n roll")
    self.assertEqual(metrics.normalize_answer("  \t\n"), "")
    # Punctuation is removed before articles: "the-end" -> "theend" keeps no article.
    self.assertEqual(metrics.normalize_answer("the-end"), "theend")

  def test_unicode(self):
    # NFD: composed and decomposed accents normalise to the same string.
    self.assertEqual(metrics.normalize_answer("Padm\u00e9"),
                     metrics.normalize_answer("Padme\u0301"))
    self.assertEqual(metrics.normalize_answer("Padm\u00e9"), "padme\u0301")
    # Unicode white space collapses like ASCII space; non-ASCII punctuation is not stripped.
    self.assertEqual(metrics.normalize_answer("54\u00a0Mbit/s"), "54 mbits")
    self.assertEqual(metrics.normalize_answer("\u201cQuoted\u201d"), "\u201cquoted\u201d")
    self.assertEqual(metrics.normalize_answer("\u00c9COLE"), "e\u0301cole")
    self.assertEqual(metrics.normalize_answer(b"The Caf\xc3\xa9"), "cafe\u0301")

  def test_exact_match_is_max_over_answers(self):
    self.assertTrue(metrics.exact_match("the Beatles", ["Rolling Stones", "Beatles"]))
    self.assertFalse(metrics.exact_match("Beatles band", ["Beatles"]))
    self.assertFalse(metrics.exact_match("anything", []))
    self.assertTrue(metrics.exact_match(b"December 1972", np.array([b"14 December 1972 UTC",
                                                                     b"December 1972"])))
    self.assertTrue(metrics.exact_match("Padme\u0301 Amidala", "Padm\u00e9 Amidala"))


class RegexMatchTest(tf.test.TestCase):

  def test_match_is_anchored_at_start_and_case_insensitive(self):
    patterns = ["Sept?(ember)?|Feb(ruary)?"]
    self.assertTrue(metrics.regex_match("september", patterns))
    self.assertTrue(metrics.regex_match("FEB 2020", patterns))
    self.assertFalse(metrics.regex_match("in September", patterns))  # re.match, not search
    self.assertTrue(metrics.regex_match("New York", ["Long Island|New\\s?York"]))
    self.assertFalse(metrics.regex_match("Boston", ["Long Island|New\\s?York"]))
    self.assertFalse(metrics.regex_match("x", []))

  def test_raw_prediction_is_not_normalised(self):
    # "the" is not dropped and punctuation is kept for regex answers.
    self.assertFalse(metrics.regex_match("the Beatles", ["Beatles"]))
    self.assertTrue(metrics.regex_match("6,194-meter peak", ["6,194-meter"]))

  def test_broken_pattern_never_matches_and_warns_once(self):
    metrics.compile_answer_pattern.cache_clear()
    metrics._warned_patterns.discard(_BROKEN)  # pylint: disable=protected-access
    with self.assertLogs("absl", level="WARNING") as logs:
      self.assertFalse(metrics.regex_match("radiation", [_BROKEN]))
      self.assertFalse(metrics.regex_match("xenon", [_BROKEN]))
      self.assertFalse(metrics.has_answer("radiation leak", [_BROKEN], is_regex=True))
    self.assertLen(logs.output, 1)
    self.assertIn("Sievert", logs.output[0])
    # Other patterns of the same question still count.
    self.assertTrue(metrics.regex_match("radiation", [_BROKEN, "radiation"]))

  def test_is_correct_dispatches(self):
    self.assertTrue(metrics.is_correct("The Fall", ["fall"], is_regex=False))
    self.assertFalse(metrics.is_correct("The Fall", ["fall"], is_regex=True))
    self.assertTrue(metrics.is_correct("After the Fall", ["After the Fall|Finishing"], True))


class HasAnswerTest(tf.test.TestCase):

  def test_token_match(self):
    block = "The Beatles were an English rock band formed in Liverpool in 1960."
    self.assertTrue(metrics.has_answer(block, ["liverpool"], is_regex=False))
    self.assertTrue(metrics.has_answer(block, ["English rock band"], is_regex=False))
    # Tokens, not substrings: "Liver" is not a token of the block.
    self.assertFalse(metrics.has_answer(block, ["Liver"], is_regex=False))
    self.assertFalse(metrics.has_answer(block, ["rock English"], is_regex=False))
    self.assertTrue(metrics.has_answer(block, ["1960"], is_regex=False))
    self.assertFalse(metrics.has_answer(block, ["196"], is_regex=False))

  def test_punctuation_and_unicode(self):
    block = "Padme\u0301 Amidala (played by Natalie Portman) \u2014 rate: 54\u00a0Mbit/s."
    self.assertTrue(metrics.has_answer(block, ["Padm\u00e9 Amidala"], is_regex=False))
    self.assertTrue(metrics.has_answer(block, ["54 Mbit/s"], is_regex=False))
    self.assertTrue(metrics.has_answer(block, ["(played by"], is_regex=False))
    self.assertFalse(metrics.has_answer(block, ["", "  "], is_regex=False))
    self.assertFalse(metrics.has_answer(block, [], is_regex=False))

  def test_regex_searches_anywhere(self):
    block = "Mount McKinley rises 20,310 feet (6,190 m) above sea level."
    self.assertTrue(metrics.has_answer(block, ["20,?3[12]0\\s*f(ee|oo)t"], is_regex=True))
    self.assertTrue(metrics.has_answer(block, ["MCKINLEY"], is_regex=True))
    self.assertFalse(metrics.has_answer(block, ["Denali"], is_regex=True))


class BatchScoringTest(tf.test.TestCase):

  def test_score_batch_mixed_flags(self):
    correct = metrics.score_batch(
        [b"the Beatles", "in September", "September", "x"],
        [[b"Beatles"], ["Sept?(ember)?"], ["Sept?(ember)?"], []],
        answers_are_regex=[False, True, True, False])
    self.assertAllEqual(correct, [True, False, True, False])
    with self.assertRaisesRegex(ValueError, "2 predictions but 1"):
      metrics.score_batch(["a", "b"], [["a"]], False)

  def test_recall_at_k(self):
    blocks = [["no answer here", "Liverpool is a city"],
              ["Liverpool first"],
              ["nothing", "still nothing"]]
    hits = metrics.retrieval_hits(blocks, [["Liverpool"]] * 3, False)
    self.assertAllEqual(hits, [[False, True], [True, False], [False, False]])
    recall = metrics.recall_at_k(hits, ks=(1, 2, 5))
    self.assertAllClose([recall[1], recall[2], recall[5]], [1 / 3, 2 / 3, 2 / 3])

  def test_scorer_accumulates(self):
    scorer = metrics.OpenQAScorer(recall_ks=(1, 2))
    scorer.update(["Beatles", "wrong"], [["The Beatles"], ["right"]], False,
                  retrieved_blocks=[["The Beatles formed"], ["nothing", "right here"]])
    correct = scorer.update(["Sept"], [["Sept?(ember)?"]], [True],
                            retrieved_blocks=[["in Sept."]])
    self.assertAllEqual(correct, [True])
    result = scorer.result()
    self.assertEqual(result["num_examples"], 3)
    self.assertEqual(result["num_correct"], 2)
    self.assertAllClose(result["exact_match"], 2 / 3)
    self.assertAllClose(result["recall@1"], 2 / 3)
    self.assertAllClose(result["recall@2"], 1.0)
    self.assertEqual(metrics.OpenQAScorer().result()["exact_match"], 0.0)


if __name__ == "__main__":
  tf.test.main()
