"""Tests of the open-QA metrics: EM normalisation, regex match, has_answer, batch scoring."""
import logging as py_logging

import numpy as np
import pytest

from realm_tf.openqa import metrics

# The real CuratedTREC train pattern (line 701) that ends in a lone backslash.
_BROKEN = ("RAO|contamination|iodine|nuclear.+polluted|radiation|radioactive|radioactivi?ty|"
           "tritium|wastes?|xenon|the French physicist Marie Curie|Sievert \\(Sv\\)\\")


# Normalisation and exact match.

def test_articles_punctuation_case_and_space():
  assert metrics.normalize_answer("The  Beatles!") == "beatles"
  assert metrics.normalize_answer("an apple, a day") == "apple day"
  # Articles only as whole words; "the" inside a word stays.
  assert metrics.normalize_answer("Theresa anthem") == "theresa anthem"
  assert metrics.normalize_answer("U.S.A.") == "usa"
  assert metrics.normalize_answer("Rock 'n' Roll") == "rock n roll"
  assert metrics.normalize_answer("  \t\n") == ""
  # Punctuation is removed before articles: "the-end" -> "theend" keeps no article.
  assert metrics.normalize_answer("the-end") == "theend"


def test_unicode():
  # NFD: composed and decomposed accents normalise to the same string.
  assert metrics.normalize_answer("Padm\u00e9") == metrics.normalize_answer("Padme\u0301")
  assert metrics.normalize_answer("Padm\u00e9") == "padme\u0301"
  # Unicode white space collapses like ASCII space; non-ASCII punctuation is not stripped.
  assert metrics.normalize_answer("54\u00a0Mbit/s") == "54 mbits"
  assert metrics.normalize_answer("\u201cQuoted\u201d") == "\u201cquoted\u201d"
  assert metrics.normalize_answer("\u00c9COLE") == "e\u0301cole"
  assert metrics.normalize_answer(b"The Caf\xc3\xa9") == "cafe\u0301"


def test_exact_match_is_max_over_answers():
  assert metrics.exact_match("the Beatles", ["Rolling Stones", "Beatles"])
  assert not metrics.exact_match("Beatles band", ["Beatles"])
  assert not metrics.exact_match("anything", [])
  assert metrics.exact_match(b"December 1972", np.array([b"14 December 1972 UTC",
                                                         b"December 1972"]))
  assert metrics.exact_match("Padme\u0301 Amidala", "Padm\u00e9 Amidala")


# Regex match.

def test_match_is_anchored_at_start_and_case_insensitive():
  patterns = ["Sept?(ember)?|Feb(ruary)?"]
  assert metrics.regex_match("september", patterns)
  assert metrics.regex_match("FEB 2020", patterns)
  assert not metrics.regex_match("in September", patterns)  # re.match, not search
  assert metrics.regex_match("New York", ["Long Island|New\\s?York"])
  assert not metrics.regex_match("Boston", ["Long Island|New\\s?York"])
  assert not metrics.regex_match("x", [])


def test_raw_prediction_is_not_normalised():
  # "the" is not dropped and punctuation is kept for regex answers.
  assert not metrics.regex_match("the Beatles", ["Beatles"])
  assert metrics.regex_match("6,194-meter peak", ["6,194-meter"])


def test_broken_pattern_never_matches_and_warns_once(caplog):
  metrics.compile_answer_pattern.cache_clear()
  metrics._warned_patterns.discard(_BROKEN)  # pylint: disable=protected-access
  caplog.clear()
  with caplog.at_level(py_logging.WARNING, logger="absl"):
    assert not metrics.regex_match("radiation", [_BROKEN])
    assert not metrics.regex_match("xenon", [_BROKEN])
    assert not metrics.has_answer("radiation leak", [_BROKEN], is_regex=True)
  warnings = [r.getMessage() for r in caplog.records
              if r.name.startswith("absl") and r.levelno >= py_logging.WARNING]
  assert len(warnings) == 1, warnings
  assert "Sievert" in warnings[0]
  # Other patterns of the same question still count.
  assert metrics.regex_match("radiation", [_BROKEN, "radiation"])


def test_is_correct_dispatches():
  assert metrics.is_correct("The Fall", ["fall"], is_regex=False)
  assert not metrics.is_correct("The Fall", ["fall"], is_regex=True)
  assert metrics.is_correct("After the Fall", ["After the Fall|Finishing"], True)


# has_answer.

def test_token_match():
  block = "The Beatles were an English rock band formed in Liverpool in 1960."
  assert metrics.has_answer(block, ["liverpool"], is_regex=False)
  assert metrics.has_answer(block, ["English rock band"], is_regex=False)
  # Tokens, not substrings: "Liver" is not a token of the block.
  assert not metrics.has_answer(block, ["Liver"], is_regex=False)
  assert not metrics.has_answer(block, ["rock English"], is_regex=False)
  assert metrics.has_answer(block, ["1960"], is_regex=False)
  assert not metrics.has_answer(block, ["196"], is_regex=False)


def test_punctuation_and_unicode():
  block = "Padme\u0301 Amidala (played by Natalie Portman) \u2014 rate: 54\u00a0Mbit/s."
  assert metrics.has_answer(block, ["Padm\u00e9 Amidala"], is_regex=False)
  assert metrics.has_answer(block, ["54 Mbit/s"], is_regex=False)
  assert metrics.has_answer(block, ["(played by"], is_regex=False)
  assert not metrics.has_answer(block, ["", "  "], is_regex=False)
  assert not metrics.has_answer(block, [], is_regex=False)


def test_regex_searches_anywhere():
  block = "Mount McKinley rises 20,310 feet (6,190 m) above sea level."
  assert metrics.has_answer(block, ["20,?3[12]0\\s*f(ee|oo)t"], is_regex=True)
  assert metrics.has_answer(block, ["MCKINLEY"], is_regex=True)
  assert not metrics.has_answer(block, ["Denali"], is_regex=True)


# Batch scoring.

def test_score_batch_mixed_flags():
  correct = metrics.score_batch(
      [b"the Beatles", "in September", "September", "x"],
      [[b"Beatles"], ["Sept?(ember)?"], ["Sept?(ember)?"], []],
      answers_are_regex=[False, True, True, False])
  np.testing.assert_array_equal(correct, [True, False, True, False])
  with pytest.raises(ValueError, match="2 predictions but 1"):
    metrics.score_batch(["a", "b"], [["a"]], False)


def test_recall_at_k():
  blocks = [["no answer here", "Liverpool is a city"],
            ["Liverpool first"],
            ["nothing", "still nothing"]]
  hits = metrics.retrieval_hits(blocks, [["Liverpool"]] * 3, False)
  np.testing.assert_array_equal(hits, [[False, True], [True, False], [False, False]])
  recall = metrics.recall_at_k(hits, ks=(1, 2, 5))
  np.testing.assert_allclose([recall[1], recall[2], recall[5]], [1 / 3, 2 / 3, 2 / 3],
                             rtol=1e-6, atol=1e-6)


def test_scorer_accumulates():
  scorer = metrics.OpenQAScorer(recall_ks=(1, 2))
  scorer.update(["Beatles", "wrong"], [["The Beatles"], ["right"]], False,
                retrieved_blocks=[["The Beatles formed"], ["nothing", "right here"]])
  correct = scorer.update(["Sept"], [["Sept?(ember)?"]], [True],
                          retrieved_blocks=[["in Sept."]])
  np.testing.assert_array_equal(correct, [True])
  result = scorer.result()
  assert result["num_examples"] == 3
  assert result["num_correct"] == 2
  np.testing.assert_allclose(result["exact_match"], 2 / 3, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(result["recall@1"], 2 / 3, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(result["recall@2"], 1.0, rtol=1e-6, atol=1e-6)
  assert metrics.OpenQAScorer().result()["exact_match"] == 0.0
