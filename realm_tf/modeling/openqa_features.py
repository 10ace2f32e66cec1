"""Open-QA features: questions → query features, retrieved blocks → reader inputs and span labels.

Host side (numpy, once per example): `QuestionFeaturizer` cleans and tokenizes questions and
answers into fixed-shape arrays — the retriever query `[CLS] q [SEP]` (query_seq_length), the
question wordpieces for the reader (at most `reader_query_length - 2`), and the answers' wordpieces
[A, L]. Bad input never raises: an empty question, an over-long question (truncated), answers
that are empty after cleaning or longer than L wordpieces (dropped) are logged with a warning that
names the example.

In-graph (stock TF ops only, dense, so they run under XLA/TPU and inside SavedModels):
`pack_reader_inputs` builds `[CLS] question [SEP] block [SEP]` (320) from question and block
wordpieces; `answer_start_matches` / `contains_answer` find answers in wordpiece sequences
(contiguous ids ending on a word boundary — the retriever's "answer-bearing block" signal);
`gold_span_labels` turns matches in reader inputs into [T, W] span labels; `span_text` maps a
predicted wordpiece span back to the original block text through byte offsets.
"""
import collections
import dataclasses
import unicodedata
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.config_base import ConfigBase
from realm_tf.text import RealmTokenizer, pack_query, packing

QUERY_KEYS = ("input_word_ids", "input_mask", "input_type_ids")


@dataclasses.dataclass(frozen=True)
class OpenQAExample:
  """One open-QA question. `answers` are regular expressions when `is_regex` (CuratedTREC).

  `doc_id` names the gold document (the corpus' `doc_id`, e.g. SQuAD's `<title>#<paragraph>`)
  when the dataset knows it; fine-tuning with `reader_positives="gold"` reads its blocks.
  `relevant_doc_ids` are the documents judged relevant (BEIR qrels with a score > 0; such
  questions may have no answers: retrieval-only evaluation), and `relevance` their grades (the
  qrels scores), in the same order.
  """
  qid: str
  question: str
  answers: Tuple[str, ...]
  is_regex: bool = False
  doc_id: Optional[str] = None
  relevant_doc_ids: Tuple[str, ...] = ()
  relevance: Tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class FeatureConfig(ConfigBase):
  """Lengths of the host-side question features."""
  query_seq_length: int = packing.QUERY_LENGTH       # retriever query `[CLS] q [SEP]` (the query tower's length)
  reader_query_length: int = 64    # `[CLS] q [SEP]` part of the reader input (ORQA: 64)
  max_answers: int = 8             # answers kept per question (A)
  max_answer_length: int = 10      # answer wordpieces (L); longer answers cannot be spans


# (example, what, text) of the changed texts warned about, oldest first: a text cleaned again
# (evaluation cleans a question to find the empty ones, then again to featurize it) is not
# warned about twice. Bounded, so a long run's memory does not grow with its questions.
_WARNED: "collections.OrderedDict[tuple, None]" = collections.OrderedDict()
_MAX_WARNED = 10_000
_MAX_PLACES = 5  # places named per character in a warning


def clean_text(text, what: str = "text", example: str = "") -> str:
  """UTF-8 bytes or str → str that round-trips through UTF-8, without control characters.

  Invalid UTF-8 and lone surrogates become U+FFFD, control/format characters (zero-width spaces,
  BOMs, ...) are dropped, white space is collapsed. When anything changed beyond white space,
  one warning (once per example, `what` and text) names the example and says what changed:
  each character by code point and name, and where (`U+200B ZERO WIDTH SPACE removed at the
  end`), so a change at the end of a long question is seen.
  """
  invalid = 0
  if isinstance(text, (bytes, np.bytes_)):
    raw = bytes(text)
    text = raw.decode("utf-8", errors="replace")
    invalid = text.count("\ufffd") - raw.count("\ufffd".encode("utf-8"))
  text = str(text)
  fixed = "".join("\ufffd" if unicodedata.category(ch) == "Cs" else ch for ch in text
                  if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf"))
  fixed = " ".join(fixed.split())
  if invalid or fixed != " ".join(text.split()):
    _warn_changed(text, fixed, what, example, invalid)
  return fixed


def _warn_changed(text: str, fixed: str, what: str, example: str, invalid: int) -> None:
  """Logs one line saying how `text` became `fixed`, unless it was logged before."""
  key = (example, what, text)
  if key in _WARNED:
    _WARNED.move_to_end(key)
    return
  _WARNED[key] = None
  if len(_WARNED) > _MAX_WARNED:
    _WARNED.popitem(last=False)
  changes = _describe_changes(text)
  if invalid:
    changes.append(f"{invalid} invalid UTF-8 byte sequence{'s' if invalid > 1 else ''} "
                   "replaced by U+FFFD")
  shown = fixed if len(fixed) <= 80 else fixed[:77] + "..."
  logging.warning("%s%s %r cleaned: %s.", f"Example {example!r}: " if example else "", what,
                  shown, "; ".join(changes))


def _describe_changes(text: str) -> List[str]:
  """What `clean_text` removes or replaces in `text`, by character: `U+200B ZERO WIDTH SPACE
  removed at the end`, `U+D800 (a lone surrogate) replaced by U+FFFD at character 4`."""
  def dropped(ch):
    return not ch.isspace() and unicodedata.category(ch) in ("Cc", "Cf")

  kept = [i for i, ch in enumerate(text) if not ch.isspace() and not dropped(ch)]
  first, last = (kept[0], kept[-1]) if kept else (len(text), -1)
  places: Dict[Tuple[str, str], List[str]] = {}
  for i, ch in enumerate(text):
    category = unicodedata.category(ch)
    if dropped(ch):
      action = "removed"
    elif category == "Cs":
      action = "replaced by U+FFFD"
    else:
      continue
    place = "the start" if i < first else "the end" if i > last else f"character {i + 1}"
    places.setdefault((ch, action), []).append(place)
  out = []
  for (ch, action), where in places.items():
    name = unicodedata.name(ch, "") or {"Cc": "(a control character)",
                                        "Cs": "(a lone surrogate)"}.get(
                                            unicodedata.category(ch), "(unnamed)")
    where = list(dict.fromkeys(where))
    shown = ", ".join(where[:_MAX_PLACES])
    more = f" and {len(where) - _MAX_PLACES} more places" if len(where) > _MAX_PLACES else ""
    out.append(f"U+{ord(ch):04X} {name} {action} at {shown}{more}")
  return out


class QuestionFeaturizer:
  """Turns OpenQAExamples into the numpy features the model takes (see module docstring).

  Output of `featurize(examples)` (B = len(examples)):
    query/input_word_ids, query/input_mask, query/input_type_ids  int32 [B, query_seq_length]
    question_ids int32 [B, reader_query_length - 2], question_length int32 [B]
    answer_ids int32 [B, A, L], answer_length int32 [B, A] (0 = no answer in that slot)
  """

  def __init__(self, config: FeatureConfig = FeatureConfig(),
               tokenizer: Optional[RealmTokenizer] = None):
    self.config = config
    self.tokenizer = tokenizer or RealmTokenizer()
    self._tokenize = tf.function(self.tokenizer.tokenize, autograph=False,
                                 input_signature=[tf.TensorSpec([None], tf.string)])

  def tokenize(self, texts: Sequence[str]) -> List[np.ndarray]:
    """Wordpiece ids of each text (numpy int32 arrays)."""
    if not texts:
      return []
    ragged = self._tokenize(tf.constant(list(texts), tf.string))
    flat, splits = ragged.flat_values.numpy(), ragged.row_splits.numpy()
    return [flat[a:b] for a, b in zip(splits[:-1], splits[1:])]

  def featurize(self, examples: Sequence[OpenQAExample]) -> Dict[str, np.ndarray]:
    cfg = self.config
    b = len(examples)
    questions = [clean_text(e.question, "question", e.qid) for e in examples]
    q_ids = self.tokenize(questions)
    q_budget = cfg.reader_query_length - 2
    retr_budget = cfg.query_seq_length - 2
    truncated = []
    for e, text, ids in zip(examples, questions, q_ids):
      if not text:
        logging.warning("Example %s has an empty question; it is asked as `[CLS] [SEP]` and "
                        "counts as unanswered.", _name(e))
      elif len(ids) > min(q_budget, retr_budget):
        truncated.append(repr(e.qid))
    if truncated:  # one line per batch: a long question is common and harmless
      logging.warning("%d question(s) longer than %d (reader) / %d (retriever) wordpieces "
                      "truncated, e.g. %s.", len(truncated), q_budget, retr_budget,
                      ", ".join(truncated[:3]))
    if b:
      ragged = tf.RaggedTensor.from_row_lengths(
          tf.constant(np.concatenate(q_ids).astype(np.int32) if q_ids else np.zeros([0], np.int32)),
          tf.constant([len(x) for x in q_ids], tf.int64))
      packed = pack_query(ragged, cfg.query_seq_length, self.tokenizer.cls_id,
                          self.tokenizer.sep_id)
      out = {f"query/{k}": packed[k].numpy().astype(np.int32) for k in QUERY_KEYS}
    else:
      out = {f"query/{k}": np.zeros([0, cfg.query_seq_length], np.int32) for k in QUERY_KEYS}
    question_ids = np.zeros([b, q_budget], np.int32)
    question_length = np.zeros([b], np.int32)
    for i, ids in enumerate(q_ids):
      ids = ids[:q_budget]
      question_ids[i, :len(ids)] = ids
      question_length[i] = len(ids)
    out["question_ids"] = question_ids
    out["question_length"] = question_length
    out.update(self.answer_features(examples))
    return out

  def answer_features(self, examples: Sequence[OpenQAExample],
                      answers: Optional[Sequence[Sequence[str]]] = None) -> Dict[str, np.ndarray]:
    """answer_ids [B, A, L] / answer_length [B, A] from each example's answers (or `answers`).

    Regex answers are not strings to look for: pass concrete strings in `answers` (e.g. from
    `expand_regex_answers`); without them a regex example gets no answer slots.
    """
    cfg = self.config
    b = len(examples)
    per_example = []
    for i, e in enumerate(examples):
      if answers is not None:
        texts = list(answers[i])
      elif e.is_regex:
        texts = []
      else:
        texts = list(e.answers)
      texts = [clean_text(a, "answer", e.qid) for a in texts]
      per_example.append(list(dict.fromkeys(a for a in texts if a)))
    flat = [a for texts in per_example for a in texts]
    ids = iter(self.tokenize(flat))
    answer_ids = np.zeros([b, cfg.max_answers, cfg.max_answer_length], np.int32)
    answer_length = np.zeros([b, cfg.max_answers], np.int32)
    for i, texts in enumerate(per_example):
      slot = 0
      for text in texts:
        pieces = next(ids)
        if len(pieces) == 0:
          logging.warning("Example %s: answer %r has no wordpieces; ignored for training.",
                          _name(examples[i]), text[:80])
          continue
        if len(pieces) > cfg.max_answer_length:
          logging.log_every_n(logging.WARNING, "Example %s: answer %r has %d > %d wordpieces; "
                              "ignored for training.", 100, _name(examples[i]), text[:80],
                              len(pieces), cfg.max_answer_length)
          continue
        if slot == cfg.max_answers:
          continue
        answer_ids[i, slot, :len(pieces)] = pieces
        answer_length[i, slot] = len(pieces)
        slot += 1
    return {"answer_ids": answer_ids, "answer_length": answer_length}


def _name(example: OpenQAExample) -> str:
  return f"{example.qid!r} ({example.question[:60]!r})"


# ---------------------------------------------------------------------------------------------
# In-graph helpers.

def dense_bodies(body_ids: tf.RaggedTensor, max_length: Optional[int] = None) -> Tuple[np.ndarray,
                                                                                        np.ndarray]:
  """Ragged block bodies [N, (n)] → (ids int32 [N, Lb] zero-padded, lengths int32 [N])."""
  lengths = body_ids.row_lengths().numpy().astype(np.int32)
  width = int(lengths.max()) if len(lengths) else 1
  if max_length:
    width = min(width, max_length)
  dense = body_ids.to_tensor(0, shape=[len(lengths), max(width, 1)]).numpy().astype(np.int32)
  return dense, np.minimum(lengths, max(width, 1)).astype(np.int32)


def pack_reader_inputs(question_ids, question_length, body_ids, body_length, seq_length: int,
                       cls_id: int, sep_id: int) -> Dict[str, tf.Tensor]:
  """`[CLS] question [SEP] body [SEP]` with dense ops.

  Args:
    question_ids: int32 [B, Lq] (zero-padded), question_length: int32 [B].
    body_ids: int32 [B, K, Lb], body_length: int32 [B, K]; bodies are cut to fit `seq_length`.

  Returns:
    dict of int32 [B, K, seq_length] `input_word_ids`, `input_mask`, `input_type_ids`, plus
    `block_offset` int32 [B, K] (reader position of the body's first wordpiece) and
    `block_length` int32 [B, K] (body wordpieces kept).
  """
  body_length = tf.cast(body_length, tf.int32)
  shape = tf.shape(body_length)                                        # [B, K]
  question_ids = tf.cast(question_ids, tf.int32)
  questions = tf.broadcast_to(question_ids[:, None, :],
                              tf.concat([shape, tf.shape(question_ids)[1:]], 0))
  question_length = tf.broadcast_to(tf.cast(question_length, tf.int32)[:, None], shape)
  inputs, (kept_question, kept_body) = packing.pack_segments(
      [questions, body_ids], [question_length, body_length], seq_length, cls_id, sep_id)
  return dict(inputs, block_offset=kept_question + 2, block_length=kept_body)


def answer_start_matches(tokens, answer_ids, answer_length, continuation=None):
  """bool [B, K, A, T]: answer a's wordpieces occur at positions t..t+len-1 of sequence k.

  tokens int32 [B, K, T]; answer_ids int32 [B, A, L]; answer_length int32 [B, A]. With
  `continuation` (bool [V]) the piece after the match must not continue a word, so "den" does not
  match the start of "den ##ver". Empty answers (length 0) never match. Vectorised over answers;
  one loop step per answer wordpiece (L).
  """
  max_len = answer_ids.shape[-1]
  t = tf.shape(tokens)[-1]
  padded = tf.pad(tf.cast(tokens, tf.int32), [[0, 0], [0, 0], [0, max_len]])
  answer_ids = tf.cast(answer_ids, tf.int32)
  alen = tf.cast(answer_length, tf.int32)[:, None, :, None]           # [B, 1, A, 1]
  match = None
  nxt = None
  for l in range(max_len + 1):
    win = padded[:, :, None, l:l + t]                                  # [B, K, 1, T]
    is_end = tf.equal(alen, l)
    nxt = tf.where(is_end, win, 0) if nxt is None else tf.where(is_end, win, nxt)
    if l == max_len:
      break
    ok = tf.logical_or(tf.equal(win, answer_ids[:, None, :, l, None]), l >= alen)
    match = ok if match is None else tf.logical_and(match, ok)
  match = tf.logical_and(match, alen > 0)
  if continuation is not None:
    match = tf.logical_and(match, tf.logical_not(tf.gather(continuation, nxt)))
  return match


def contains_answer(tokens, answer_ids, answer_length, continuation=None):
  """bool [B, K]: some answer occurs in sequence k (ORQA's answer-bearing block test, on ids)."""
  m = answer_start_matches(tokens, answer_ids, answer_length, continuation)
  return tf.reduce_any(m, axis=[2, 3])


def gold_span_labels(reader_word_ids, answer_ids, answer_length, valid_spans, continuation=None):
  """bool [B, K, T, W]: span (t, t + w) of reader input k is a gold answer.

  Args:
    reader_word_ids: int32 [B, K, T] reader inputs.
    answer_ids / answer_length: [B, A, L] / [B, A].
    valid_spans: bool [B, K, T, W] spans the reader may predict (inside the block).
  """
  w = valid_spans.shape[-1]
  starts = answer_start_matches(reader_word_ids, answer_ids, answer_length, continuation)
  width = tf.one_hot(tf.cast(answer_length, tf.int32) - 1, w, dtype=tf.float32)  # [B, A, W]
  labels = tf.einsum("bkat,baw->bktw", tf.cast(starts, tf.float32), width) > 0
  return tf.logical_and(labels, valid_spans)


def span_text(tokenizer: RealmTokenizer, texts, start_piece, end_piece):
  """Original text of wordpieces [start, end] (inclusive) of each text, via byte offsets.

  texts: string [N]; start_piece, end_piece: int [N] indices into the text's wordpieces.
  Out-of-range or inverted spans give "".
  """
  texts = tf.convert_to_tensor(texts, tf.string)
  _, starts, limits = tokenizer.tokenize_with_offsets(texts)
  row_start = starts.row_starts()
  n_pieces = starts.row_lengths()
  s = tf.cast(start_piece, tf.int64)
  e = tf.cast(end_piece, tf.int64)
  ok = (s >= 0) & (e >= s) & (e < n_pieces)
  s_safe = tf.where(ok, row_start + s, 0)
  e_safe = tf.where(ok, row_start + e, 0)
  flat_s, flat_l = starts.flat_values, limits.flat_values
  has_any = tf.size(flat_s) > 0
  byte_s = tf.cond(has_any, lambda: tf.gather(flat_s, s_safe), lambda: tf.zeros_like(s))
  byte_e = tf.cond(has_any, lambda: tf.gather(flat_l, e_safe), lambda: tf.zeros_like(e))
  text = tf.strings.substr(texts, byte_s, tf.maximum(byte_e - byte_s, 0), unit="BYTE")
  return tf.where(ok, text, tf.constant("", tf.string))
