"""Tests of the evaluator's resume and stop rules, and of its loop on a work directory whose
training is done (the full loop beside a trainer runs in tests/test_local_all_in_one.py)."""
import json
import os
import subprocess

from realm_tf.evaluation import recall_watcher


class _Bundle:

  def __init__(self, path, source):
    self.path = path
    self.manifest = {"source_export": source}


def test_load_seen_reads_recorded_bundles_and_skips_bad_lines(tmp_path):
  path = tmp_path / "recall.jsonl"
  good = {"bundle_path": "/w/index/00000002", "source_export": "/w/realm/embedder_exports/00000010",
          "index_version": 2, "step": 10}
  path.write_text(json.dumps(good) + "\nnot json\n" + json.dumps({"index_version": 3}) + "\n\n")
  seen = recall_watcher.load_seen(str(path))
  assert seen == {("/w/index/00000002", "/w/realm/embedder_exports/00000010")}
  assert recall_watcher.bundle_key(_Bundle("/w/index/00000002/",
                                         "/w/realm/embedder_exports/00000010")) in seen
  # Same version number, other export (a rebuilt index directory): not seen.
  assert recall_watcher.bundle_key(_Bundle("/w/index/00000002",
                                         "/w/realm/embedder_exports/00000020")) not in seen
  assert recall_watcher.load_seen(str(tmp_path / "missing.jsonl")) == set()


def test_final_bundle_is_the_one_built_from_the_newest_export(tmp_path):
  export = str(tmp_path / "realm" / "embedder_exports" / "00000030")
  rel = os.path.relpath(export)
  assert recall_watcher.is_final_bundle(_Bundle("b", rel), export)
  assert not recall_watcher.is_final_bundle(_Bundle("b", export.replace("30", "20")), export)
  assert not recall_watcher.is_final_bundle(_Bundle("b", ""), export)
  assert not recall_watcher.is_final_bundle(None, export)
  assert not recall_watcher.is_final_bundle(_Bundle("b", export), None)


def test_pid_alive_tracks_a_child_until_it_is_reaped():
  proc = subprocess.Popen(["sleep", "30"])
  assert recall_watcher.pid_alive(proc.pid)
  proc.kill()
  proc.wait()
  assert not recall_watcher.pid_alive(proc.pid)


def test_watch_stops_when_training_is_done_and_the_refresher_has_exited(tmp_path):
  model_dir = tmp_path / "realm"
  model_dir.mkdir()
  (model_dir / "TRAINING_DONE").write_text("")
  proc = subprocess.Popen(["true"])
  proc.wait()
  recall_watcher.watch(recall_watcher.WatchConfig(
      work_dir=str(tmp_path), wait_pid=proc.pid, min_poll_seconds=0.01, max_poll_seconds=0.01))
  assert not (tmp_path / recall_watcher.RECALL_LOG).exists()  # no bundle, nothing measured


class _LiveBundle(_Bundle):

  def __init__(self, path, source, version, step):
    super().__init__(path, source)
    self.version, self.step = version, step


def test_watch_records_each_new_bundle_once_and_stops_at_the_final_exports(tmp_path,
                                                                          monkeypatch):
  from realm_tf.evaluation import recall  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  model_dir = tmp_path / "realm"
  export = model_dir / "embedder_exports" / "00000010"
  export.mkdir(parents=True)
  (model_dir / "TRAINING_DONE").write_text("")
  bundles = [_LiveBundle(str(tmp_path / "index" / "00000001"), "/ict/export", 1, 0),
             _LiveBundle(str(tmp_path / "index" / "00000002"), str(export), 2, 10)]
  polls = iter([bundles[0], bundles[0], bundles[1]])
  monkeypatch.setattr(bundle_lib, "latest", lambda index_dir: next(polls, bundles[1]))
  measured = []

  def _measure(bundle, *unused_args):
    measured.append(bundle.version)
    return {"recall@5": 0.5}

  monkeypatch.setattr(recall, "measure_bundle_recall", _measure)
  config = recall_watcher.WatchConfig(work_dir=str(tmp_path), min_poll_seconds=0.01,
                                      max_poll_seconds=0.01)
  recall_watcher.watch(config)
  assert measured == [1, 2]
  with open(tmp_path / recall_watcher.RECALL_LOG) as f:
    records = [json.loads(line) for line in f]
  assert [(r["step"], r["from_trainer"]) for r in records] == [(0, False), (10, True)]
  # A restarted evaluator measures nothing again.
  polls = iter([])
  recall_watcher.watch(config)
  assert measured == [1, 2]
