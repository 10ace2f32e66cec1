"""Tests for realm_tf.export.answers: answer text by byte offsets, probabilities, dedup, and the
in-graph question features against the host-side featurizer."""
import numpy as np
import pytest
import tensorflow as tf

from realm_tf.export import answers
from realm_tf.testing import export_models as ex_testing
from realm_tf.export.versioning import ServingExportError

TEXTS = list(ex_testing.BLOCK_TEXTS)


def _grid(b, k, t, w, spans):
  """Span logits [b, k, t, w] at -1e9 except `spans` {(b, k, start, end): logit}."""
  logits = np.full([b, k, t, w], answers.NEG_INF, np.float32)
  for (i, j, s, e), v in spans.items():
    logits[i, j, s, e - s] = v
  return tf.constant(logits)


def test_select_answers_text_probability_dedup(table, tokenizer):
  blocks = table.reader_blocks(tf.constant([[0, 1]]), tokenizer)
  offset = tf.constant([[3, 3]])  # `[CLS] q q [SEP]`: bodies start at reader position 3
  logits = _grid(1, 2, 20, 4, {
      (0, 1, 3, 3): 5.0,   # block 1, piece 0: "Paris"
      (0, 0, 3, 4): 4.5,   # block 0, pieces 0..1: "Zürich lies" (byte offsets, ü is 2 bytes)
      (0, 1, 6, 6): 3.0,   # block 1, piece 3: "capital"
  })
  out = answers.select_answers(logits, offset, blocks, num_answers=4, max_candidates=6)
  _, starts, limits = ex_testing.pieces(tokenizer, TEXTS[0])
  expected_z = TEXTS[0].encode()[starts[0]:limits[1]].decode()
  assert expected_z.startswith("Zürich")
  got = [a.decode() for a in out["answers"].numpy()[0]]
  assert got == ["Paris", expected_z, "capital", ""]
  probs = out["probabilities"].numpy()[0]
  norm = np.log(np.exp(5.0) + np.exp(4.5) + np.exp(3.0))
  np.testing.assert_allclose(probs[:3], np.exp(np.array([5.0, 4.5, 3.0]) - norm), rtol=1e-5)
  assert probs[3] == 0.0
  assert out["answer_block_index"].numpy()[0].tolist() == [1, 0, 1, -1]
  np.testing.assert_allclose(out["answer_scores"].numpy()[0, :3], [5.0, 4.5, 3.0])


def test_select_answers_drops_repeated_strings(table, tokenizer):
  # The same block twice: same spans, same text.
  blocks = table.reader_blocks(tf.constant([[1, 1]]), tokenizer)
  logits = _grid(1, 2, 12, 3, {(0, 0, 3, 3): 2.0, (0, 1, 3, 3): 1.9, (0, 0, 4, 4): 1.0}).numpy()
  out = answers.select_answers(tf.constant(logits), tf.constant([[3, 3]]), blocks, 2, 4)
  assert [a.decode() for a in out["answers"].numpy()[0]] == ["Paris", "is"]
  assert out["answer_block_index"].numpy()[0].tolist() == [0, 0]
  with pytest.raises(ServingExportError):
    answers.select_answers(tf.constant(logits), tf.constant([[3, 3]]), blocks, 5, 4)


def test_select_answers_with_fewer_spans_than_candidates(table, tokenizer):
  blocks = table.reader_blocks(tf.constant([[1]]), tokenizer)
  logits = _grid(1, 1, 5, 2, {(0, 0, 3, 4): 0.5})  # 10 cells < 32 candidates
  out = answers.select_answers(logits, tf.constant([[3]]), blocks, 3, 32)
  assert [a.decode() for a in out["answers"].numpy()[0]] == ["Paris is", "", ""]
  np.testing.assert_allclose(out["probabilities"].numpy()[0], [1.0, 0.0, 0.0], atol=1e-6)


def test_select_answers_gives_orqa_strings_under_orqa_featurization(table, tokenizer):
  from realm_tf.openqa import answer_text  # pylint: disable=g-import-not-at-top
  blocks = table.reader_blocks(tf.constant([[0, 1]]), tokenizer)
  logits = _grid(1, 2, 20, 4, {
      (0, 1, 3 + 5, 3 + 6): 5.0,   # block 1, "France." → ORQA's "France ."
      (0, 0, 3 + 5, 3 + 6): 4.0,   # block 0, "##mat river" (inside "Limmat") → "Limmat river"
      (0, 1, 3 + 0, 3 + 0): 3.0})  # "Paris"
  out = answers.select_answers(logits, tf.constant([[3, 3]]), blocks, num_answers=3,
                               max_candidates=6, featurization="orqa", tokenizer=tokenizer)
  got = [a.decode() for a in out["answers"].numpy()[0]]
  assert got == ["France .", "Limmat river", "Paris"]
  want = answer_text.orqa_answer_text(tokenizer, [TEXTS[1], TEXTS[0], TEXTS[1]], [5, 5, 0],
                                      [6, 6, 0]).numpy()
  assert got == [w.decode() for w in want]
  default = answers.select_answers(logits, tf.constant([[3, 3]]), blocks, 3, 6)
  assert [a.decode() for a in default["answers"].numpy()[0]] == ["France.", "mat river", "Paris"]
  with pytest.raises(ServingExportError, match="tokenizer"):
    answers.select_answers(logits, tf.constant([[3, 3]]), blocks, 3, 6, featurization="orqa")


def test_question_features_pack_and_trim(tokenizer):
  questions = ["Who wrote Hamlet?", "what is the capital of france and of the rest of europe"]
  out = answers.question_features(tokenizer, tf.constant(questions), query_seq_length=8,
                                  reader_query_length=6)
  ids = tokenizer.tokenize(questions).to_list()
  word_ids = out["query/input_word_ids"].numpy()
  assert word_ids.shape == (2, 8)
  assert word_ids[0, 0] == tokenizer.cls_id and tokenizer.sep_id in word_ids[0].tolist()
  # The reader keeps the first reader_query_length - 2 question wordpieces, zero padded.
  budget = 4
  for i, q in enumerate(ids):
    kept = q[:budget]
    assert out["question_length"].numpy()[i] == len(kept)
    np.testing.assert_array_equal(out["question_ids"].numpy()[i], kept + [0] * (budget - len(kept)))
  assert out["wordpieces"].to_list() == ids
