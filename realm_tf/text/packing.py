"""Packs wordpiece segments into fixed-length BERT inputs (ids, mask, type ids).

REALM's three layouts: query `[CLS] x [SEP]` (96), document `[CLS] title [SEP] body [SEP]`
(288), and the knowledge-augmented / reader input `[CLS] x [SEP] z_body [SEP]` (96+288 or 320).
All functions take RaggedTensors [B, (n)] and return dense int32 [B, seq_length] tensors, so they
run in tf.data and inside SavedModels.
"""
from typing import Dict, List, Sequence, Tuple

import tensorflow as tf

# The three features every packing function returns: a BERT encoder's inputs.
INPUT_KEYS = ("input_word_ids", "input_mask", "input_type_ids")

# The paper's lengths (the defaults of every config that packs): query, document, and the
# knowledge-augmented encoder's joint input (query + document body).
QUERY_LENGTH = 96
BLOCK_LENGTH = 288
JOINT_LENGTH = QUERY_LENGTH + BLOCK_LENGTH


def pack_segments(segments: Sequence[tf.Tensor], lengths: Sequence[tf.Tensor], seq_length: int,
                  cls_id: int, sep_id: int, pad_id: int = 0) -> Tuple[Dict[str, tf.Tensor],
                                                                      List[tf.Tensor]]:
  """`[CLS] s0 [SEP] s1 [SEP] ...` padded to `seq_length`, from zero-padded segments.

  Segment i is int [..., L_i] holding `lengths[i]` [...] wordpieces (the leading dims are the
  same for all, e.g. [B] or [B, K]). The segments are trimmed as TF.Text's WaterfallTrimmer does:
  each keeps what the budget left after the earlier ones allows, so the last is trimmed first.
  Dense ops only (a few dozen, against about 1,500 for TF.Text's ragged trimmer, combiner and
  padder): tf.data maps and SavedModels that pack trace and run that much less.

  Returns the three encoder inputs, int32 [..., seq_length] (type id i for segment i and its
  [SEP]), and the wordpieces kept of each segment, int32 [...].
  """
  rank = len(lengths[0].shape)
  positions = tf.range(seq_length, dtype=tf.int32)               # [T]: broadcasts against [..., 1]
  left = max(seq_length - 1 - len(segments), 0)                  # room for wordpieces
  ids = tf.where(positions == 0, cls_id, pad_id)
  types = tf.zeros_like(positions)
  kept, start = [], tf.ones_like(tf.cast(lengths[0], tf.int32))  # where segment i begins
  for i, (segment, length) in enumerate(zip(segments, lengths)):
    length = tf.minimum(tf.maximum(tf.cast(length, tf.int32), 0), left)
    left -= length
    kept.append(length)
    offset = positions - start[..., None]                          # [..., T]
    # One zero column, so that the gather below has a column to clip to even for empty segments.
    segment = tf.pad(tf.cast(segment, tf.int32), [[0, 0]] * rank + [[0, 1]])
    pieces = tf.gather(segment, tf.clip_by_value(offset, 0, tf.shape(segment)[-1] - 1),
                       batch_dims=rank)
    end = length[..., None]                                       # the offset of its [SEP]
    ids = tf.where((offset >= 0) & (offset < end), pieces, ids)
    ids = tf.where(offset == end, sep_id, ids)
    types = tf.where((offset >= 0) & (offset <= end), i, types)
    start += length + 1
  mask = tf.cast(positions < start[..., None], tf.int32)
  return dict(zip(INPUT_KEYS, (ids, mask, types))), kept


def _pack(segments, seq_length, cls_id, sep_id):
  """Packs ragged segments [B, (n_i)] (`pack_segments` on their zero-padded form)."""
  dense = [tf.cast(s, tf.int32).to_tensor(0, shape=[None, seq_length]) for s in segments]
  lengths = [tf.cast(s.row_lengths(), tf.int32) for s in segments]
  packed, _ = pack_segments(dense, lengths, seq_length, cls_id, sep_id)
  return packed


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
