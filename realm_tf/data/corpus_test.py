"""Tests of the corpus's block split: held-out blocks, and REALM's queries kept apart from the
reader warm-up's."""
import numpy as np
import pytest
import tensorflow as tf

from realm_tf.data import corpus as corpus_lib
from realm_tf.data import masking
from realm_tf.data.pretrain_pipeline import indexed_masked_examples
from realm_tf.data.pretrain_pipeline_service_test import _write_corpus_and_annotations
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
  corpus_dir, ann_dir = _write_corpus_and_annotations(str(tmp_path), TOK)
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


def test_a_split_that_leaves_no_query_is_refused(tmp_path):
  _, ann_dir = _write_corpus_and_annotations(str(tmp_path), TOK)
  masker = masking.Masker(masking.MaskingConfig(query_length=24, max_predictions=6), TOK)
  # Every record's bucket falls in REALM's share: the warm-up would have no query.
  top = max(int(corpus_lib.record_bucket(r)) for r in corpus_lib.read_annotations(ann_dir))
  assert top < 9999
  with pytest.raises(ValueError, match="No annotation record .* is a warmup query"):
    indexed_masked_examples(ann_dir, masker, 0, 0, 16, 0.0, (top + 1) / 10000, "warmup")
