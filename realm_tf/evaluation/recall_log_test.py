"""Tests of the evaluator's resume and stop rules (the full loop runs in
tests/test_local_all_in_one.py)."""
import json
import os
import subprocess

from realm_tf.evaluation import recall_log as watch_recall


class _Bundle:

  def __init__(self, path, source):
    self.path = path
    self.manifest = {"source_export": source}


def test_load_seen_reads_recorded_bundles_and_skips_bad_lines(tmp_path):
  path = tmp_path / "recall.jsonl"
  good = {"bundle_path": "/w/index/00000002", "source_export": "/w/realm/embedder_exports/00000010",
          "index_version": 2, "step": 10}
  path.write_text(json.dumps(good) + "\nnot json\n" + json.dumps({"index_version": 3}) + "\n\n")
  seen = watch_recall.load_seen(str(path))
  assert seen == {("/w/index/00000002", "/w/realm/embedder_exports/00000010")}
  assert watch_recall.bundle_key(_Bundle("/w/index/00000002/",
                                         "/w/realm/embedder_exports/00000010")) in seen
  # Same version number, other export (a rebuilt index directory): not seen.
  assert watch_recall.bundle_key(_Bundle("/w/index/00000002",
                                         "/w/realm/embedder_exports/00000020")) not in seen
  assert watch_recall.load_seen(str(tmp_path / "missing.jsonl")) == set()


def test_final_bundle_is_the_one_built_from_the_newest_export(tmp_path):
  export = str(tmp_path / "realm" / "embedder_exports" / "00000030")
  rel = os.path.relpath(export)
  assert watch_recall.is_final_bundle(_Bundle("b", rel), export)
  assert not watch_recall.is_final_bundle(_Bundle("b", export.replace("30", "20")), export)
  assert not watch_recall.is_final_bundle(_Bundle("b", ""), export)
  assert not watch_recall.is_final_bundle(None, export)
  assert not watch_recall.is_final_bundle(_Bundle("b", export), None)


def test_pid_alive_tracks_a_child_until_it_is_reaped():
  proc = subprocess.Popen(["sleep", "30"])
  assert watch_recall.pid_alive(proc.pid)
  proc.kill()
  proc.wait()
  assert not watch_recall.pid_alive(proc.pid)
