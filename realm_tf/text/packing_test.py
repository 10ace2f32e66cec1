"""Tests for the packing layouts: query, document, pair (knowledge-augmented) and reader input."""
import tensorflow as tf

from realm_tf.text import RealmTokenizer, pack_document, pack_pair, pack_query, pack_query_block

CLS, SEP = 101, 102


def _rt(rows):
  return tf.ragged.constant(rows, dtype=tf.int32)


def _lists(packed):
  return {k: v.numpy().tolist() for k, v in packed.items()}


def test_query_layout_pads_and_truncates():
  out = _lists(pack_query(_rt([[5, 6, 7], [], [1, 2, 3, 4, 5, 6, 7, 8]]), 6, CLS, SEP))
  assert out["input_word_ids"] == [[CLS, 5, 6, 7, SEP, 0],
                                   [CLS, SEP, 0, 0, 0, 0],
                                   [CLS, 1, 2, 3, 4, SEP]]
  assert out["input_mask"] == [[1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0], [1] * 6]
  assert out["input_type_ids"] == [[0] * 6] * 3


def test_document_layout_title_segment_zero_body_segment_one():
  out = _lists(pack_document(_rt([[11, 12]]), _rt([[21, 22, 23]]), 9, CLS, SEP))
  assert out["input_word_ids"] == [[CLS, 11, 12, SEP, 21, 22, 23, SEP, 0]]
  assert out["input_type_ids"] == [[0, 0, 0, 0, 1, 1, 1, 1, 0]]
  assert out["input_mask"] == [[1, 1, 1, 1, 1, 1, 1, 1, 0]]


def test_document_trims_the_body_first():
  out = _lists(pack_document(_rt([[11, 12]]), _rt([list(range(30, 40))]), 8, CLS, SEP))
  assert out["input_word_ids"] == [[CLS, 11, 12, SEP, 30, 31, 32, SEP]]
  assert out["input_type_ids"] == [[0, 0, 0, 0, 1, 1, 1, 1]]


def test_pair_layout_is_query_then_body():
  out = _lists(pack_pair(_rt([[5, 103, 7]]), _rt([[21, 22, 23, 24, 25]]), 8, CLS, SEP))
  assert out["input_word_ids"] == [[CLS, 5, 103, 7, SEP, 21, 22, SEP]]
  assert out["input_type_ids"] == [[0, 0, 0, 0, 0, 1, 1, 1]]


def test_query_block_caps_the_query_length():
  query = _rt([list(range(1, 11)), [7]])
  block = _rt([list(range(50, 60)), [51, 52]])
  out = _lists(pack_query_block(query, block, query_length=5, seq_length=10, cls_id=CLS,
                                sep_id=SEP))
  # query_length 5 keeps 3 query pieces; the block fills the rest.
  assert out["input_word_ids"] == [[CLS, 1, 2, 3, SEP, 50, 51, 52, 53, SEP],
                                   [CLS, 7, SEP, 51, 52, SEP, 0, 0, 0, 0]]
  assert out["input_type_ids"][0] == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
  assert out["input_mask"][1] == [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]


def test_realm_lengths_with_real_text_in_tf_data():
  tok = RealmTokenizer()
  title = tok.tokenize(["Eiffel Tower"])
  body = tok.tokenize(["The tower is " + "very " * 400 + "tall."])
  doc = pack_document(title, body, 288, tok.cls_id, tok.sep_id)
  ids = doc["input_word_ids"].numpy()[0]
  assert doc["input_word_ids"].shape == (1, 288) and doc["input_word_ids"].dtype == tf.int32
  assert ids[0] == tok.cls_id and ids[-1] == tok.sep_id
  assert ids.tolist().count(tok.sep_id) == 2
  assert doc["input_mask"].numpy().sum() == 288

  ds = tf.data.Dataset.from_tensor_slices(["a question about paris ?"]).batch(1).map(
      lambda t: pack_query(tok.tokenize(t), 96, tok.cls_id, tok.sep_id))
  q = next(iter(ds))
  assert q["input_word_ids"].shape == (1, 96)
  assert int(q["input_mask"].numpy().sum()) == 7  # [CLS] 5 pieces [SEP]
