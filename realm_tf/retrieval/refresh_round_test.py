"""Tests for refresh rounds: declaring, resuming and ending them, the trainer's step, and two
shard workers keeping up with a trainer that exports faster than a refresh takes."""
import os
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.retrieval import embedder_export as ee
from realm_tf.retrieval import refresh
from realm_tf.retrieval import refresh_round
from realm_tf.testing import retrieval_fixtures as testing
from realm_tf.testing.retrieval_fixtures import copy_export


@pytest.fixture(scope="module")
def src(tmp_path_factory):
  """A tiny embedder export (step 0) and a 4-shard corpus of 24 blocks, shared by the tests."""
  root = tmp_path_factory.mktemp("rounds")
  corpus_dir = str(root / "corpus")
  ids = testing.make_corpus(corpus_dir, (6, 6, 6, 6), seed=6)
  return {"export": ee.export_embedder(testing.make_retriever(seed=4), str(root / "src"), 0),
          "corpus": corpus_dir, "ids": ids}


def _publish_copy(src: str, model_dir: str, step: int) -> str:
  """Publishes a copy of export `src` as step `step` the way the trainer does: whole, by one
  rename (a watcher never sees it half-copied)."""
  staged = copy_export(src, os.path.join(os.path.dirname(model_dir), "staging"), step)
  os.makedirs(ee.exports_dir(model_dir), exist_ok=True)
  os.rename(staged, ee.export_path(model_dir, step))
  return ee.export_path(model_dir, step)


def _leases(model_dir):
  root = os.path.join(ee.exports_dir(model_dir), ee.LEASES_SUBDIR)
  return sorted(os.listdir(root)) if os.path.isdir(root) else []


def test_trainer_step_is_the_newest_export_or_checkpoint(tmp_path):
  model_dir = str(tmp_path / "model")
  assert refresh_round.trainer_step(model_dir) is None
  os.makedirs(ee.export_path(model_dir, 40))
  assert refresh_round.trainer_step(model_dir) == 40
  step = tf.Variable(0, dtype=tf.int64)
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(step=step),
      os.path.join(model_dir, refresh_round.CHECKPOINTS_SUBDIR), max_to_keep=1)
  manager.save(checkpoint_number=57)   # the trainer numbers its checkpoints by step
  assert refresh_round.trainer_step(model_dir) == 57
  os.makedirs(ee.export_path(model_dir, 60))
  assert refresh_round.trainer_step(model_dir) == 60


def test_declare_resume_and_finish_rounds(tmp_path):
  model_dir, index_dir = str(tmp_path / "model"), str(tmp_path / "index")
  a, b = ee.export_path(model_dir, 100), ee.export_path(model_dir, 200)
  work = refresh_round.work_root(index_dir)
  for name in ("00000050-old/fp", "00000100-abc/fp", "stray.tmp-1234"):
    os.makedirs(os.path.join(work, name))

  first = refresh_round.declare(index_dir, a, 100, ["/c"], model_dir, lease=True)
  assert refresh_round.read_round(index_dir) == first and first.step == 100
  assert first.trainer_step == 100  # no export dir nor checkpoint yet: the export's own step
  assert sorted(os.listdir(work)) == ["00000100-abc", refresh_round.ROUND_FILE]
  assert _leases(model_dir) == [os.path.basename(first.lease)]
  assert _leases(model_dir)[0].startswith("00000100.")

  # The same export and corpus: the round is resumed (same id, same lease renewed).
  again = refresh_round.declare(index_dir, a, 100, ["/c"], model_dir, lease=True)
  assert again.id == first.id and again.lease == first.lease and len(_leases(model_dir)) == 1

  # Another export: a new round; the old lease is released, the old round's parts removed.
  os.makedirs(os.path.join(work, "00000200-def/fp"))
  second = refresh_round.declare(index_dir, b, 200, ["/c"], model_dir, lease=True)
  assert second.id != first.id
  assert sorted(os.listdir(work)) == ["00000200-def", refresh_round.ROUND_FILE]
  assert _leases(model_dir) == [os.path.basename(second.lease)]

  refresh_round.finish(index_dir, second)
  assert os.listdir(work) == [] and _leases(model_dir) == []
  assert refresh_round.read_round(index_dir) is None
  refresh_round.stop(index_dir)
  assert refresh_round.read_round(index_dir).final


def test_a_worker_stops_embedding_for_a_round_that_ended(src, tmp_path):
  model_dir, index_dir = str(tmp_path / "model"), str(tmp_path / "index")
  export = _publish_copy(src["export"], model_dir, 100)
  later = _publish_copy(src["export"], model_dir, 200)
  corpus_dir = src["corpus"]
  cfg = refresh.RefreshConfig(model_dir=model_dir, corpus_dir=corpus_dir, index_dir=index_dir,
                              num_shards=2, shard_index=1, batch_size=4)
  old = refresh_round.declare(index_dir, export, 100, [corpus_dir], model_dir, lease=True)
  worker = refresh.IndexRefresher(cfg)
  seen = []

  def chief_moves_on(shard):
    seen.append(shard)
    refresh_round.declare(index_dir, later, 200, [corpus_dir], model_dir, lease=True)

  assert worker.refresh(export, on_part_done=chief_moves_on) is None  # no error: it stops
  assert seen == [1] and old.id in worker.done_rounds  # shard 3 of the ended round was never embedded
  assert os.listdir(refresh_round.work_root(index_dir)) == [refresh_round.ROUND_FILE]
  # It follows the new round next (its shards 1 and 3).
  assert worker.run_once() is None and worker.last_stats.embedded == [1, 3]


def test_a_round_slower_than_the_lease_keeps_its_export(src, tmp_path):
  """Pruning takes a lease untouched for `lease_seconds` for one a crashed refresher left behind.
  Here a lease lasts 2.5 s (the file times pruning reads are whole seconds locally) and the
  round's 4 parts take 0.7 s or more each (the first several seconds, with the embedder's
  tracing), while the trainer, 100 steps on, prunes to its newest export after every part. The chief renews the lease at every part, so the round's export is never pruned and its bundle is published; once
  the round has ended, the lease is released and the export goes at the next prune. (With the
  lease written once, as the round began, a prune deleted the export under the round.)"""
  lease_seconds, part_seconds = 2.5, 0.7
  model_dir, index_dir = str(tmp_path / "model"), str(tmp_path / "index")
  export = _publish_copy(src["export"], model_dir, 100)
  _publish_copy(src["export"], model_dir, 200)
  chief = refresh.IndexRefresher(refresh.RefreshConfig(
      model_dir=model_dir, corpus_dir=src["corpus"], index_dir=index_dir, batch_size=8,
      recall_queries=8))
  pruned, ages = [], []

  def slow_part_while_the_trainer_prunes(shard):
    del shard
    time.sleep(part_seconds)  # the next part's time; the trainer prunes as it ends
    leases = [os.path.join(ee.exports_dir(model_dir), ee.LEASES_SUBDIR, name)
              for name in _leases(model_dir)]
    ages.append([round(time.time() - os.stat(path).st_mtime, 2) for path in leases])
    pruned.extend(ee.prune_exports(model_dir, keep=1, grace_seconds=0,
                                   lease_seconds=lease_seconds))

  bundle = chief.refresh(export, on_part_done=slow_part_while_the_trainer_prunes)
  assert pruned == [], ages  # the lease's age at each prune
  assert len(ages) == 4 and all(len(a) == 1 and a[0] < lease_seconds for a in ages), ages
  assert bundle.manifest["step"] == 100
  assert _leases(model_dir) == []
  assert ee.prune_exports(model_dir, keep=1, grace_seconds=0, lease_seconds=lease_seconds) == [
      export]


def test_two_shard_workers_keep_up_with_a_trainer_that_exports_faster_than_a_refresh(src, tmp_path):
  """The trainer runs at RATE steps/s, checkpoints every 0.2 s and exports every EXPORT_EVERY
  steps (0.25 s: shorter than a round takes even on an idle host, about 1 s), pruning to its 2 newest exports at once. A refresh round (two shard workers,
  threads running the real refresher) takes longer than that, yet every round is finished:
  3 bundles are published within 90 s (the trainer stops after the second; the third indexes
  its final export), each built from the export that was newest when its round began, and each
  at most EXPORT_EVERY + (steps trained during its round) + (the steps between two of the
  trainer's saves) stale. Each bundle's staleness is checked against what the trainer did: the
  steps it saved (checkpoints and exports, with the times each save began and ended) and the
  export's step. Nothing is left under .work/ and no lease outlives its round."""
  rate, export_every, wanted, limit = 20, 5, 2, 90.0
  model_dir, index_dir, corpus_dir = str(tmp_path / "model"), str(tmp_path / "index"), src["corpus"]
  workers = [refresh.IndexRefresher(refresh.RefreshConfig(
      model_dir=model_dir, corpus_dir=corpus_dir, index_dir=index_dir, num_shards=2,
      shard_index=i, batch_size=8, keep=20, grace_seconds=0, poll_min_seconds=0.05,
      poll_max_seconds=0.2)) for i in range(2)]
  errors, published, exported = [], {}, []
  saved = []  # (time the save began, step, time it ended): every checkpoint and export

  def save(write, step):
    began = time.time()
    write()
    saved.append((began, step, time.time()))

  def trainer():
    start = time.time()
    step_var = tf.Variable(0, dtype=tf.int64)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(step=step_var),
        os.path.join(model_dir, refresh_round.CHECKPOINTS_SUBDIR), max_to_keep=1)
    while True:
      step = int((time.time() - start) * rate)
      finished = len(bundle_lib.list_versions(index_dir)) >= wanted or time.time() - start > limit
      if finished or not exported or step >= exported[-1] + export_every:
        exported.append(step)
        save(lambda: _publish_copy(src["export"], model_dir, step), step)  # pylint: disable=cell-var-from-loop
        ee.prune_exports(model_dir, keep=2, grace_seconds=0)
      if finished:
        open(os.path.join(model_dir, ee.TRAINING_DONE), "w").close()
        return
      step_var.assign(step)
      save(lambda: manager.save(checkpoint_number=step), step)  # pylint: disable=cell-var-from-loop
      time.sleep(0.2)

  def run(fn, name):
    try:
      published[name] = fn()
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)

  start = time.time()
  threads = [threading.Thread(target=run, args=(trainer, "trainer"))]
  threads += [threading.Thread(target=run, args=(w.run, i)) for i, w in enumerate(workers)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(timeout=limit + 60)
  assert not errors and not any(t.is_alive() for t in threads)
  assert not workers[0].failed_exports  # the round's lease kept every round's export from pruning

  versions = bundle_lib.list_versions(index_dir)
  assert published[0] == len(versions) and published[1] == 0  # the chief published them all
  manifests = [bundle_lib.read_manifest(bundle_lib.version_path(index_dir, v)) for v in versions]
  assert len(versions) >= 3 and manifests[2]["created"] - start < limit
  steps = [m["step"] for m in manifests]
  assert steps == sorted(set(steps)) and steps[-1] == exported[-1]  # the final export indexed
  saved_steps = {step for _, step, _ in saved}
  # The steps the trainer's clock moves between two of its saves (a loaded host saves late).
  gap = max(b[1] - a[1] for a, b in zip(saved, saved[1:]))
  for i, m in enumerate(manifests[:-1]):
    stale = m["staleness"]
    # The trainer's step was read as the bundle went live: after the round began (which is
    # after the previous bundle was published) plus its round_seconds, before this bundle's
    # manifest was written. So it is a step the trainer saved, at least the newest one whose
    # save had ended by the earliest such time and at most the newest one begun by the latest.
    earliest = (manifests[i - 1]["created"] if i else start) + stale["round_seconds"]
    lowest = max([step for _, step, ended in saved if ended <= earliest], default=0)
    highest = max(step for began, step, _ in saved if began <= m["created"])
    assert stale["trainer_step"] in saved_steps, (stale, sorted(saved_steps))
    assert lowest <= stale["trainer_step"] <= highest, (stale, lowest, highest)
    assert stale["export_step"] == m["step"] and m["step"] in exported, (stale, exported)
    assert stale["steps"] == stale["trainer_step"] - m["step"], stale
    # Finished although newer exports appeared during the round: they were skipped.
    assert stale["newest_export_step"] > stale["export_step"], stale
    assert stale["newest_export_step"] in exported, (stale, exported)
    assert 0 <= stale["lag_at_start"] <= export_every + gap, (stale, gap)
    # The steps trained during the round: from its start (after the previous bundle went live)
    # to this manifest, which is written after the trainer's step was read (round_seconds ends
    # before the publish, which a loaded host makes slow).
    round_time = m["created"] - (manifests[i - 1]["created"] if i else start)
    assert stale["steps"] <= export_every + rate * round_time + gap, (stale, round_time, gap)
    np.testing.assert_array_equal(
        np.load(os.path.join(bundle_lib.version_path(index_dir, m["version"]), "block_ids.npy")),
        src["ids"])
  # Each round began with the newest export of its time: no bundle skipped to an older one.
  assert all(b["staleness"]["export_step"] >= a["staleness"]["newest_export_step"]
             for a, b in zip(manifests, manifests[1:]))
  assert os.listdir(refresh_round.work_root(index_dir)) == [refresh_round.ROUND_FILE]
  assert refresh_round.read_round(index_dir).final
  assert _leases(model_dir) == []
  # Once no round holds an export, the trainer's pruning removes all but 2 (its last prune may
  # have run while the final round still held one, so prune once more as the trainer would).
  ee.prune_exports(model_dir, keep=2, grace_seconds=0)
  assert len(ee.list_exports(model_dir)) == 2
