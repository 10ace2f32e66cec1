"""Packs wordpiece segments into fixed-length BERT inputs (ids, mask, type ids).

REALM's three layouts: query `[CLS] x [SEP]` (96), document `[CLS] title [SEP] body [SEP]`
(288), and the knowledge-augmented / reader input `[CLS] x [SEP] z_body [SEP]` (96+288 or 320).
All functions take RaggedTensors [B, (n)] and return dense int32 [B, seq_length] tensors, so they
run in tf.data and inside SavedModels.
"""
import tensorflow as tf
import tensorflow_text as tf_text

# The three features every packing function returns: a BERT encoder's inputs.
INPUT_KEYS = ("input_word_ids", "input_mask", "input_type_ids")

# The paper's lengths (the defaults of every config that packs): query, document, and the
# knowledge-augmented encoder's joint input (query + document body).
QUERY_LENGTH = 96
BLOCK_LENGTH = 288
JOINT_LENGTH = QUERY_LENGTH + BLOCK_LENGTH


def _pack(segments, seq_length, cls_id, sep_id, pad_id=0, trimmer="waterfall"):
  """Trims `segments` to fit `seq_length` with specials, then combines and pads them."""
  budget = seq_length - 1 - len(segments)
  segments = [tf.cast(s, tf.int32) for s in segments]
  if trimmer == "round_robin":
    trimmed = tf_text.RoundRobinTrimmer(max_seq_length=budget).trim(segments)
  else:
    trimmed = tf_text.WaterfallTrimmer(max_seq_length=budget).trim(segments)
  ids, type_ids = tf_text.combine_segments(
      trimmed, start_of_sequence_id=cls_id, end_of_segment_id=sep_id)
  word_ids, mask = tf_text.pad_model_inputs(ids, max_seq_length=seq_length, pad_value=pad_id)
  type_ids, _ = tf_text.pad_model_inputs(type_ids, max_seq_length=seq_length, pad_value=0)
  return dict(zip(INPUT_KEYS, (word_ids, mask, type_ids)))


def pack_query(query_ids, seq_length, cls_id, sep_id):
  """`[CLS] query [SEP]`, all segment 0."""
  return _pack([query_ids], seq_length, cls_id, sep_id)


def pack_document(title_ids, body_ids, seq_length, cls_id, sep_id):
  """`[CLS] title [SEP] body [SEP]`: title segment 0, body segment 1; the body is trimmed first."""
  return _pack([title_ids, body_ids], seq_length, cls_id, sep_id)


def pack_pair(first_ids, second_ids, seq_length, cls_id, sep_id):
  """`[CLS] first [SEP] second [SEP]` with the second segment trimmed first (waterfall)."""
  return _pack([first_ids, second_ids], seq_length, cls_id, sep_id)


def pack_query_block(query_ids, block_ids, query_length, seq_length, cls_id, sep_id):
  """Reader input `[CLS] query [SEP] block [SEP]`: the query keeps at most `query_length - 2` pieces."""
  query_ids = query_ids[:, : query_length - 2]
  return pack_pair(query_ids, block_ids, seq_length, cls_id, sep_id)
