"""Tests for realm_tf.export.block_table: block ids → rows, byte offsets, and text blocks."""
import numpy as np
import pytest
import tensorflow as tf

from realm_tf.export import block_table
from realm_tf.testing import export_models as ex_testing
from realm_tf.export.versioning import ServingExportError

TEXTS = list(ex_testing.BLOCK_TEXTS)


def test_block_table_maps_ids_and_offsets(table, tokenizer):
  rows = table.rows_for_block_ids(tf.constant([[20, 30], [10, 10]], tf.int64)).numpy()
  np.testing.assert_array_equal(rows, [[2, 0], [1, 1]])
  blocks = table.gather(tf.constant([[0, 2]]))
  ids, starts, limits = ex_testing.pieces(tokenizer, TEXTS[0])
  n = len(ids)
  assert blocks["body_length"].numpy().tolist() == [[n, len(ex_testing.pieces(tokenizer,
                                                                             TEXTS[2])[0])]]
  np.testing.assert_array_equal(blocks["body_ids"].numpy()[0, 0, :n], ids)
  np.testing.assert_array_equal(blocks["starts"].numpy()[0, 0, :n], starts)
  np.testing.assert_array_equal(blocks["limits"].numpy()[0, 0, :n], limits)
  assert blocks["texts"].numpy()[0, 1].decode() == TEXTS[2]
  assert blocks["titles"].numpy()[0, 0].decode() == "Zürich"
  assert blocks["block_ids"].numpy().tolist() == [[30, 20]]
  # The ü is two bytes: "lies" starts at byte 7, not character 7.
  assert starts[1] == len("Zürich".encode("utf-8")) + 1 == 8


def test_block_table_rejects_unknown_block_id(table):
  with pytest.raises(tf.errors.InvalidArgumentError, match="not in the exported corpus"):
    table.rows_for_block_ids(tf.constant([10, 99], tf.int64))


def test_block_table_rejects_wordpieces_that_do_not_match_text(tokenizer):
  ids = tokenizer.tokenize(TEXTS).to_list()
  ids[1] = ids[1][:-1]
  with pytest.raises(ServingExportError, match="Block 10 .row 1."):
    block_table.BlockTable(np.array([30, 10, 20]), ["a", "b", "c"], TEXTS, ids, tokenizer)
  with pytest.raises(ServingExportError, match="duplicate"):
    block_table.BlockTable(np.array([1, 1, 2]), ["a", "b", "c"], TEXTS, None, tokenizer)


def test_text_blocks_equal_table_blocks(table, tokenizer):
  from_table = table.gather(tf.constant([[1, 0], [2, 1]]))
  from_text = block_table.text_blocks(tokenizer, [[TEXTS[1], TEXTS[0]], [TEXTS[2], TEXTS[1]]])
  for key in ("body_ids", "body_length", "starts", "limits", "texts"):
    np.testing.assert_array_equal(from_table[key].numpy(), from_text[key].numpy(), err_msg=key)
