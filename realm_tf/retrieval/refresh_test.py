"""Tests for the index-refresh job: publishing, bad inputs, watch loop, restarts, workers."""
import os
import shutil

import numpy as np
import pytest

from realm_tf.data import corpus as corpus_lib
from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.retrieval import embedder_export as ee
from realm_tf.retrieval import refresh
from realm_tf.retrieval.scann_resources import release_resource
from realm_tf.testing import retrieval_fixtures as testing
from realm_tf.testing.retrieval_fixtures import copy_export


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  root = tmp_path_factory.mktemp("refresh")
  model_dir = str(root / "model")
  export = ee.export_embedder(testing.make_retriever(seed=4), model_dir, 100)
  corpus_dir = str(root / "corpus")
  ids = testing.make_corpus(corpus_dir, (8, 8, 8), seed=6)
  return {"root": root, "model_dir": model_dir, "export": export, "corpus": corpus_dir,
          "ids": np.array(ids)}


def config(env, index_dir, **kw):
  kw.setdefault("model_dir", env["model_dir"])
  kw.setdefault("corpus_dir", env["corpus"])
  return refresh.RefreshConfig(index_dir=str(index_dir), batch_size=8, grace_seconds=0,
                               poll_min_seconds=1, poll_max_seconds=4, **kw)


def test_once_publishes_a_complete_bundle(env, tmp_path):
  r = refresh.IndexRefresher(config(env, tmp_path))
  b = r.run_once()
  assert b.version == 1 and bundle_lib.latest(str(tmp_path)).version == 1
  m = b.manifest
  corpus_manifest = corpus_lib.load_manifest(env["corpus"])
  assert m["step"] == 100 and m["source_export"] == env["export"]
  assert m["corpus_fingerprint"] == corpus_manifest["fingerprint"]
  assert m["recall_at_10"] == 1.0 and m["recall_sample_size"] == 24 and m["recall_k"] == 10
  assert m["searcher"]["config"]["mode"] == "brute_force" and m["num_rows"] == 24
  # The searcher built for the recall check searched, and its native index is gone once published.
  assert not release_resource(m["searcher"]["shared_name"])
  b = bundle_lib.latest(str(tmp_path), load=True)
  np.testing.assert_array_equal(b.block_ids, env["ids"])
  # Each document is its own best match among near-identical queries built from its embedding.
  rows, scores = b.searcher.search(np.asarray(b.embeddings), 1)
  ref = (np.asarray(b.embeddings) @ np.asarray(b.embeddings).T).max(axis=1)
  np.testing.assert_allclose(scores.numpy()[:, 0], ref, rtol=1e-5)
  assert r.run_once() is None  # up to date: nothing republished
  assert bundle_lib.list_versions(str(tmp_path)) == [1]
  assert os.listdir(os.path.join(str(tmp_path), refresh.WORK_SUBDIR)) == []  # parts removed


def test_a_refresh_reads_each_corpus_manifest_once(env, tmp_path, monkeypatch):
  reads = []
  real = corpus_lib.load_manifest
  monkeypatch.setattr(corpus_lib, "load_manifest", lambda d: reads.append(d) or real(d))
  assert refresh.IndexRefresher(config(env, tmp_path)).run_once().version == 1
  assert reads == [os.path.abspath(env["corpus"])]


def test_refresh_holds_its_export_against_pruning(env, tmp_path):
  leases = os.path.join(ee.exports_dir(env["model_dir"]), ee.LEASES_SUBDIR)
  held = []
  refresh.IndexRefresher(config(env, tmp_path)).refresh(
      env["export"], on_part_done=lambda shard: held.append(os.listdir(leases)))
  assert len(held) == 3 and all(len(h) == 1 and h[0].startswith("00000100.") for h in held)
  assert os.listdir(leases) == []  # let go once published


def test_bad_inputs_publish_nothing_and_keep_the_live_bundle(env, tmp_path):
  index_dir = tmp_path / "index"
  refresh.IndexRefresher(config(env, index_dir)).run_once()
  root = tmp_path

  def fails(error, match, **kw):
    with pytest.raises(error, match=match):
      refresh.IndexRefresher(config(env, index_dir, **kw)).run_once()
    assert bundle_lib.list_versions(str(index_dir)) == [1]
    assert bundle_lib.latest(str(index_dir), load=True).version == 1

  long_docs = str(root / "long")
  testing.make_corpus(long_docs, (4,), max_block_length=288)
  fails(ee.ExportError, rf"doc_seq_length=32 .*{long_docs}/manifest.json has max_block_length=288",
        corpus_dir=long_docs)
  other_vocab = str(root / "vocab")
  testing.make_corpus(other_vocab, (4,), vocab_fingerprint="0" * 64)
  fails(ee.ExportError, rf"Vocabulary mismatch: {env['export']}/realm_export.json .*"
                        rf"{other_vocab}/manifest.json", corpus_dir=other_vocab)
  empty = str(root / "empty")
  testing.make_corpus(empty, ())
  fails(corpus_lib.CorpusError, f"{empty}/manifest.json is empty", corpus_dir=empty)
  fails(ee.ExportError, f"No embedder export under {root / 'nomodel'}/embedder_exports",
        model_dir=str(root / "nomodel"))
  model_dir = str(root / "model")
  shutil.copytree(env["model_dir"], model_dir)
  copy_export(env["export"], model_dir, 150)  # a new export, so the corpus is read again
  corrupt = str(root / "corrupt")
  shutil.copytree(env["corpus"], corrupt)
  shard = os.path.join(corrupt, "blocks-00002-of-00003.tfrecord.gz")
  with open(shard, "r+b") as f:
    f.seek(40)
    f.write(b"\xff\xff\xff\xff")
  fails(corpus_lib.CorpusError, f"{shard} does not match the sha256", corpus_dir=corrupt,
        model_dir=model_dir)
  half = copy_export(env["export"], model_dir, 200, drop=[ee.METADATA])
  fails(ee.ExportError, f"{half} is incomplete: {half}/realm_export.json is missing",
        model_dir=model_dir)
  shutil.rmtree(half)
  half = copy_export(env["export"], model_dir, 300, drop=["variables"])
  fails(ee.ExportError, f"{half}/variables is missing", model_dir=model_dir)
  shutil.rmtree(half)
  copy_export(env["export"], model_dir, 400)
  fails(refresh.RecallTooLowError, r"recall@10 = 1.0000 .* below --min_recall=1.01",
        model_dir=model_dir, min_recall=1.01)


def test_watch_loop_backs_off_and_stops_when_training_is_done(env, tmp_path):
  model_dir = str(tmp_path / "model")
  shutil.copytree(env["model_dir"], model_dir)
  sleeps = []

  def fake_sleep(seconds):
    sleeps.append(seconds)
    if len(sleeps) == 2:
      copy_export(env["export"], model_dir, 200)        # the trainer exports again
    if len(sleeps) == 4:
      copy_export(env["export"], model_dir, 300, drop=[ee.METADATA])  # a broken export ...
      open(os.path.join(model_dir, ee.TRAINING_DONE), "w").close()     # ... then training ends

  r = refresh.IndexRefresher(config(env, tmp_path / "index", model_dir=model_dir),
                             sleep=fake_sleep)
  assert r.run() == 2
  # Back-off doubles while idle (1, 2, 4, capped at 4) and resets after work.
  assert sleeps == [1, 2, 1, 2]
  index_dir = str(tmp_path / "index")
  assert bundle_lib.list_versions(index_dir) == [1, 2]
  assert bundle_lib.latest(index_dir).step == 200  # the broken export 300 was not published


def test_refresh_killed_mid_way_is_finished_first_though_a_newer_export_appeared(env, tmp_path):
  model_dir, index_dir = str(tmp_path / "model"), str(tmp_path / "index")
  shutil.copytree(env["model_dir"], model_dir)
  export = ee.export_path(model_dir, 100)
  r = refresh.IndexRefresher(config(env, index_dir, model_dir=model_dir))

  def killed(shard):
    raise KeyboardInterrupt(f"killed after shard {shard}")

  with pytest.raises(KeyboardInterrupt):
    r.refresh(export, on_part_done=killed)
  assert bundle_lib.list_versions(index_dir) == []
  leases = os.path.join(ee.exports_dir(model_dir), ee.LEASES_SUBDIR)
  assert [n[:9] for n in os.listdir(leases)] == ["00000100."]  # the round still holds it
  copy_export(export, model_dir, 200)  # the trainer moved on meanwhile
  r = refresh.IndexRefresher(config(env, index_dir, model_dir=model_dir))  # a restarted process
  b = r.run_once()
  assert b.step == 100 and b.num_rows == 24  # the round under way, not the newest export
  assert r.last_stats.skipped == [0] and r.last_stats.embedded == [1, 2]
  assert os.listdir(leases) == [] and os.listdir(os.path.join(index_dir, refresh.WORK_SUBDIR)) == []
  assert r.run_once().step == 200


def test_independent_workers(env, tmp_path):
  worker1 = refresh.IndexRefresher(config(env, tmp_path, num_shards=2, shard_index=1))
  sleeps = []

  def other_worker_runs_while_chief_sleeps(seconds):
    sleeps.append(seconds)
    assert worker1.run_once() is None  # worker 1 embeds its shard, never publishes
    assert worker1.last_stats.embedded == [1]

  chief = refresh.IndexRefresher(config(env, tmp_path, num_shards=2, shard_index=0),
                                 sleep=other_worker_runs_while_chief_sleeps)
  b = chief.run_once()
  assert sleeps == [1] and chief.last_stats.embedded == [0, 2]
  np.testing.assert_array_equal(b.block_ids, env["ids"])
  assert b.manifest["num_workers"] == 2
  assert not worker1.needs_refresh(env["export"])


def test_exports_of_the_watched_run_replace_a_bundle_from_another_run(env, tmp_path):
  # The first bundle comes from a warm-start run (ICT) at step 100; the trainer's own exports
  # start again at small steps and must still be picked up.
  index_dir = tmp_path / "index"
  refresh.IndexRefresher(config(env, index_dir)).run_once()
  trainer_dir = str(tmp_path / "realm")
  r = refresh.IndexRefresher(config(env, index_dir, model_dir=trainer_dir))
  later = ee.export_embedder(testing.make_retriever(seed=5), trainer_dir, 30)
  assert r.needs_refresh(later)
  b = r.run_once()
  assert b is not None and b.step == 30 and b.manifest["source_export"] == later
  assert not r.needs_refresh(later)


def test_object_store_paths_publish_exports_and_bundles_without_directory_renames(env, tmp_path):
  # ram:// is TF's in-memory filesystem: like gs://, it has no atomic directory rename, so the
  # export and the bundle are written in place with their metadata / manifest written last.
  uid = tmp_path.name
  model_dir, index_dir = f"ram://{uid}/model", f"ram://{uid}/index"
  export = ee.export_embedder(testing.make_retriever(seed=4), model_dir, 100)
  assert export == f"{model_dir}/embedder_exports/00000100"
  assert ee.read_metadata(export)["step"] == 100
  # An export still being written (no metadata yet) is not offered to readers.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.io.gfile.makedirs(f"{model_dir}/embedder_exports/00000200")
  assert ee.latest_export(model_dir) == export

  b = refresh.IndexRefresher(config(env, index_dir, model_dir=model_dir)).run_once()
  assert b.version == 1 and b.path == f"{index_dir}/00000001"
  live = bundle_lib.latest(index_dir, load=True)
  assert live.manifest["source_export"] == export and live.num_rows == 24
  np.testing.assert_array_equal(live.block_ids, env["ids"])
  # Same embedder, same corpus: the same vectors as the local bundle built from the local export.
  local = refresh.IndexRefresher(config(env, tmp_path / "local")).run_once()
  np.testing.assert_allclose(np.asarray(live.embeddings), np.asarray(local.embeddings), atol=1e-5)
  rows, _ = live.searcher.search(np.asarray(live.embeddings)[:3], 1)
  assert rows.numpy()[:, 0].tolist() == [0, 1, 2]
