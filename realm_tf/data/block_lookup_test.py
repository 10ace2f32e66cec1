"""Tests of the memory-mapped block lookup: the same wordpieces, packings and texts as the corpus
records, id → row mapping, rebuild on a changed corpus, and use inside tf.data."""
import os

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.data import corpus as corpus_lib
from realm_tf.data.block_lookup import BlockLookup, build_lookup, lookup_dir_for
from realm_tf.testing.retrieval_fixtures import make_corpus
from realm_tf.text import pack_document

CLS, SEP = 101, 102


def _records(corpus_dir):
  return [{k: (v.numpy() if not isinstance(v, tf.RaggedTensor) else v.numpy())
           for k, v in b.items()} for b in corpus_lib.read_blocks(corpus_dir)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("lookup") / "corpus")
  ids = make_corpus(d, shard_sizes=(5, 7, 3), seed=3)
  return d, ids, _records(d)


def test_wordpieces_ids_and_texts_equal_the_corpus_records(corpus):
  corpus_dir, ids, records = corpus
  lookup = BlockLookup.open(corpus_dir)
  assert lookup.size == len(ids) == 15
  np.testing.assert_array_equal(lookup.block_ids, ids)
  rows = lookup.rows(tf.constant([[ids[4], 12345], [ids[0], ids[14]]], tf.int64)).numpy()
  np.testing.assert_array_equal(rows, [[4, -1], [0, 14]])
  np.testing.assert_array_equal(lookup.rows_np([ids[9], 7, ids[3]]), [9, -1, 3])
  bodies = lookup.bodies_ragged(tf.range(15)).to_list()
  titles = lookup.titles_ragged(tf.range(15)).to_list()
  for r, rec in enumerate(records):
    assert bodies[r] == rec["body_ids"].tolist()
    assert titles[r] == rec["title_ids"].tolist()
    np.testing.assert_array_equal(lookup.body_ids_np(r), rec["body_ids"])
  got_titles, got_bodies = lookup.texts([14, 2])
  assert got_titles == [records[14]["title"].decode(), records[2]["title"].decode()]
  assert got_bodies == [records[14]["body"].decode(), records[2]["body"].decode()]
  seen = []
  for rows_b, titles_b, bodies_b in lookup.text_batches(batch_size=4):
    assert len(rows_b) == titles_b.shape[0] == bodies_b.shape[0] <= 4
    seen += [b.decode() for b in bodies_b.numpy()]
  assert seen == [rec["body"].decode() for rec in records]


def test_documents_pack_per_lookup_like_the_corpus_records(corpus):
  corpus_dir, _, records = corpus
  lookup = BlockLookup.open(corpus_dir)
  rows = tf.constant([[3, -1, 0], [14, 7, 7]], tf.int64)
  docs = lookup.documents(rows, 24, CLS, SEP)
  titles = tf.ragged.constant([rec["title_ids"].tolist() for rec in records], tf.int32)
  bodies = tf.ragged.constant([rec["body_ids"].tolist() for rec in records], tf.int32)
  want = pack_document(titles, bodies, 24, CLS, SEP)
  for k, v in docs.items():
    assert v.shape == (2, 3, 24) and v.dtype == tf.int32
    np.testing.assert_array_equal(v[0, 0], want[k][3])
    np.testing.assert_array_equal(v[0, 1], np.zeros(24))  # unknown row: padding
    np.testing.assert_array_equal(v[1, 1], want[k][7])
  dense, lengths = lookup.dense_bodies(tf.constant([[1, 2]]), 10)
  assert dense.shape == (1, 2, 10)
  for j, r in enumerate((1, 2)):
    body = records[r]["body_ids"][:10]
    assert lengths[0, j] == len(body)
    np.testing.assert_array_equal(dense[0, j, :len(body)], body)
    np.testing.assert_array_equal(dense[0, j, len(body):], 0)


def test_lookup_runs_inside_tf_data_and_tf_function(corpus):
  corpus_dir, ids, records = corpus
  lookup = BlockLookup.open(corpus_dir)
  ds = tf.data.Dataset.from_tensor_slices(tf.constant(ids[::-1], tf.int64)).batch(4).map(
      lambda b: lookup.bodies_ragged(lookup.rows(b)))
  got = [row for batch in ds for row in batch.to_list()]
  assert got == [rec["body_ids"].tolist() for rec in records[::-1]]
  fn = tf.function(lambda b: lookup.documents(lookup.rows(b), 16, CLS, SEP)["input_mask"])
  assert fn(tf.constant([ids[5]], tf.int64)).numpy().sum() == min(
      16, len(records[5]["title_ids"]) + len(records[5]["body_ids"]) + 3)


def test_files_are_small_and_shared(corpus):
  corpus_dir, _, records = corpus
  lookup = BlockLookup.open(corpus_dir)
  sizes = lookup.nbytes()
  pieces = sum(len(r["title_ids"]) + len(r["body_ids"]) for r in records)
  assert sizes["tokens"] == 2 * pieces  # uint16
  # Everything but the text: the wordpieces plus 30 bytes per block.
  assert sum(v for k, v in sizes.items() if k not in ("text", "text_offsets")) == \
      2 * pieces + 30 * 15 + 8
  assert lookup.path == os.path.abspath(lookup_dir_for(corpus_dir))


def test_a_changed_corpus_rebuilds_its_lookup(tmp_path):
  corpus_dir = str(tmp_path / "c")
  make_corpus(corpus_dir, shard_sizes=(4,), seed=0)
  first = BlockLookup.open(corpus_dir)
  ids = make_corpus(corpus_dir, shard_sizes=(6,), seed=1, doc_prefix="other")
  second = BlockLookup.open(corpus_dir)
  assert first.size == 4 and second.size == 6
  np.testing.assert_array_equal(second.block_ids, ids)
  # An explicit rebuild in place replaces the files.
  build_lookup(corpus_dir)
  np.testing.assert_array_equal(BlockLookup.open(corpus_dir).block_ids, ids)
  assert [n for n in os.listdir(tmp_path / "c") if n.startswith(".")] == []


def test_a_corpus_without_blocks_is_refused(tmp_path):
  corpus_dir = str(tmp_path / "empty")
  make_corpus(corpus_dir, shard_sizes=(0,))
  with pytest.raises(corpus_lib.CorpusError, match="No blocks"):
    BlockLookup.open(corpus_dir)
