"""The answer string of a predicted span: realm_tf's, or ORQA's (Google's released models).

A span is a range of a block body's wordpieces. Two rules turn it into text
(`OpenQAConfig.featurization` picks one; `answer_text` dispatches):

* `realm_tf` (the default, `features.span_text`): the original text between the first
  wordpiece's first byte and the last wordpiece's last byte, as written ("Austria-Hungary").
* `orqa` (`orqa_answer_text`), what google-research/language `orqa/models/orqa_model.py`
  `get_predictions` answers:
  1. the body is split into original tokens as `bert_utils.tokenize_with_original_mapping` does
     (control and format characters are white space; white space separates; each punctuation or
     CJK character is a token of its own; original case kept); the span covers every original
     token one of its wordpieces falls in, so a span starting or ending inside a word covers the
     whole word;
  2. those tokens joined by one space ("Austria - Hungary") are the `orig_text`, the span's
     wordpiece strings joined by one space ("austria - hungary", "kil ##iman ##jar ##o") the
     `pred_text`;
  3. SQuAD's `get_final_text(pred_text, orig_text, do_lower_case=True)` (`final_text`): where
     `pred_text` is found in BERT's basic tokenization of `orig_text` (lower case, accents
     stripped, punctuation split, joined by spaces) and the two agree character for character
     once spaces are removed, the part of `orig_text` it covers; otherwise `orig_text` whole.
     So a span whose last wordpiece begins a word ("mount kil") is cut inside that word
     ("Mount Kil"), and any span holding a `##` piece or `[UNK]` answers `orig_text`.

Everything is stock TensorFlow and TF.Text ops on batches (no py_function), so the evaluation
stage and the exported SavedModels (`realm_tf.export.answers.select_answers`) give the same
string. Character positions are Unicode code points, as Python's `str` indexes them.
"""
import tensorflow as tf
import tensorflow_text as tf_text
from tensorflow_text.python.ops import bert_tokenizer

from realm_tf.modeling import openqa_features as features_lib

# ORQA's original tokens: the TF.Text BERT basic tokenizer's delimiters (white space dropped,
# punctuation and CJK characters kept as tokens) over the text with control and format characters
# (which ORQA replaces by a space) also dropped; offsets stay those of the text as given.
_KEEP = bert_tokenizer._KEEP_DELIM_NO_WHITESPACE_PATTERN  # pylint: disable=protected-access
_ORIGINAL_DELIM = (r"[\p{Cc}\p{Cf}]|" +
                   bert_tokenizer._DELIM_REGEX_PATTERN)  # pylint: disable=protected-access
# BERT's Python BasicTokenizer (which `get_final_text` runs): every Unicode white space separates.
_BASIC_DELIM = r"[\s\p{Z}]+|" + _KEEP
_SPACE = 32


def answer_text(tokenizer, texts, start_piece, end_piece, featurization: str = "realm_tf"):
  """The answer strings [N] of spans [start_piece, end_piece] (indices into each text's
  wordpieces, inclusive) by `featurization`'s rule (module docstring). Bad spans give ""."""
  if featurization == "orqa":
    return orqa_answer_text(tokenizer, texts, start_piece, end_piece)
  return features_lib.span_text(tokenizer, texts, start_piece, end_piece)


def orqa_answer_text(tokenizer, texts, start_piece, end_piece):
  """ORQA's answer strings [N] for spans given as wordpiece indices into `texts` [N].

  Out-of-range or inverted spans give "".
  """
  texts = tf.convert_to_tensor(texts, tf.string)
  ids, starts, _ = tokenizer.tokenize_with_offsets(texts)
  s = tf.cast(start_piece, tf.int64)
  e = tf.cast(end_piece, tf.int64)
  ok = (s >= 0) & (e >= s) & (e < ids.row_lengths())
  row_start = ids.row_starts()
  first = tf.where(ok, row_start + s, 0)
  last = tf.where(ok, row_start + e, -1)
  flat_starts = tf.concat([starts.flat_values, [0]], 0)  # one spare entry: no text has a piece
  pieces = tf.gather(ids.flat_values, tf.ragged.range(first, last + 1))
  answer = orqa_answer_from_pieces(texts, tf.gather(flat_starts, first),
                                   tf.gather(flat_starts, tf.maximum(last, 0)),
                                   tokenizer.tokens(pieces))
  return tf.where(ok, answer, "")


def orqa_answer_from_pieces(texts, first_byte, last_byte, piece_strings):
  """ORQA's answer strings [N] from each span's text [N], the byte offsets into it [N] where its
  first and its last wordpiece start, and its wordpiece strings (ragged string [N, (w)])."""
  texts = tf.convert_to_tensor(texts, tf.string)
  tokens, token_starts, _ = tf_text.regex_split_with_offsets(texts, _ORIGINAL_DELIM, _KEEP)
  # The original token a wordpiece falls in: the last one starting at or before it.
  big = tf.constant(2 ** 62, tf.int64)
  dense_starts = tf.concat([token_starts.to_tensor(big), tf.fill([tf.size(texts), 1], big)], 1)
  locate = lambda b: tf.searchsorted(  # pylint: disable=unnecessary-lambda-assignment
      dense_starts, tf.cast(b, tf.int64)[:, None], side="right", out_type=tf.int64)[:, 0] - 1
  i = tf.maximum(locate(first_byte), 0)
  j = tf.maximum(locate(last_byte), i)
  j = tf.minimum(j, tokens.row_lengths() - 1)
  span = tf.ragged.range(tokens.row_starts() + i, tokens.row_starts() + j + 1)
  orig_text = tf.strings.unsorted_segment_join(
      tf.gather(tokens.flat_values, span.flat_values), span.value_rowids(), tf.size(texts),
      separator=" ")
  pred_text = tf.strings.reduce_join(piece_strings, axis=-1, separator=" ")
  return final_text(pred_text, orig_text)


def basic_tokenized_text(texts):
  """" ".join(BERT BasicTokenizer(do_lower_case=True).tokenize(text)) for strings [N]: NUL,
  U+FFFD and other control characters dropped, lower case, NFD with combining marks removed,
  split on white space, punctuation and CJK characters."""
  texts = tf.strings.regex_replace(texts, r"[\t\n\r]", " ")
  texts = tf.strings.regex_replace(texts, r"[\p{Cc}\p{Cf}\x{FFFD}]", "")
  texts = tf.strings.lower(texts, encoding="utf-8")
  texts = tf.strings.regex_replace(tf_text.normalize_utf8(texts, "NFD"), r"\p{Mn}", "")
  return tf.strings.reduce_join(tf_text.regex_split(texts, _BASIC_DELIM, _KEEP), axis=-1,
                                separator=" ")


def final_text(pred_text, orig_text):
  """SQuAD's `get_final_text(pred_text, orig_text, do_lower_case=True)` on strings [N] (module
  docstring, step 3): the part of `orig_text` that `pred_text` covers, else `orig_text`."""
  pred_text = tf.convert_to_tensor(pred_text, tf.string)
  orig_text = tf.convert_to_tensor(orig_text, tf.string)
  tok_text = basic_tokenized_text(orig_text)
  n_tok = tf.strings.length(tok_text, unit="UTF8_CHAR")
  m = tf.strings.length(pred_text, unit="UTF8_CHAR")
  # str.find: the first character position where pred_text occurs.
  pos = tf.range(tf.reduce_max(tf.concat([n_tok, [0]], 0)) + 1)[None, :]
  shape = tf.stack([tf.size(tok_text), tf.size(pos)])
  window = tf.strings.substr(tf.broadcast_to(tok_text[:, None], shape),
                             tf.minimum(pos, n_tok[:, None]),
                             tf.broadcast_to(m[:, None], shape), unit="UTF8_CHAR")
  match = tf.equal(window, pred_text[:, None]) & (pos + m[:, None] <= n_tok[:, None])
  found = tf.reduce_any(match, axis=1)
  start = tf.argmax(tf.cast(match, tf.int32), axis=1, output_type=tf.int32)
  end = start + m - 1
  # Character positions without the spaces (only U+0020 is removed, as SQuAD's _strip_spaces).
  tok_chars = tf.strings.unicode_decode(tok_text, "UTF-8").to_tensor(_SPACE)
  orig_chars = tf.strings.unicode_decode(orig_text, "UTF-8").to_tensor(_SPACE)
  tok_ns = tf.cast(tf.not_equal(tok_chars, _SPACE), tf.int32)
  orig_ns = tf.cast(tf.not_equal(orig_chars, _SPACE), tf.int32)
  same_length = tf.equal(tf.reduce_sum(tok_ns, 1), tf.reduce_sum(orig_ns, 1))
  width = tf.shape(tok_ns)[1]

  def at(x, p):  # x[row, p] for p in [0, width] (width: past the end, reads 0)
    return tf.gather(tf.pad(x, [[0, 0], [0, 1]]), tf.clip_by_value(p, 0, width), batch_dims=1)

  ends_on_chars = tf.equal(at(tok_ns, start), 1) & tf.equal(at(tok_ns, end), 1)
  before = tf.cumsum(tok_ns, axis=1, exclusive=True)
  orig_count = tf.cumsum(orig_ns, axis=1)
  a = tf.searchsorted(orig_count, (at(before, start) + 1)[:, None], side="left")[:, 0]
  b = tf.searchsorted(orig_count, (at(before, end) + 1)[:, None], side="left")[:, 0]
  ok = found & same_length & ends_on_chars & (b >= a)
  cut = tf.strings.substr(orig_text, tf.where(ok, a, 0), tf.where(ok, b - a + 1, 0),
                          unit="UTF8_CHAR")
  return tf.where(ok, cut, orig_text)
