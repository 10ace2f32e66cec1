"""Tests of the memory-mapped block lookup: the same wordpieces, packings and texts as the corpus
records, id → row mapping, rebuild on a changed corpus, and use inside tf.data."""
import json
import os
import shutil
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.data import block_lookup
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
  # An explicit rebuild keeps the lookup of the same corpus in place.
  build_lookup(corpus_dir)
  np.testing.assert_array_equal(BlockLookup.open(corpus_dir).block_ids, ids)
  assert [n for n in os.listdir(tmp_path / "c") if n.startswith(".")] == []


def test_a_corpus_without_blocks_is_refused(tmp_path):
  corpus_dir = str(tmp_path / "empty")
  make_corpus(corpus_dir, shard_sizes=(0,))
  with pytest.raises(corpus_lib.CorpusError, match="No blocks"):
    BlockLookup.open(corpus_dir)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_a_truncated_shard_is_refused_naming_the_shard(tmp_path, keep):
  """Cut at a record boundary a GZIP shard reads as fewer records; cut inside a record, as a
  DataLossError naming no file: both are refused naming the shard."""
  corpus_dir = str(tmp_path / "corpus")
  make_corpus(corpus_dir, shard_sizes=(8, 8, 8))
  shard = os.path.join(corpus_dir, corpus_lib.SHARD_PATTERN.format(1, 3))
  with open(shard, "r+b") as f:
    f.truncate(int(os.path.getsize(shard) * keep))
  with pytest.raises(corpus_lib.CorpusError, match=f"shard {shard} does not match"):
    build_lookup(corpus_dir, str(tmp_path / "lookup"))
  assert not os.path.exists(tmp_path / "lookup")  # nothing published


def test_a_fresh_lookup_is_kept_and_only_a_stale_one_replaced(tmp_path):
  """Another process may have just built the lookup and be opening it: building again (the
  explicit call, or a concurrent builder that finishes second) keeps the one there. A lookup of
  another corpus is replaced, with nothing left beside it."""
  corpus_dir = str(tmp_path / "c")
  make_corpus(corpus_dir, shard_sizes=(4,), seed=0)
  lookup = BlockLookup.open(corpus_dir)
  texts = lookup.texts([0, 2])
  in_use = os.path.join(lookup.path, "in-use-by-another-process")
  open(in_use, "w").close()
  inode = os.stat(lookup.path).st_ino
  assert build_lookup(corpus_dir) == lookup_dir_for(corpus_dir)
  assert os.path.exists(in_use) and os.stat(lookup.path).st_ino == inode
  # A builder that finds a fresh lookup in place as it publishes drops its own copy.
  fingerprint = corpus_lib.load_manifest(corpus_dir)["fingerprint"]
  mine = str(tmp_path / "c" / ".lookup-mine")
  shutil.copytree(lookup.path, mine)
  os.remove(os.path.join(mine, os.path.basename(in_use)))
  block_lookup._publish_dir(mine, lookup.path, fingerprint)  # pylint: disable=protected-access
  assert os.path.exists(in_use) and os.stat(lookup.path).st_ino == inode
  shutil.rmtree(mine)
  assert BlockLookup.open(corpus_dir).texts([0, 2]) == texts

  meta_path = os.path.join(lookup.path, block_lookup.META)
  with open(meta_path) as f:
    meta = json.load(f)
  with open(meta_path, "w") as f:
    json.dump(dict(meta, corpus_fingerprint="another corpus"), f)
  assert BlockLookup.open(corpus_dir).texts([0, 2]) == texts
  assert not os.path.exists(in_use)
  with open(meta_path) as f:
    assert json.load(f)["corpus_fingerprint"] == fingerprint
  assert [n for n in os.listdir(tmp_path / "c") if n.startswith(".")] == []


def test_threads_open_the_text_files_once(corpus, tmp_path, monkeypatch):
  """tf.data calls the lookup from several threads at once: the files it opens on first use are
  opened once, not once per thread that got there first (the others' descriptors leaked): 8
  threads end up with the descriptors one thread opens. Opening is slowed down (the real
  `os.open`, after a sleep) so the threads meet there."""
  corpus_dir, _, records = corpus
  alone, shared = (BlockLookup(shutil.copytree(lookup_dir_for(corpus_dir), str(tmp_path / name)))
                   for name in ("alone", "shared"))
  real_open = os.open

  def slow_open(path, *args, **kwargs):
    time.sleep(0.2)
    return real_open(path, *args, **kwargs)

  def open_files(lookup):
    """{file name: descriptors this process holds on it} under `lookup`'s directory."""
    names = []
    for fd in os.listdir("/proc/self/fd"):
      try:
        names.append(os.readlink(f"/proc/self/fd/{fd}"))
      except OSError:
        pass  # closed meanwhile
    return {os.path.basename(n): names.count(n) for n in names
            if n.startswith(lookup.path + os.sep)}

  def read(lookup):
    return lookup.text_bytes([0, 2]), lookup.text_bytes([3, 4])

  monkeypatch.setattr(os, "open", slow_open)
  want = read(alone)
  start, got = threading.Barrier(8), []

  def read_together():
    start.wait()
    got.append(read(shared))

  threads = [threading.Thread(target=read_together) for _ in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  monkeypatch.undo()
  assert want == tuple(([records[r]["title"] for r in rows], [records[r]["body"] for r in rows])
                       for rows in ([0, 2], [3, 4]))
  assert got == [want] * 8
  assert open_files(alone)["text.bin"] == 1
  assert open_files(shared) == open_files(alone)
  del alone, shared
  assert not open_files(BlockLookup(str(tmp_path / "shared")))


def test_texts_of_unknown_rows_are_empty_and_many_rows_read_in_linear_time(corpus, tmp_path):
  """Rows < 0 (unknown block ids) give empty texts, wherever they are in the batch; a row past
  the last is an IndexError. 4,000 scattered rows of 2.5 KB of text read in well under 1.5 s:
  each row is one read into its own bytes (growing one buffer row by row copied it all again at
  every row: 20 GB for these rows)."""
  corpus_dir, _, records = corpus
  lookup = BlockLookup.open(corpus_dir)
  title, body = lambda r: records[r]["title"], lambda r: records[r]["body"]
  assert lookup.text_bytes([2, -1, 0]) == ([title(2), b"", title(0)], [body(2), b"", body(0)])
  assert lookup.text_bytes([-1, 0, 1]) == ([b"", title(0), title(1)], [b"", body(0), body(1)])
  assert lookup.texts([-1]) == ([""], [""])
  with pytest.raises(IndexError, match="row 15 is past its last row"):
    lookup.text_bytes([0, 15])

  long_dir = str(tmp_path / "long")
  os.makedirs(long_dir)
  texts = [(f"Title {i}".encode(), (f"body {i} " * 400).encode()) for i in range(3)]
  shard = corpus_lib.write_shard(
      os.path.join(long_dir, corpus_lib.SHARD_PATTERN.format(0, 1)),
      [corpus_lib.block_example(corpus_lib.block_id_for(f"d{i}", 0), f"d{i}", t.decode(),
                                b.decode(), [1000 + i], [2000 + i]) for i, (t, b) in enumerate(texts)])
  corpus_lib.write_manifest(long_dir, [shard], "vocab")
  long_lookup = BlockLookup.open(long_dir)
  rows = np.tile([0, 2], 2_000)
  began = time.time()
  titles, bodies = long_lookup.text_bytes(rows)
  seconds = time.time() - began
  assert titles == [texts[0][0], texts[2][0]] * 2_000
  assert bodies == [texts[0][1], texts[2][1]] * 2_000
  assert seconds < 1.5, seconds
