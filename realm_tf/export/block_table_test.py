"""Tests for realm_tf.export.block_table: block ids → rows, texts from the byte array, wordpieces
and byte offsets tokenized from the texts, and a table built from a FrozenIndex."""
import numpy as np
import pytest
import tensorflow as tf

from realm_tf.export import block_table
from realm_tf.export.versioning import ServingExportError
from realm_tf.testing import export_models as ex_testing
from realm_tf.testing import openqa_models as oqt

TEXTS = list(ex_testing.BLOCK_TEXTS)


def test_block_table_maps_ids_and_gathers_texts(table, tokenizer):
  rows = table.rows_for_block_ids(tf.constant([[20, 30], [10, 10]], tf.int64)).numpy()
  np.testing.assert_array_equal(rows, [[2, 0], [1, 1]])
  blocks = table.reader_blocks(tf.constant([[0, 2]]), tokenizer)
  assert blocks["texts"].numpy().tolist() == [[TEXTS[0].encode(), TEXTS[2].encode()]]
  assert blocks["titles"].numpy()[0, 0].decode() == "Zürich"
  assert blocks["block_ids"].numpy().tolist() == [[30, 20]]
  ids, starts, limits = ex_testing.pieces(tokenizer, TEXTS[0])
  n = len(ids)
  assert blocks["body_length"].numpy().tolist() == [[n, len(ex_testing.pieces(tokenizer,
                                                                             TEXTS[2])[0])]]
  np.testing.assert_array_equal(blocks["body_ids"].numpy()[0, 0, :n], ids)
  np.testing.assert_array_equal(blocks["starts"].numpy()[0, 0, :n], starts)
  np.testing.assert_array_equal(blocks["limits"].numpy()[0, 0, :n], limits)
  # The ü is two bytes: "lies" starts at byte 8, not character 7.
  assert starts[1] == len("Zürich".encode("utf-8")) + 1 == 8


def test_block_table_rejects_unknown_block_id(table):
  with pytest.raises(tf.errors.InvalidArgumentError, match="not in the exported corpus"):
    table.rows_for_block_ids(tf.constant([10, 99], tf.int64))


def test_block_table_built_in_batches_keeps_every_text():
  """Several batches, an empty title and body, multi-byte characters: each text comes back."""
  titles = [["a", "", "Zürich"], ["β"], [], ["last"]]
  bodies = [["one", "two", ""], ["Ελλάδα"], [], ["x" * 5000]]
  table = block_table.BlockTable(np.array([5, 3, 9, 1, 7]),
                                 lambda: iter(zip(titles, bodies)))
  out = table.gather(tf.constant([[4, 2, 0], [3, 1, 2]]))
  flat_titles = sum(titles, [])
  flat_bodies = sum(bodies, [])
  for i, row in enumerate([[4, 2, 0], [3, 1, 2]]):
    assert [t.decode() for t in out["titles"].numpy()[i]] == [flat_titles[r] for r in row]
    assert [t.decode() for t in out["texts"].numpy()[i]] == [flat_bodies[r] for r in row]
  assert int(tf.size(table.text_bytes)) == sum(len(t.encode()) for t in flat_titles + flat_bodies)
  with pytest.raises(ServingExportError, match="5 block ids but 4 texts"):
    block_table.BlockTable(np.array([5, 3, 9, 1, 7]), lambda: iter([(["a"] * 4, ["b"] * 4)]))
  with pytest.raises(ServingExportError, match="duplicate"):
    block_table.BlockTable.from_texts(np.array([1, 1, 2]), ["a", "b", "c"], TEXTS)


def test_check_wordpieces_names_the_block(tokenizer):
  ids = tokenizer.tokenize(TEXTS).to_list()
  block_table.check_wordpieces(tokenizer, [30, 10, 20], [0, 1, 2], TEXTS, ids)
  ids[1] = ids[1][:-1]
  with pytest.raises(ServingExportError, match="Block 10 .row 1."):
    block_table.check_wordpieces(tokenizer, [30, 10, 20], [0, 1, 2], TEXTS, ids)


def test_table_from_index_gives_its_texts_and_stored_wordpieces(tmp_path, tokenizer):
  index = oqt.random_frozen_index(str(tmp_path / "corpus"), tokenizer, seed=0)
  table = block_table.BlockTable.from_index(index, tokenizer)
  rows = np.arange(index.size)[::-1].reshape([3, -1])
  out = table.reader_blocks(tf.constant(rows), tokenizer)
  titles, bodies = index.texts(rows.ravel())
  assert [t.decode() for t in out["titles"].numpy().ravel()] == titles
  assert [t.decode() for t in out["texts"].numpy().ravel()] == bodies
  np.testing.assert_array_equal(out["block_ids"].numpy(), index.block_ids[rows])
  # The wordpieces tokenized at serving time are the corpus' stored ones.
  lengths = out["body_length"].numpy()
  for (i, j), r in np.ndenumerate(rows):
    want = index.lookup.body_ids_np(index.lookup_rows[r])
    np.testing.assert_array_equal(out["body_ids"].numpy()[i, j, :lengths[i, j]], want)
