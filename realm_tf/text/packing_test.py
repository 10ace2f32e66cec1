"""Tests for the packing layouts: query, document, pair (knowledge-augmented) and reader input."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text as tf_text

from realm_tf.text import RealmTokenizer, pack_document, pack_pair, pack_query, pack_query_block
from realm_tf.text import packing

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


def _tf_text_pack(segments, seq_length):
  """The reference: TF.Text's waterfall trimmer, segment combiner and padder."""
  trimmed = tf_text.WaterfallTrimmer(max_seq_length=seq_length - 1 - len(segments)).trim(
      segments)
  ids, types = tf_text.combine_segments(trimmed, start_of_sequence_id=CLS, end_of_segment_id=SEP)
  ids, mask = tf_text.pad_model_inputs(ids, max_seq_length=seq_length)
  types, _ = tf_text.pad_model_inputs(types, max_seq_length=seq_length)
  return {"input_word_ids": ids, "input_mask": mask, "input_type_ids": types}


@pytest.mark.parametrize("num_segments,seq_length", [(1, 5), (1, 40), (2, 6), (2, 33), (3, 12),
                                                     (3, 64)])
def test_packing_equals_tf_text_trimmer_combiner_and_padder(num_segments, seq_length):
  rng = np.random.default_rng(seq_length + num_segments)
  for _ in range(3):
    segments = [_rt([rng.integers(1000, 2000, size=rng.integers(0, 2 * seq_length)).tolist()
                     for _ in range(17)]) for _ in range(num_segments)]
    got = packing._pack(segments, seq_length, CLS, SEP)  # pylint: disable=protected-access
    want = _tf_text_pack(segments, seq_length)
    for key in packing.INPUT_KEYS:
      assert got[key].shape == (17, seq_length) and got[key].dtype == tf.int32
      np.testing.assert_array_equal(got[key].numpy(), want[key].numpy(), err_msg=key)


def test_packing_traces_to_few_ops():
  spec = tf.RaggedTensorSpec([None, None], tf.int64)
  graph = tf.function(lambda a, b: pack_document(a, b, 288, CLS, SEP)).get_concrete_function(
      spec, spec).graph
  assert len(graph.get_operations()) < 200, len(graph.get_operations())  # TF.Text: about 1,500
