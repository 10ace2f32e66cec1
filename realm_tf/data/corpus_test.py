"""Tests of the corpus's block split (held-out blocks, and REALM's queries kept apart from the
reader warm-up's) and of the seeded training stream's exact, cheap resume."""
import os

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.data import corpus as corpus_lib
from realm_tf.data import masking
from realm_tf.data.pretrain_pipeline import indexed_masked_examples
from realm_tf.testing.retrieval_fixtures import write_corpus_and_annotations
from realm_tf.text import RealmTokenizer

TOK = RealmTokenizer()
BUCKETS = tf.range(10000, dtype=tf.int64)


def _split(heldout, realm, role):
  return corpus_lib.in_query_split(BUCKETS, heldout, realm, role).numpy()


def test_realm_and_warmup_queries_partition_the_training_blocks():
  held = corpus_lib.is_heldout(BUCKETS, 0.1).numpy()
  realm, warmup, every = (_split(0.1, 0.3, r) for r in ("realm", "warmup", "any"))
  assert held.sum() == 1000 and realm.sum() == 3000 and warmup.sum() == 6000
  # Each block has exactly one role; ICT ("any") reads every block that is not held out.
  np.testing.assert_array_equal(held.astype(int) + realm + warmup, np.ones(10000, int))
  np.testing.assert_array_equal(every, ~held)
  # Without a REALM share, REALM and the warm-up both read every training block.
  np.testing.assert_array_equal(_split(0.1, 0.0, "realm"), ~held)
  np.testing.assert_array_equal(_split(0.1, 0.0, "warmup"), ~held)
  with pytest.raises(ValueError, match="query role"):
    corpus_lib.in_query_split(BUCKETS, 0.1, 0.3, "ict")
  with pytest.raises(ValueError, match="leave the reader warm-up no block"):
    corpus_lib.in_query_split(BUCKETS, 0.3, 0.7, "realm")


def test_masked_queries_of_realm_and_the_warmup_come_from_disjoint_blocks(tmp_path):
  corpus_dir, ann_dir = write_corpus_and_annotations(str(tmp_path), TOK)
  records = list(corpus_lib.read_annotations(ann_dir))
  buckets = sorted(int(corpus_lib.record_bucket(r)) for r in records)
  # Cut between the sorted buckets: one record held out, two for REALM, the rest the warm-up's.
  heldout = (buckets[0] + 1) / 10000
  realm = (buckets[2] + 1) / 10000 - heldout
  masker = masking.Masker(masking.MaskingConfig(query_length=24, max_predictions=6), TOK)

  def blocks(role):
    ds = indexed_masked_examples(ann_dir, masker, 0, 0, 16, heldout, realm, role)
    return {int(b) for b in ds.take(200).map(lambda e: e["block_id"]).as_numpy_iterator()}

  by_role = {role: blocks(role) for role in ("realm", "warmup")}
  ids = {int(corpus_lib.record_bucket(r)): int(r["block_id"]) for r in records}
  assert by_role["realm"] == {ids[buckets[1]], ids[buckets[2]]}
  assert by_role["warmup"] == {ids[b] for b in buckets[3:]}


def test_realm_query_shards_are_the_one_host_stream_split_by_window(tmp_path):
  """Two input pipelines' masked queries: each example as one host masks it at that position."""
  _, ann_dir = write_corpus_and_annotations(str(tmp_path), TOK)
  masker = masking.Masker(masking.MaskingConfig(query_length=24, max_predictions=6), TOK)

  def examples(n, **shard):
    ds = indexed_masked_examples(ann_dir, masker, 0, 0, 4, **shard).take(n)
    return [(int(e["index"]), e["input_word_ids"].numpy().tolist()) for e in ds]

  whole = examples(60)
  for i in (0, 1):
    mine = examples(10, num_shards=2, shard_index=i)
    assert mine == [e for e in whole if e[0] // 4 % 2 == i][:10]


def test_a_split_that_leaves_no_query_is_refused(tmp_path):
  _, ann_dir = write_corpus_and_annotations(str(tmp_path), TOK)
  masker = masking.Masker(masking.MaskingConfig(query_length=24, max_predictions=6), TOK)
  # Every record's bucket falls in REALM's share: the warm-up would have no query.
  top = max(int(corpus_lib.record_bucket(r)) for r in corpus_lib.read_annotations(ann_dir))
  assert top < 9999
  with pytest.raises(ValueError, match="No annotation record .* is a warmup query"):
    indexed_masked_examples(ann_dir, masker, 0, 0, 16, 0.0, (top + 1) / 10000, "warmup")


# --- The seeded, repeated stream: resuming at any position reads at most one shard. ----------

COUNTS = (5, 0, 13, 1, 7)  # uneven shards, one empty: N = 26


def _shards(directory, counts=COUNTS):
  """GZIP shards holding records b"0", b"1", ... in order; returns their paths."""
  paths, n = [], 0
  for i, count in enumerate(counts):
    path = os.path.join(directory, f"s{i}.tfrecord.gz")
    corpus_lib.write_shard(path, [str(n + j).encode() for j in range(count)])
    paths.append(path)
    n += count
  return paths


def _stream_by_skipping(paths, seed, window, start_position):
  """The stream as it was first written: the repeated records skipped from their first one.
  Kept as the reference that resumed training must reproduce element for element."""
  first = start_position // window

  def permute(number, batch):
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(number, tf.int64)])
    return tf.gather(batch, tf.argsort(tf.random.stateless_uniform(tf.shape(batch)[:1],
                                                                   seed=key)))

  records = tf.data.TFRecordDataset(paths, compression_type=corpus_lib.COMPRESSION)
  ds = records.repeat().skip(first * window).batch(window, drop_remainder=True)
  ds = ds.enumerate(start=first).map(permute).unbatch()
  return ds.skip(start_position - first * window)


def _take(ds, n):
  return [int(r) for r in ds.take(n).as_numpy_iterator()]


@pytest.mark.parametrize("window", [1, 4, 7, 13, 26, 40])
def test_the_stream_resumed_anywhere_equals_the_stream_skipped_from_its_start(tmp_path, window):
  paths = _shards(str(tmp_path))
  n = sum(COUNTS)
  positions = {0, 1, window - 1, window, window + 3, n - 1, n, n + 2, 3 * n + 5,
               50 * n + window + 1, 7 * window + 11}
  for seed in (0, 9):
    # The reference from its start, long enough for every position; a start later than 0 reads
    # the same elements (the skipping stream restarted at a position is this one sliced there).
    reference = _take(_stream_by_skipping(paths, seed, window, 0), max(positions) + 2 * n + 3)
    for position in sorted(positions):
      got = _take(corpus_lib.shuffled_stream(paths, COUNTS, seed, window, position), 2 * n + 3)
      assert got == reference[position:position + 2 * n + 3], (seed, window, position)
  # Each window is a permutation of N consecutive stream positions; every record comes round.
  epoch = _take(corpus_lib.shuffled_stream(paths, COUNTS, 3, window, 0), n * window)
  assert sorted(epoch) == sorted(list(range(n)) * window)


def test_resuming_late_reads_only_the_shard_the_position_falls_in(tmp_path):
  """At 50 epochs in, resuming reads only the shard holding the window's first record: every
  other shard is replaced by garbage that a reader skipping from the start would fail on."""
  paths = _shards(str(tmp_path))
  n, window = sum(COUNTS), 4
  position = 50 * n + 22  # its window starts at stream element 50 n + 20, record 20...
  first_record = (position // window * window) % n
  assert first_record == 20 and first_record + window <= n  # ...of shard 4 (records 19-25)
  want = _take(corpus_lib.shuffled_stream(paths, COUNTS, 5, window, position), window - 2)
  for path in paths[:-1]:
    with open(path, "wb") as f:
      f.write(b"not a shard")
  assert _take(corpus_lib.shuffled_stream(paths, COUNTS, 5, window, position), window - 2) == want
  assert set(want) <= set(range(19, 26))
  with pytest.raises(tf.errors.DataLossError):
    _take(_stream_by_skipping(paths, 5, window, position), 1)


def _pairs(ds, n):
  return [(int(p), int(r)) for p, r in ds.take(n).as_numpy_iterator()]


@pytest.mark.parametrize("window", [1, 4, 7])
def test_input_pipelines_read_disjoint_windows_that_together_are_the_stream(tmp_path, window):
  """Shard i of 3 reads windows i, i + 3, ...: each element as the whole stream has it at that
  position, every position of the stream in exactly one shard; each shard resumes from its own
  position."""
  paths = _shards(str(tmp_path))
  per_shard = 4 * window + 5  # past the corpus's 26 records for every window size
  n = 3 * per_shard + 3 * window
  whole = _pairs(corpus_lib.positioned_stream(paths, COUNTS, 2, window), n)
  assert [p for p, _ in whole] == list(range(n))
  assert [r for _, r in whole] == _take(corpus_lib.shuffled_stream(paths, COUNTS, 2, window), n)
  shards = [_pairs(corpus_lib.positioned_stream(paths, COUNTS, 2, window, 0, 3, i), per_shard)
            for i in range(3)]
  for i, shard in enumerate(shards):
    assert shard == [e for e in whole if e[0] // window % 3 == i][:per_shard]
    for cut in (1, window, window + 1, per_shard - 3):  # resume one past a consumed element
      resumed = _pairs(corpus_lib.positioned_stream(paths, COUNTS, 2, window,
                                                    shard[cut - 1][0] + 1, 3, i), 3)
      assert resumed == shard[cut:cut + 3], (i, cut)
  # The first 4 windows of each shard are the first 12 windows of the stream, each once.
  covered = sorted(p for shard in shards for p, _ in shard[:4 * window])
  assert covered == list(range(12 * window))
  with pytest.raises(ValueError, match="shard_index < num_shards"):
    corpus_lib.positioned_stream(paths, COUNTS, 2, window, 0, 3, 3)


def test_the_stream_refuses_counts_that_do_not_describe_its_shards(tmp_path):
  paths = _shards(str(tmp_path), (2, 3))
  with pytest.raises(ValueError, match="2 shard paths but 1 record counts"):
    corpus_lib.shuffled_stream(paths, [5], 0, 4)
  with pytest.raises(ValueError, match="No record to stream"):
    corpus_lib.shuffled_stream(paths, [0, 0], 0, 4)
  with pytest.raises(ValueError, match="window must be >= 1"):
    corpus_lib.shuffled_stream(paths, [2, 3], 0, 0)


def test_the_stream_origin_is_the_shard_and_offset_of_the_windows_first_record():
  """`stream_origin` against a record-by-record walk of COUNTS (an empty shard included)."""
  owner = [k for k, count in enumerate(COUNTS) for _ in range(count)]  # record -> its shard
  n = len(owner)
  for window in (1, 4, 7, 26, 40):
    for position in (0, 3, n - 1, n + 2, 50 * n + 22, 10_000_000 + 5):
      origin = corpus_lib.stream_origin(COUNTS, window, position)
      record = (position // window * window) % n
      assert origin == (position // window, record, owner[record],
                        record - sum(COUNTS[:owner[record]]), n), (window, position)
  # Input pipeline 1 of 3 starts at its own next window (window 5 for a position in window 3).
  assert corpus_lib.stream_origin(COUNTS, 4, 13, 3, 1)[:2] == (4, 16)


def test_a_training_stream_over_a_truncated_shard_is_refused_naming_it(tmp_path):
  """Cut at a record boundary, a GZIP shard reads as fewer records with no error: the stream
  would train on what is left. training_blocks checks the shards' sha256 first."""
  from realm_tf.testing.retrieval_fixtures import make_corpus  # pylint: disable=g-import-not-at-top
  corpus_dir = str(tmp_path / "corpus")
  make_corpus(corpus_dir, shard_sizes=(8, 8, 8))
  shard = os.path.join(corpus_dir, corpus_lib.SHARD_PATTERN.format(1, 3))
  with open(shard, "r+b") as f:
    f.truncate(os.path.getsize(shard) // 2)
  with pytest.raises(corpus_lib.CorpusError, match=f"shard {shard} does not match"):
    corpus_lib.training_blocks(corpus_dir, seed=0, shuffle_window=4, start_position=0,
                               heldout_fraction=0.0)
