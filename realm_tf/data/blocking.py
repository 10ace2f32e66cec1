"""Sentence-aware splitting of documents into REALM blocks of at most 288 wordpieces.

A block is packed as `[CLS] title [SEP] body [SEP]`, so a document with a title of `t` wordpieces
gets bodies of at most `288 - 3 - t` wordpieces. Whole sentences are packed into as few blocks as
fit, made as even in length as the sentences allow, so that a document's tail never becomes a
block of a few words; a sentence longer than a block is cut between words into near-equal parts
(never inside a word unless one word alone is longer than a block). A block body is the original
text between its first and last wordpiece, so re-tokenizing the body gives back its `body_ids`.

The sentence splitter here is rule based (punctuation + capital letter, with an abbreviation list);
it is shared by block building, annotation (its default splitter, see annotate.py for why) and
anything else that needs sentences of plain text without spaCy.
"""
import dataclasses
import re
import weakref
from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from realm_tf.text import packing

_TRACED = weakref.WeakKeyDictionary()


def traced_tokenize_with_offsets(tokenizer):
  """`tokenizer.tokenize_with_offsets` as one tf.function per tokenizer, for strings [B].

  Tracing the TF.Text tokenizer costs seconds and an eager call ~0.1 s; this traced function is
  shared by block building, masking and ICT, so a process traces it once and tf.data maps that
  call it reuse the trace.
  """
  fn = _TRACED.get(tokenizer)
  if fn is None:
    fn = tf.function(tokenizer.tokenize_with_offsets, autograph=False,
                     input_signature=[tf.TensorSpec([None], tf.string)])
    _TRACED[tokenizer] = fn
  return fn


MAX_BLOCK_LENGTH = packing.BLOCK_LENGTH
MAX_TITLE_LENGTH = 32

# Words that end with a period but rarely end a sentence.
_ABBREVIATIONS = frozenset("""
mr mrs ms dr prof st jr sr vs etc e.g i.e cf al gen col lt sgt capt rev hon fig figs no nos vol
vols pp ed eds inc ltd co corp dept est approx ca jan feb mar apr jun jul aug sep sept oct nov dec
mt ft ave blvd univ assn bros
""".split())

# A sentence ends at . ! ? (plus closing quotes/brackets) followed by white space and a sentence
# start (capital letter, digit or opening quote/bracket); at CJK full stops; and at line breaks.
_BOUNDARY = re.compile(
    r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s+[\"'\u201c\u2018(\[]?[A-Z0-9\u00c0-\u024f\u3040-\u30ff\u4e00-\u9fff])"
    r"|[\u3002\uff01\uff1f]+[\u300d\u300f\uff09]*"
    r"|(?=\n)")
_INITIALS = re.compile(r"(?:[A-Za-z]\.)*[A-Za-z]")


def split_sentences(text: str) -> List[Tuple[int, int]]:
  """Rule-based sentence splitter: `[(start, limit)]` character offsets, white space trimmed.

  Boundaries: `.`/`!`/`?` (with trailing quotes or brackets) followed by white space and a capital
  letter, digit or opening quote; CJK full stops; newlines. A period after a known abbreviation
  (`Dr.`, `etc.`) or an initial (`J.`, `U.S.`) does not end a sentence.
  """
  spans = []
  start = 0
  for m in _BOUNDARY.finditer(text):
    end = m.end()
    if m.group(0) and m.group(0)[0] == ".":
      before = text[max(0, m.start() - 24):m.start()]
      word = before.rsplit(None, 1)[-1] if before.strip() else ""
      word = word.lstrip("\"'([\u201c\u2018")
      if word.lower() in _ABBREVIATIONS or (word and _INITIALS.fullmatch(word)
                                             and len(word.replace(".", "")) <= 3):
        continue
    if end > start:
      spans.append((start, end))
    start = end
  spans.append((start, len(text)))
  return trim_spans(text, spans)


def trim_spans(text: str, spans: Sequence[Tuple[int, int]]) -> List[Tuple[int, int]]:
  """Character spans with the white space at their ends cut off; spans left empty are dropped
  (a sentence splitter's spans, rule based or spaCy's, are trimmed the same way)."""
  out = []
  for s, e in spans:
    while s < e and text[s].isspace():
      s += 1
    while e > s and text[e - 1].isspace():
      e -= 1
    if e > s:
      out.append((s, e))
  return out


def char_to_byte_offsets(text: str) -> np.ndarray:
  """`offsets[i]` = UTF-8 byte position of character `i` (length len(text) + 1)."""
  if text.isascii():
    return np.arange(len(text) + 1, dtype=np.int64)
  sizes = np.fromiter((len(ch.encode("utf-8", "surrogatepass")) for ch in text), np.int64,
                      count=len(text))
  return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


@dataclasses.dataclass
class Block:
  """One block of a document: body text and ids, plus the body's byte range in the document."""
  block_index: int
  title: str
  body: str
  title_ids: List[int]
  body_ids: List[int]
  byte_start: int
  byte_limit: int


class Blocker:
  """Splits (title, text) documents into blocks with a RealmTokenizer.

  Args:
    tokenizer: a `realm_tf.text.RealmTokenizer` (built with the default vocabulary if None).
    max_block_length: wordpieces of `[CLS] title [SEP] body [SEP]`, specials included (288).
    max_title_length: title wordpieces kept (longer titles are cut, text and ids alike).
  """

  def __init__(self, tokenizer=None, max_block_length: int = MAX_BLOCK_LENGTH,
               max_title_length: int = MAX_TITLE_LENGTH):
    if tokenizer is None:
      from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
      tokenizer = RealmTokenizer()
    if max_block_length < max_title_length + 4:
      raise ValueError(f"max_block_length={max_block_length} leaves no room for a body after a "
                       f"title of up to {max_title_length} wordpieces.")
    self.tokenizer = tokenizer
    self.max_block_length = max_block_length
    self.max_title_length = max_title_length
    self._continuation = np.array([t.startswith("##") for t in tokenizer.vocab], dtype=bool)
    # Eager FastBertTokenizer calls cost ~0.1 s each; a traced function costs milliseconds.
    self._tokenize = traced_tokenize_with_offsets(tokenizer)

  def tokenize_batch(self, texts: Sequence[str]):
    """[(ids, byte starts, byte limits)] numpy arrays per text, one tokenizer call for all."""
    if not texts:
      return []
    ids, starts, limits = self._tokenize(tf.constant(list(texts), tf.string))
    rows = ids.row_splits.numpy()
    ids, starts, limits = ids.flat_values.numpy(), starts.flat_values.numpy(), \
        limits.flat_values.numpy()
    return [(ids[a:b], starts[a:b], limits[a:b]) for a, b in zip(rows[:-1], rows[1:])]

  def tokenize(self, text: str):
    """(ids, byte starts, byte limits) of `text` as numpy arrays."""
    return self.tokenize_batch([text])[0]

  def title(self, title: str, tokens=None) -> Tuple[str, List[int]]:
    """The (possibly shortened) title text and its wordpiece ids."""
    ids, _, limits = tokens if tokens is not None else self.tokenize(title)
    if len(ids) <= self.max_title_length:
      return title, ids.tolist()
    # Stop at the last whole word that fits, so the title text re-tokenizes to its ids.
    cut = self.max_title_length
    while cut > 1 and self._continuation[ids[cut]]:
      cut -= 1
    text = title.encode("utf-8")[: int(limits[cut - 1])].decode("utf-8")
    return text, ids[:cut].tolist()

  def _units(self, text: str, ids, starts, budget) -> List[Tuple[int, int]]:
    """Piece ranges [a, b): whole sentences; a sentence longer than `budget` is cut between words
    into near-equal parts, so no part is a stray tail of a few words."""
    offsets = char_to_byte_offsets(text)
    sent_starts = [int(offsets[s]) for s, _ in split_sentences(text)]
    # Sentence of each piece: the last sentence starting at or before the piece.
    sent_of = np.maximum(np.searchsorted(sent_starts, starts, side="right") - 1, 0)
    cuts = np.flatnonzero(np.diff(sent_of)) + 1
    bounds = [0] + cuts.tolist() + [len(ids)]
    units = []
    for a, b in zip(bounds[:-1], bounds[1:]):
      while b - a > budget:
        parts = -(-(b - a) // budget)
        cut = self._word_start(ids, a, a + -(-(b - a) // parts), a + budget)
        units.append((a, cut))
        a = cut
      units.append((a, b))
    return units

  def _word_start(self, ids, a: int, target: int, limit: int) -> int:
    """A cut in (a, limit] at a word start: the last one at or before `target`, else the first
    after it; `limit` itself when one word runs from `a` past `limit`."""
    cut = target
    while cut > a and self._continuation[ids[cut]]:
      cut -= 1  # back up to the start of the word that would be split
    if cut > a:
      return cut
    cut = target + 1
    while cut < limit and self._continuation[ids[cut]]:
      cut += 1
    return min(cut, limit)

  def split(self, title: str, text: str) -> List[Block]:
    """Blocks of one document (empty when the text has no wordpieces)."""
    return self.split_batch([(title, text)])[0]

  def split_batch(self, documents: Sequence[Tuple[str, str]]) -> List[List[Block]]:
    """Blocks of each (title, text) document; tokenizes the whole batch in one call."""
    tokens = self.tokenize_batch([t for t, _ in documents] + [x for _, x in documents])
    n = len(documents)
    return [self._split(title, text, tokens[i], tokens[n + i])
            for i, (title, text) in enumerate(documents)]

  def _split(self, title, text, title_tokens, text_tokens) -> List[Block]:
    title, title_ids = self.title(title, title_tokens)
    budget = self.max_block_length - 3 - len(title_ids)
    ids, starts, limits = text_tokens
    if len(ids) == 0:
      return []
    data = text.encode("utf-8")
    groups = _balanced_groups(self._units(text, ids, starts, budget), budget)
    blocks = []
    for i, group in enumerate(groups):
      a, b = group[0][0], group[-1][1]
      s, e = int(starts[a]), int(limits[b - 1])
      blocks.append(Block(block_index=i, title=title, body=data[s:e].decode("utf-8"),
                          title_ids=title_ids, body_ids=ids[a:b].tolist(),
                          byte_start=s, byte_limit=e))
    return blocks


def _greedy_groups(units: Sequence[Tuple[int, int]], cap: int) -> List[List[Tuple[int, int]]]:
  """Consecutive units packed greedily into groups of at most `cap` pieces (fewest groups)."""
  groups: List[List[Tuple[int, int]]] = []
  size = 0
  for a, b in units:
    if groups and size + (b - a) <= cap:
      groups[-1].append((a, b))
      size += b - a
    else:
      groups.append([(a, b)])
      size = b - a
  return groups


def _balanced_groups(units: Sequence[Tuple[int, int]], budget: int
                     ) -> List[List[Tuple[int, int]]]:
  """As few groups of at most `budget` pieces as greedy packing needs, made as even as the units
  allow: the smallest cap that still needs no more groups.

  Greedy packing at the full budget leaves the document's tail (often a few words, or a lone
  ".") as a block of its own. Such near-empty blocks are what a REALM retriever collapses onto
  (docs/LEARNING.md, "Hub blocks"): reading one harms the reader least, so every query learns
  to retrieve it. The original's blocks are full Wikipedia chunks with no such tails.
  """
  groups = _greedy_groups(units, budget)
  if len(groups) < 2:
    return groups
  sizes = [b - a for a, b in units]
  lo = max(max(sizes), -(-sum(sizes) // len(groups)))
  hi = budget
  while lo < hi:  # the fewest groups is non-increasing in the cap
    mid = (lo + hi) // 2
    if len(_greedy_groups(units, mid)) <= len(groups):
      hi = mid
    else:
      lo = mid + 1
  return _greedy_groups(units, lo)


def packed_length(block: Block) -> int:
  """Length of `[CLS] title [SEP] body [SEP]` for a block."""
  return len(block.title_ids) + len(block.body_ids) + 3


def sentence_byte_spans(text: str, spans: Optional[Sequence[Tuple[int, int]]] = None):
  """Sentence (start, limit) UTF-8 byte offsets of `text` (rule splitter unless `spans` given)."""
  offsets = char_to_byte_offsets(text)
  spans = split_sentences(text) if spans is None else spans
  return [(int(offsets[s]), int(offsets[e])) for s, e in spans]
