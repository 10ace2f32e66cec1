"""Top-k accuracy and has_answer against a reference written from DPR's description.

The reference below follows DPR's `qa_validation.has_answer` / `calculate_matches` as DPR
describes them: NFD-normalise, tokenise with SimpleTokenizer's two patterns (`[\\p{L}\\p{N}\\p{M}]+`
or one `[^\\p{Z}\\p{C}]`, here with the `regex` module's Unicode classes, an implementation
independent of the project's `unicodedata` one), lower-case each token, look for the answer's
tokens contiguously; regex answers NFD-normalised and searched with IGNORECASE | UNICODE |
MULTILINE; top-k hits counted from each question's first answer-bearing passage.
"""
import random
import unicodedata

import numpy as np
import pytest
import regex

from realm_tf.evaluation import run_files
from realm_tf.evaluation import topk_accuracy as A
from realm_tf.openqa import metrics

_DPR_TOKENS = regex.compile(r"([\p{L}\p{N}\p{M}]+)|([^\p{Z}\p{C}])",
                            flags=regex.IGNORECASE | regex.UNICODE | regex.MULTILINE)


def dpr_words(text):
  return [m.group().lower() for m in _DPR_TOKENS.finditer(text)]


def dpr_has_answer(answers, text, regex_answers=False):
  """DPR's has_answer (its one deviation, an empty answer matching everywhere, is not used)."""
  text = unicodedata.normalize("NFD", text)
  if regex_answers:
    for answer in answers:
      try:
        pattern = regex.compile(unicodedata.normalize("NFD", answer),
                                flags=regex.IGNORECASE | regex.UNICODE | regex.MULTILINE)
      except regex.error:
        continue
      if pattern.search(text) is not None:
        return True
    return False
  words = dpr_words(text)
  for answer in answers:
    tokens = dpr_words(unicodedata.normalize("NFD", answer))
    for i in range(0, len(words) - len(tokens) + 1):
      if tokens == words[i:i + len(tokens)]:
        return True
  return False


def dpr_top_k(hits_per_question, ks):
  """DPR's calculate_matches: top_k_hits[i] counts questions answered within the top i + 1."""
  n_docs = max(len(h) for h in hits_per_question)
  top_k_hits = [0] * n_docs
  for question_hits in hits_per_question:
    best_hit = next((i for i, x in enumerate(question_hits) if x), None)
    if best_hit is not None:
      top_k_hits[best_hit:] = [v + 1 for v in top_k_hits[best_hit:]]
  return {k: top_k_hits[min(k, n_docs) - 1] / len(hits_per_question) for k in ks}


CASES = [
    # (text, answers, regex answers?)
    ("Paris is the capital of France.", ["paris"], False),                  # case
    ("PARIS, France", ["Paris , France"], False),                           # punctuation tokens
    ("Parisian cafés", ["Paris"], False),                                   # not a whole token
    ("the U.S. president", ["U.S."], False),                                # u . s .
    ("the U.S. president", ["US"], False),
    ("Jay-Z released it", ["Jay Z"], False),                                # - is its own token
    ("It cost $1,000 in 1999.", ["1,000"], False),
    ("It cost $1,000 in 1999.", ["1000"], False),
    ("Bogotá is in Colombia", ["Bogota"], False),                           # accent ≠ no accent
    ("Bogota\u0301 is in Colombia", ["Bogot\u00e1"], False),                # NFD = NFC
    ("Zürich", ["ZÜRICH"], False),                                          # accented case
    ("Ελλάδα ΟΔΟΣ'Α", ["οδος"], False),                                     # final sigma
    ("東京都 is Tokyo", ["東京"], False),                                    # one CJK run
    ("Beyoncé\u200b Knowles", ["Beyoncé Knowles"], False),                  # zero-width (Cf)
    ("New\u00a0York", ["New York"], False),                                 # no-break space
    ("I ❤ NY", ["❤ ny"], False),                                            # a symbol token
    ("tab\tand\nnewline", ["and newline"], False),
    ("Mount Everest", ["Everest", "K2"], False),                            # any answer
    ("The answer is 42.", ["4"], False),
    ("Jupiter is big", [r"jupit(er|ar)"], True),                            # regex, any case
    ("big Jupiter", [r"^jupiter"], True),                                   # MULTILINE ^
    ("line one\nJupiter", [r"^jupiter"], True),
    ("Bogotá", [r"bogotá"], True),                                          # NFD'd pattern
    ("Bogotá", [r"Bogot[aá]$"], True),
    ("Bogotá", [r"Bogot.*$"], True),
    ("anything", [r"(unclosed"], True),                                     # never matches
]


@pytest.mark.parametrize("text, answers, is_regex", CASES)
def test_has_answer_is_dprs(text, answers, is_regex):
  assert metrics.has_answer(text, answers, is_regex) == dpr_has_answer(answers, text, is_regex)


def test_has_answer_cases_cover_both_outcomes():
  outcomes = [dpr_has_answer(a, t, r) for t, a, r in CASES]
  assert 8 <= sum(outcomes) <= len(CASES) - 8
  # The one deliberate difference: an answer with no tokens matches nothing (DPR: everything).
  assert not metrics.has_answer("some text", ["", " \u200b "], False)


def test_has_answer_random_texts():
  rng = random.Random(0)
  alphabet = list("abcAB É é\u0301ßΣσς.-,'$1 2\u00a0\u200b東")
  for _ in range(400):
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
    start = rng.randint(0, max(len(text) - 1, 0))
    answer = text[start:start + rng.randint(1, 6)]
    other = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))
    answers = [a for a in (answer, other) if dpr_words(unicodedata.normalize("NFD", a))]
    assert metrics.has_answer(text, answers, False) == dpr_has_answer(answers, text), \
        (text, answers)


def test_top_k_accuracy_is_dprs():
  rng = np.random.default_rng(1)
  hits = rng.random([50, 100]) < 0.03
  hits[3] = False                      # never answered
  hits[4, 0] = True                    # answered at rank 1
  acc = A.TopKAccuracy()
  for lo in range(0, 50, 8):           # batches, as evaluation feeds them
    first = acc.update(hits[lo:lo + 8])
    assert first.tolist() == [int(np.argmax(r)) if r.any() else -1 for r in hits[lo:lo + 8]]
  want = dpr_top_k(hits.tolist(), A.DPR_KS)
  assert acc.result() == {A.accuracy_key(k): pytest.approx(want[k], abs=1e-12)
                          for k in A.DPR_KS}
  assert 0 < want[1] < want[5] < want[20] < want[100] < 1
  assert A.TopKAccuracy().result((1, 5)) == {"top1_accuracy": 0.0, "top5_accuracy": 0.0}
  # Rows of different depth (a question with nothing retrieved is a miss at every k).
  ragged = A.TopKAccuracy()
  ragged.update(metrics.retrieval_hits([["x Paris y"], []], [["paris"], ["paris"]], False))
  assert ragged.result((1,)) == {"top1_accuracy": 0.5}
  assert ragged.update(np.zeros([2, 0], bool)).tolist() == [-1, -1]  # a batch of empty questions
  assert ragged.result((1,)) == {"top1_accuracy": 0.25}


def test_from_dpr_results_recomputes_from_the_texts(tmp_path):
  path = str(tmp_path / "results.json")
  texts = [[t for t, _, r in CASES if not r][i:i + 4] for i in range(0, 16, 4)]
  answers = [["paris"], ["Everest"], ["Bogota"], ["New York"]]
  with run_files.DprResultsWriter(path) as out:
    for q, (row, gold) in enumerate(zip(texts, answers)):
      # has_answer stored wrong on purpose: the figures come from the texts unless asked.
      out.add(f"q{q}", gold, [run_files.dpr_context(str(i), "", t, 1.0, True)
                              for i, t in enumerate(row)])
  want = dpr_top_k([[dpr_has_answer(a, t) for t in row] for row, a in zip(texts, answers)],
                   (1, 5))
  got = A.from_dpr_results(path, (1, 5))
  assert got == {"top1_accuracy": want[1], "top5_accuracy": want[5], "num_questions": 4}
  assert got["top5_accuracy"] < 1.0
  assert A.from_dpr_results(path, (1,), use_has_answer=True)["top1_accuracy"] == 1.0
