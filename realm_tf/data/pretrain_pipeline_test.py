"""Tests of retrieval featurization (own-block removal, the null document, the joint layout) and
of the masked query stream's restore (it reads no shard before its position's window)."""
import json
import os

import numpy as np
import tensorflow as tf

from realm_tf.data import corpus
from realm_tf.data import masking
from realm_tf.data.block_lookup import BlockLookup
from realm_tf.data.pretrain_pipeline import (PipelineConfig, drop_own_block, featurize,
                                             indexed_masked_examples)
from realm_tf.text import RealmTokenizer, pack_query

TOK = RealmTokenizer()
CFG = PipelineConfig(batch_size=2, num_candidates=3, query_seq_length=12, doc_seq_length=16,
                     joint_seq_length=24)


def _corpus(tmp):
  docs = [("Paris", "Paris is the capital of France."), ("Rome", "Rome is in Italy."),
          ("Oslo", "Oslo is in Norway."), ("Bern", "Bern is in Switzerland.")]
  records = []
  for i, (title, body) in enumerate(docs):
    t = TOK.tokenize([title])[0].numpy().tolist()
    b = TOK.tokenize([body])[0].numpy().tolist()
    records.append(corpus.block_example(100 + i, f"d{i}", title, body, t, b))
  shard = corpus.write_shard(os.path.join(tmp, corpus.SHARD_PATTERN.format(0, 1)), records)
  corpus.write_manifest(tmp, [shard], TOK.fingerprint, max_block_length=16)
  return tmp


def test_removes_own_block_and_keeps_rank_order():
  ids, valid = drop_own_block(tf.constant([[5, 7, 9], [4, 6, 8]], tf.int64),
                              tf.constant([7, -1], tf.int64), keep=2)
  np.testing.assert_array_equal(ids, [[5, 9], [4, 6]])
  np.testing.assert_array_equal(valid, [[True, True], [True, True]])


def test_marks_missing_candidates_invalid():
  ids, valid = drop_own_block(tf.constant([[7, 5]], tf.int64), tf.constant([7], tf.int64), 2)
  np.testing.assert_array_equal(ids[0, 0], 5)
  np.testing.assert_array_equal(valid, [[True, False]])


def test_null_document_first_own_block_dropped_joint_layout(tmp_path):
  lookup = BlockLookup.open(_corpus(str(tmp_path)))
  queries = TOK.tokenize(["where is paris", "oslo city"])
  packed = pack_query(queries, CFG.query_seq_length, TOK.cls_id, TOK.sep_id)
  batch = dict(packed)
  batch.update(masked_positions=tf.constant([[1], [2]], tf.int32),
               masked_ids=tf.constant([[2073], [2103]], tf.int32),
               masked_weights=tf.ones([2, 1]), block_id=tf.constant([100, 102], tf.int64),
               index=tf.constant([0, 1], tf.int64))
  # Query 0 retrieved its own block (100) first; query 1 retrieved an unknown id (999).
  retrieved = tf.constant([[100, 101, 103], [102, 999, 101]], tf.int64)
  out = featurize(batch, retrieved, lookup, CFG, TOK.cls_id, TOK.sep_id)

  assert out["candidates/input_word_ids"].shape == [2, 3, 16]
  assert out["joint/input_word_ids"].shape == [2, 3, 24]
  np.testing.assert_array_equal(out["retrieved_block_ids"], [[101, 103], [999, 101]])
  np.testing.assert_array_equal(out["candidate_mask"], [[1, 1, 1], [1, 0, 1]])
  # Null document: [CLS] [SEP] [SEP].
  null = out["candidates/input_word_ids"][0, 0].numpy()
  np.testing.assert_array_equal(null[:3], [TOK.cls_id, TOK.sep_id, TOK.sep_id])
  np.testing.assert_array_equal(null[3:], np.zeros(13))
  # Candidate 1 of query 0 is Rome's block: [CLS] rome [SEP] rome is in italy . [SEP]
  rome = TOK.tokens(out["candidates/input_word_ids"][0, 1]).numpy()
  assert [t.decode() for t in rome[:10]] == ["[CLS]", "rome", "[SEP]", "rome", "is", "in",
                                             "italy", ".", "[SEP]", "[PAD]"]
  # Joint input: [CLS] x [SEP] body [SEP], title dropped; x positions match the query's.
  joint = [t.decode() for t in TOK.tokens(out["joint/input_word_ids"][0, 1]).numpy()]
  assert joint[:11] == ["[CLS]", "where", "is", "paris", "[SEP]", "rome", "is", "in", "italy",
                        ".", "[SEP]"]
  np.testing.assert_array_equal(out["joint/input_word_ids"][0, 1, :5],
                                packed["input_word_ids"][0, :5])
  null_joint = [t.decode() for t in TOK.tokens(out["joint/input_word_ids"][0, 0]).numpy()]
  assert null_joint[:6] == ["[CLS]", "where", "is", "paris", "[SEP]", "[SEP]"]
  np.testing.assert_array_equal(out["joint/input_type_ids"][0, 1, :11], [0] * 5 + [1] * 6)
  np.testing.assert_array_equal(out["data_position"], [2, 2])


def _annotation_shards(directory, num_shards, per_shard):
  """Annotation shards of records "Record i ..." whose block ids put even records in REALM's
  query buckets (3000) and odd ones in the held-out buckets (500); returns the directory."""
  entries, i = [], 0
  for k in range(num_shards):
    records = []
    for _ in range(per_shard):
      text = f"Record {i} was filed in {1000 + i}. It moved to Paris in {1500 + i}."
      cut = text.index(". ") + 1
      spans = [(text.index(str(1000 + i)), text.index(str(1000 + i)) + 4),
               (text.index("Paris"), text.index("Paris") + 5),
               (text.index(str(1500 + i)), text.index(str(1500 + i)) + 4)]
      block_id = 10000 * (i + 1) + (3000 if i % 2 == 0 else 500)
      records.append(corpus.annotation_example(f"T{i}", text, [(0, cut), (cut + 1, len(text))],
                                               spans, ["DATE", "GPE", "DATE"], block_id))
      i += 1
    entry = corpus.write_shard(
        os.path.join(directory, corpus.ANNOTATION_SHARD_PATTERN.format(k, num_shards)), records)
    entry["num_records"] = entry.pop("num_blocks")
    entries.append(entry)
  with open(os.path.join(directory, corpus.ANNOTATION_MANIFEST), "w") as f:
    json.dump({"num_records": i, "shards": entries}, f)
  return directory


def test_restore_reads_no_shard_before_the_positions_window(tmp_path):
  """Training's masked queries restored 50 epochs in: every shard before the one holding the
  position's window is replaced by bytes no reader can parse, and the restored stream is the
  same; a restore that read any record of those shards (the stream's own skip, or the search for
  a record to train on) fails on them."""
  ann_dir = _annotation_shards(str(tmp_path), num_shards=10, per_shard=6)  # 60 records
  window, position = 4, 50 * 60 + 17
  origin = corpus.stream_origin([6] * 10, window, position)
  # Its window holds records 16-19: it starts in shard 2, after 4 of that shard's records.
  assert (origin.first_record, origin.shard, origin.skip_in_shard) == (16, 2, 4)
  masker = masking.Masker(masking.MaskingConfig(query_length=24, max_predictions=6), TOK)

  def restored():
    ds = indexed_masked_examples(ann_dir, masker, position, seed=3, shuffle_window=window,
                                 heldout_fraction=0.1, realm_query_fraction=0.5, role="realm")
    return [(int(e["index"]), int(e["block_id"]), e["input_word_ids"].numpy().tolist())
            for e in ds.take(6)]

  want = restored()
  for k in range(origin.shard):
    with open(os.path.join(ann_dir, corpus.ANNOTATION_SHARD_PATTERN.format(k, 10)), "wb") as f:
      f.write(b"not a shard")
  assert restored() == want
  assert all(index >= position for index, _, _ in want)
  # Only REALM's queries (even records), all read from record 16 on.
  records = sorted(block_id // 10000 - 1 for _, block_id, _ in want)
  assert all(r % 2 == 0 and r >= 16 for r in records), records
