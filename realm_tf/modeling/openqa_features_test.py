"""Tests of open-QA featurization: reader packing, answer matching, span text, bad input."""
import logging as py_logging

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.modeling import openqa_features as F
from realm_tf.text import pack_query_block


@pytest.fixture(scope="module")
def cont(tok):
  return tf.constant(np.array([t.startswith("##") for t in tok.vocab]))


def _dense(rows, width):
  out = np.zeros([len(rows), width], np.int32)
  for i, r in enumerate(rows):
    out[i, :len(r)] = r
  return out


def test_dense_packing_equals_ragged_packing(tok):
  questions = ["who", "what is the longest river in the whole wide world of ours today", ""]
  bodies = ["The Nile is long.", "a " * 80, "Short"]
  q = tok.tokenize(questions).to_list()
  b = tok.tokenize(bodies).to_list()
  seq, qlen = 40, 12
  q_dense = _dense([x[:qlen - 2] for x in q], qlen - 2)
  got = F.pack_reader_inputs(q_dense, [min(len(x), qlen - 2) for x in q],
                             _dense(b, 90)[:, None, :], np.array([[len(x)] for x in b]),
                             seq, tok.cls_id, tok.sep_id)
  want = pack_query_block(tf.ragged.constant(q, tf.int32), tf.ragged.constant(b, tf.int32), qlen,
                          seq, tok.cls_id, tok.sep_id)
  for k in ("input_word_ids", "input_mask", "input_type_ids"):
    np.testing.assert_array_equal(got[k].numpy()[:, 0], want[k].numpy(), err_msg=k)
  # block offset = 1 + question pieces + 1
  np.testing.assert_array_equal(got["block_offset"].numpy()[:, 0],
                                [2 + min(len(x), qlen - 2) for x in q])


def test_answer_matching_is_contiguous_and_whole_word(tok, cont):
  body = tok.tokenize(["Denver beat the Denverites in New York City"]).to_list()[0]
  answers = ["New York", "Denver", "York City", "the Denver", "Boston"]
  a_ids = tok.tokenize(answers).to_list()
  a = _dense(a_ids, 10)[None]                                   # [1, A, L]
  alen = np.array([[len(x) for x in a_ids]], np.int32)
  starts = F.answer_start_matches(tf.constant([[body]], tf.int32), a, alen, cont).numpy()[0, 0]
  found = {answers[i]: [int(t) for t in np.nonzero(starts[i])[0]] for i in range(len(answers))}
  pieces = tok.tokens(tf.constant(body)).numpy().tolist()
  assert found["New York"] == [pieces.index(b"new")]
  assert found["York City"] == [pieces.index(b"york")]
  # "Denver" matches the first word but not the prefix of "Denverites".
  assert found["Denver"] == [0]
  assert found["the Denver"] == [] and found["Boston"] == []
  has = F.contains_answer(tf.constant([[body, body]], tf.int32), a, alen, cont).numpy()
  assert has.tolist() == [[True, True]]
  none = F.contains_answer(tf.constant([[body]], tf.int32), a[:, 4:], alen[:, 4:], cont)
  assert none.numpy().tolist() == [[False]]


def test_gold_span_labels_only_inside_block(tok, cont):
  from realm_tf.modeling.reader import span_mask  # pylint: disable=g-import-not-at-top
  # The answer also occurs in the question: only the block occurrence is a label.
  q = tok.tokenize(["is paris the capital"]).to_list()
  b = tok.tokenize(["Paris is the capital of France; paris"]).to_list()
  inputs = F.pack_reader_inputs(_dense(q, 10), [len(q[0])], _dense(b, 20)[:, None],
                                [[len(b[0])]], 32, tok.cls_id, tok.sep_id)
  ids = inputs["input_word_ids"]
  valid = span_mask(ids[:, 0], inputs["input_mask"][:, 0], inputs["input_type_ids"][:, 0], 10,
                    cont)[:, None]
  a = tok.tokenize(["Paris", "capital of France"]).to_list()
  labels = F.gold_span_labels(ids, _dense(a, 10)[None], np.array([[len(x) for x in a]]), valid,
                              cont).numpy()[0, 0]
  got = sorted((int(t), int(w)) for t, w in zip(*np.nonzero(labels)))
  off = int(inputs["block_offset"].numpy()[0, 0])
  # "paris" at body 0 and body 7 (after ";"), "capital of france" at body 3 (3 pieces).
  assert got == [(off, 0), (off + 3, 2), (off + 7, 0)]


def test_span_text_uses_byte_offsets(tok):
  texts = ["Café Zürich opened in 1890 — naïve façade.", "plain words here", "x"]
  starts = [0, 1, 0]
  ends = [2, 2, 5]     # last one out of range
  got = F.span_text(tok, texts, starts, ends).numpy().tolist()
  assert got[0].decode() == "Café Zürich opened"
  assert got[1].decode() == "words here"
  assert got[2] == b""


def test_clean_text_handles_stray_unicode(caplog):
  with caplog.at_level(py_logging.WARNING):
    assert F.clean_text("a\u200bb \ud800 c\x00", "answer", "ex7") == "ab \ufffd c"
  assert "ex7" in caplog.text
  assert F.clean_text(b"caf\xc3\xa9 \xff", "answer") == "café \ufffd"
  assert F.clean_text("  Plain   text ") == "Plain text"


def test_a_changed_question_warns_once_saying_what_changed(tok, caplog):
  """Evaluation cleans each question to find the empty ones, then featurizes it: a question
  ending in a zero-width space gets one warning naming the character and where it was (not two
  warnings whose two sides, cut to 40 characters, read the same)."""
  question = ("Which river flows through the capital city of Egypt and into the Mediterranean "
              "Sea?\u200b")
  example = F.OpenQAExample("zwsp-1", question, ("Nile",))
  fz = F.QuestionFeaturizer(F.FeatureConfig(), tok)
  with caplog.at_level(py_logging.WARNING):
    assert F.clean_text(example.question, "question", example.qid) == question[:-1]
    fz.featurize([example])
  warnings = [r.getMessage() for r in caplog.records if "zwsp-1" in r.getMessage()]
  assert warnings == [
      "Example 'zwsp-1': question 'Which river flows through the capital city of Egypt and "
      "into the Mediterranea...' cleaned: U+200B ZERO WIDTH SPACE removed at the end."]
  caplog.clear()
  with caplog.at_level(py_logging.WARNING):
    F.clean_text("\u200eOne\u200b two\u200b\u200b", "question", "zwsp-2")
  assert caplog.messages == [
      "Example 'zwsp-2': question 'One two' cleaned: U+200E LEFT-TO-RIGHT MARK removed at the "
      "start; U+200B ZERO WIDTH SPACE removed at character 5, the end."]


def test_featurize_bad_questions_and_answers(tok, caplog):
  cfg = F.FeatureConfig(query_seq_length=16, reader_query_length=12, max_answers=3,
                        max_answer_length=4)
  fz = F.QuestionFeaturizer(cfg, tok)
  long_q = " ".join(["river"] * 40)
  examples = [
      F.OpenQAExample("ok", "Who wrote Hamlet?", ("William Shakespeare",)),
      F.OpenQAExample("empty", "   ", ("x",)),
      F.OpenQAExample("long", long_q, ("a b c d e f",)),              # answer too long
      F.OpenQAExample("weird", "what?", ("\u200b", "caf\u00e9\ud800", "ok")),
      F.OpenQAExample("regex", "when?", (r"19[0-9]{2}",), True),
  ]
  with caplog.at_level(py_logging.WARNING):
    out = fz.featurize(examples)
  assert out["query/input_word_ids"].shape == (5, 16)
  assert out["question_ids"].shape == (5, 10)
  np.testing.assert_array_equal(out["question_length"], [4, 0, 10, 2, 2])
  assert out["query/input_mask"][2].sum() == 16                      # truncated to fit
  assert out["query/input_mask"][1].sum() == 2                       # [CLS] [SEP]
  np.testing.assert_array_equal(out["answer_length"][:, 0] > 0, [True, True, False, True, False])
  assert out["answer_length"][3].tolist()[:2] != [0, 0]              # "café?" and "ok" kept
  for name in ("'empty'", "'long'", "'weird'"):
    assert name in caplog.text, name
