"""Tests for corpus embedding: correctness, replicas, worker shards, restart, bad shards."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from realm_tf.data import corpus as corpus_lib
from realm_tf.retrieval import embed_corpus as ec
from realm_tf.retrieval import embedder_export as ee
from realm_tf.testing import retrieval_fixtures as testing
from realm_tf.text import pack_document


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("embed")
  retriever = testing.make_retriever(seed=2)
  export = ee.export_embedder(retriever, str(root / "model"), 7)
  corpus_dir = str(root / "corpus")
  ids = testing.make_corpus(corpus_dir, (9, 5, 11), seed=3)
  # Reference: the retriever itself on every block, packed the way the export is documented.
  ref = []
  for ex in corpus_lib.read_blocks(corpus_dir).ragged_batch(100):
    packed = pack_document(ex["title_ids"], ex["body_ids"], testing.DOC_LEN, 101, 102)
    ref.append(retriever.embed_documents(packed).numpy())
  return {"root": root, "export": export, "corpus": corpus_dir, "ids": np.array(ids),
          "ref": np.concatenate(ref), "embedder": ee.load_embedder(export)}


def test_embeds_every_block_in_manifest_order(setup, tmp_path):
  manifest = corpus_lib.load_manifest(setup["corpus"])
  stats = ec.embed_shards(setup["embedder"], setup["corpus"], str(tmp_path), batch_size=4)
  assert stats.embedded == [0, 1, 2] and stats.skipped == [] and stats.num_blocks == 25
  ids, emb = ec.merge_parts(str(tmp_path), manifest, 128, setup["corpus"])
  np.testing.assert_array_equal(ids, setup["ids"])
  np.testing.assert_allclose(emb, setup["ref"], atol=1e-5)


@pytest.mark.slow  # covered more cheaply elsewhere; make test-slow


def test_independent_workers_split_shards_and_merge(setup, tmp_path):
  manifest = corpus_lib.load_manifest(setup["corpus"])
  assert ec.assigned_shards(3, 2, 0) == [0, 2] and ec.assigned_shards(3, 2, 1) == [1]
  s1 = ec.embed_shards(setup["embedder"], setup["corpus"], str(tmp_path), num_shards=2,
                       shard_index=1, batch_size=8)
  assert s1.embedded == [1]
  with pytest.raises(corpus_lib.CorpusError, match=r"part-00000.npz .*blocks-00000-of-00003"):
    ec.merge_parts(str(tmp_path), manifest, 128, setup["corpus"])
  s0 = ec.embed_shards(setup["embedder"], setup["corpus"], str(tmp_path), num_shards=2,
                       shard_index=0, batch_size=8)
  assert s0.embedded == [0, 2]
  ids, emb = ec.merge_parts(str(tmp_path), manifest, 128)
  np.testing.assert_array_equal(ids, setup["ids"])
  np.testing.assert_allclose(emb, setup["ref"], atol=1e-5)


def test_interrupted_run_resumes_and_skips_finished_shards(setup, tmp_path):
  work = str(tmp_path)

  def crash_after_first(shard):
    raise KeyboardInterrupt(f"killed after shard {shard}")

  with pytest.raises(KeyboardInterrupt):
    ec.embed_shards(setup["embedder"], setup["corpus"], work, on_part_done=crash_after_first)
  assert sorted(os.listdir(work)) == ["part-00000.npz"]
  mtime = os.stat(ec.part_path(work, 0)).st_mtime_ns
  # A kill in the middle of writing leaves only a temp file; it is ignored.
  with open(ec.part_path(work, 1) + ".tmp-deadbeef", "wb") as f:
    f.write(b"PK\x03\x04 half a zip")
  stats = ec.embed_shards(setup["embedder"], setup["corpus"], work)
  assert stats.skipped == [0] and stats.embedded == [1, 2]
  assert os.stat(ec.part_path(work, 0)).st_mtime_ns == mtime
  # A damaged part is not trusted: it is embedded again.
  with open(ec.part_path(work, 2), "wb") as f:
    f.write(b"garbage")
  stats = ec.embed_shards(setup["embedder"], setup["corpus"], work)
  assert stats.skipped == [0, 1] and stats.embedded == [2]
  ids, emb = ec.merge_parts(work, corpus_lib.load_manifest(setup["corpus"]), 128)
  np.testing.assert_allclose(emb, setup["ref"], atol=1e-5)


def test_corrupt_shard_and_empty_corpus_are_named(setup, tmp_path):
  bad = str(tmp_path / "bad")
  testing.make_corpus(bad, (4, 4), seed=5)
  shard = os.path.join(bad, "blocks-00001-of-00002.tfrecord.gz")
  data = bytearray(open(shard, "rb").read())
  data[len(data) // 2] ^= 0xFF
  open(shard, "wb").write(bytes(data))
  with pytest.raises(corpus_lib.CorpusError, match=f"{shard} does not match the sha256"):
    ec.embed_shards(setup["embedder"], bad, str(tmp_path / "w"))
  empty = str(tmp_path / "empty")
  testing.make_corpus(empty, (), seed=0)
  with pytest.raises(corpus_lib.CorpusError, match=f"{empty}/manifest.json is empty"):
    ec.embed_shards(setup["embedder"], empty, str(tmp_path / "w2"))
  with pytest.raises(corpus_lib.CorpusError, match="No corpus manifest"):
    ec.embed_shards(setup["embedder"], str(tmp_path / "nothing"), str(tmp_path / "w3"))


@pytest.mark.slow  # covered more cheaply elsewhere; make test-slow


def test_two_replicas_on_logical_cpus_match_one(setup, tmp_path):
  out = str(tmp_path / "out.npz")
  script = textwrap.dedent(f"""
      import numpy as np
      from realm_tf.utils.strategy import get_strategy
      strategy = get_strategy(strategy="mirrored", num_cpu_devices=2)
      from realm_tf.data import corpus as corpus_lib
      from realm_tf.retrieval import embed_corpus as ec, embedder_export as ee
      assert strategy.num_replicas_in_sync == 2
      with strategy.scope():
        emb = ee.load_embedder({setup["export"]!r})
      stats = ec.embed_shards(emb, {setup["corpus"]!r}, {str(tmp_path / "w")!r}, strategy,
                              batch_size=3)
      ids, e = ec.merge_parts({str(tmp_path / "w")!r}, corpus_lib.load_manifest({setup["corpus"]!r}), 128)
      np.savez({out!r}, ids=ids, emb=e)
  """)
  subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
  got = np.load(out)
  np.testing.assert_array_equal(got["ids"], setup["ids"])
  np.testing.assert_allclose(got["emb"], setup["ref"], atol=1e-5)
