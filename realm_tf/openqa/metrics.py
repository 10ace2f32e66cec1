"""Open-domain QA metrics: official exact match, CuratedTREC regex match, retrieval recall@k.

* Exact match (EM) is the official ORQA/REALM metric: both strings are NFD-normalised,
  lower-cased, stripped of ASCII punctuation and of the articles a/an/the, and their white space
  collapsed; a prediction is correct when it equals any gold answer (max over answers).
* CuratedTREC's answers are regular expressions: a prediction is correct when a pattern matches
  at its start, `re.match(pattern, prediction, IGNORECASE | UNICODE | MULTILINE)`, on the raw
  (not normalised) prediction, as in ORQA's evaluation. A pattern that does not compile (one real
  CuratedTREC train pattern ends in a lone backslash) never matches; a warning names it once.
* `has_answer` decides whether a retrieved block contains an answer, for recall@k and for the
  retriever's training signal: like DPR, text and answers are NFD-normalised, lower-cased and
  split into tokens (runs of letters/digits/marks, or single other visible characters), and an
  answer is present when its tokens occur contiguously in the block's tokens; a regex answer is
  present when it, NFD-normalised too, matches anywhere in the NFD-normalised block
  (`re.search`).

All functions accept `str` or UTF-8 `bytes` (as they come out of tf.data), and numpy arrays of
them for answer lists.
"""
import functools
import re
import string
import unicodedata
from typing import Dict, Iterable, List, Optional, Sequence, Union

from absl import logging
import numpy as np

TextLike = Union[str, bytes]

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_REGEX_FLAGS = re.IGNORECASE | re.UNICODE | re.MULTILINE


def _to_str(text: TextLike) -> str:
  if isinstance(text, (bytes, np.bytes_)):
    return bytes(text).decode("utf-8", errors="replace")
  if isinstance(text, (str, np.str_)):
    return str(text)
  raise TypeError(f"Expected str or bytes, got {type(text).__name__}: {text!r:.80}")


def _to_str_list(answers) -> List[str]:
  if isinstance(answers, (str, bytes, np.str_, np.bytes_)):
    return [_to_str(answers)]
  return [_to_str(a) for a in answers]


def normalize_answer(text: TextLike) -> str:
  """The official EM normalisation (ORQA's `normalize_answer`, SQuAD's plus NFD).

  NFD unicode normalisation, lower-case, remove ASCII punctuation, remove the articles
  a/an/the as whole words, collapse white space.
  """
  text = unicodedata.normalize("NFD", _to_str(text)).lower()
  text = "".join(ch for ch in text if ch not in _PUNCTUATION)
  text = _ARTICLES.sub(" ", text)
  return " ".join(text.split())


def exact_match(prediction: TextLike, answers: Iterable[TextLike]) -> bool:
  """True when the normalised prediction equals any normalised gold answer (False if none)."""
  normalized = normalize_answer(prediction)
  return any(normalized == normalize_answer(a) for a in _to_str_list(answers))


_warned_patterns = set()


@functools.lru_cache(maxsize=65536)
def compile_answer_pattern(pattern: str) -> Optional["re.Pattern"]:
  """Compiles a CuratedTREC answer pattern (IGNORECASE | UNICODE | MULTILINE), cached.

  Returns None for a pattern that does not compile, after logging a warning that names it (once
  per pattern per process), so a long evaluation never stops on one bad gold answer.
  """
  try:
    return re.compile(pattern, _REGEX_FLAGS)
  except re.error as e:
    if pattern not in _warned_patterns:
      _warned_patterns.add(pattern)
      logging.warning("Answer pattern %r does not compile (%s); it is treated as never matching.",
                      pattern, e)
    return None


def regex_match(prediction: TextLike, patterns: Iterable[TextLike]) -> bool:
  """CuratedTREC correctness: some pattern matches at the start of the raw prediction."""
  prediction = _to_str(prediction)
  for pattern in _to_str_list(patterns):
    compiled = compile_answer_pattern(pattern)
    if compiled is not None and compiled.match(prediction) is not None:
      return True
  return False


def is_correct(prediction: TextLike, answers: Iterable[TextLike], is_regex: bool) -> bool:
  """EM for plain answers, regex match for regex answers (CuratedTREC)."""
  if is_regex:
    return regex_match(prediction, answers)
  return exact_match(prediction, answers)


def _tokenize(text: str) -> List[str]:
  """DPR's SimpleTokenizer, uncased: runs of letters/digits/marks, or one other visible char.

  The text must already be NFD-normalised.
  """
  tokens = []
  start = None
  for i, ch in enumerate(text):
    category = unicodedata.category(ch)[0]
    if category in "LNM":
      if start is None:
        start = i
      continue
    if start is not None:
      tokens.append(text[start:i])
      start = None
    if category not in "ZC" and not ch.isspace():
      tokens.append(ch)
  if start is not None:
    tokens.append(text[start:])
  return [t.lower() for t in tokens]


def _contains_tokens(haystack: Sequence[str], needle: Sequence[str]) -> bool:
  n = len(needle)
  if n == 0:
    return False
  first = needle[0]
  for i in range(len(haystack) - n + 1):
    if haystack[i] == first and list(haystack[i:i + n]) == list(needle):
      return True
  return False


def has_answer(text: TextLike, answers: Iterable[TextLike], is_regex: bool) -> bool:
  """True when a block of text contains a gold answer (DPR's rule; see the module docstring).

  Used for retrieval recall@k and to mark answer-bearing blocks. Answers that are empty after
  tokenisation never match; a regex that does not compile never matches (warned once).
  """
  text = unicodedata.normalize("NFD", _to_str(text))
  answers = _to_str_list(answers)
  if is_regex:
    for pattern in answers:  # NFD-normalised like the text, as DPR's regex mode does
      compiled = compile_answer_pattern(unicodedata.normalize("NFD", pattern))
      if compiled is not None and compiled.search(text) is not None:
        return True
    return False
  # Case-folded (context-free, unlike lower()'s final sigma) for the cheap rejection below.
  folded = text.casefold()
  text_tokens = None
  for answer in answers:
    answer_tokens = _tokenize(unicodedata.normalize("NFD", answer))
    if not answer_tokens or any(t.casefold() not in folded for t in answer_tokens):
      continue  # Cheap rejection: some answer token is not even a substring of the text.
    if text_tokens is None:
      text_tokens = _tokenize(text)
    if _contains_tokens(text_tokens, answer_tokens):
      return True
  return False


def score_batch(predictions: Sequence[TextLike], answers: Sequence[Iterable[TextLike]],
                answers_are_regex: Union[bool, Sequence[bool]]) -> np.ndarray:
  """Correctness of a batch of predictions: bool [B] (EM, or regex match where is_regex).

  `answers_are_regex` is one flag for the whole batch or one per example (as tf.data gives it).
  """
  if len(predictions) != len(answers):
    raise ValueError(f"{len(predictions)} predictions but {len(answers)} answer lists.")
  flags = np.broadcast_to(np.asarray(answers_are_regex, dtype=bool), [len(predictions)])
  return np.array([is_correct(p, a, bool(r)) for p, a, r in zip(predictions, answers, flags)],
                  dtype=bool)


def retrieval_hits(blocks: Sequence[Sequence[TextLike]], answers: Sequence[Iterable[TextLike]],
                   answers_are_regex: Union[bool, Sequence[bool]]) -> np.ndarray:
  """has_answer for each retrieved block: bool [B, K] from B questions' ranked blocks [B][K].

  Rows may have different lengths; missing blocks count as not containing the answer.
  """
  if len(blocks) != len(answers):
    raise ValueError(f"{len(blocks)} block lists but {len(answers)} answer lists.")
  flags = np.broadcast_to(np.asarray(answers_are_regex, dtype=bool), [len(blocks)])
  width = max((len(b) for b in blocks), default=0)
  hits = np.zeros([len(blocks), width], dtype=bool)
  for i, (row, gold, regex) in enumerate(zip(blocks, answers, flags)):
    gold = _to_str_list(gold)
    for j, block in enumerate(row):
      hits[i, j] = has_answer(block, gold, bool(regex))
  return hits


def recall_at_k(hits: np.ndarray, ks: Iterable[int]) -> Dict[int, float]:
  """Fraction of questions with an answer-bearing block among the top k, for each k.

  `hits` is `retrieval_hits`' bool [B, K]; k larger than K uses all K blocks.
  """
  hits = np.asarray(hits, dtype=bool)
  if hits.ndim != 2:
    raise ValueError(f"hits must be [B, K], got shape {hits.shape}.")
  if hits.shape[0] == 0:
    return {int(k): 0.0 for k in ks}
  return {int(k): float(hits[:, :int(k)].any(axis=1).mean()) for k in ks}


class OpenQAScorer:
  """Accumulates EM and recall@k over batches; `result()` gives the totals.

  Example:
    scorer = OpenQAScorer(recall_ks=(1, 5))
    scorer.update(predictions, answers, answers_are_regex, retrieved_blocks)
    scorer.result()  # {"exact_match": ..., "num_examples": ..., "recall@1": ..., "recall@5": ...}
  """

  def __init__(self, recall_ks: Sequence[int] = (1, 5, 10, 20)):
    self.recall_ks = tuple(int(k) for k in recall_ks)
    self.num_examples = 0
    self.num_correct = 0
    self.num_with_blocks = 0
    self._recall_hits = {k: 0 for k in self.recall_ks}

  def update(self, predictions: Sequence[TextLike], answers: Sequence[Iterable[TextLike]],
             answers_are_regex: Union[bool, Sequence[bool]],
             retrieved_blocks: Optional[Sequence[Sequence[TextLike]]] = None) -> np.ndarray:
    """Adds a batch; returns its per-example correctness, bool [B]."""
    correct = score_batch(predictions, answers, answers_are_regex)
    self.num_examples += len(correct)
    self.num_correct += int(correct.sum())
    if retrieved_blocks is not None:
      hits = retrieval_hits(retrieved_blocks, answers, answers_are_regex)
      self.num_with_blocks += hits.shape[0]
      for k in self.recall_ks:
        self._recall_hits[k] += int(hits[:, :k].any(axis=1).sum())
    return correct

  def result(self) -> Dict[str, float]:
    """{"exact_match", "num_examples", "num_correct"} plus "recall@k" when blocks were given."""
    out = {
        "exact_match": self.num_correct / self.num_examples if self.num_examples else 0.0,
        "num_examples": self.num_examples,
        "num_correct": self.num_correct,
    }
    if self.num_with_blocks:
      for k in self.recall_ks:
        out[f"recall@{k}"] = self._recall_hits[k] / self.num_with_blocks
    return out
