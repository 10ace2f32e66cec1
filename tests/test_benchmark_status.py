"""Benchmark provenance and staleness, on a temporary git repository: `benchmarks.common.Provenance`
stamps a run's commit when it starts, refuses a dirty checkout unless allowed, and marks the
result dirty when the checkout changes before it is written; `benchmarks.status` judges each
result against the paths its benchmark declares (`MEASURES`)."""
import json
import os
import subprocess

import pytest

from benchmarks import common
from benchmarks import status


def _git(repo, *args):
  return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                        cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def _write(repo, rel, text):
  path = os.path.join(repo, rel)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)


def _commit(repo, message, files=None):
  """Writes `files` ({relative path: text}) and commits everything; returns the hash."""
  for rel, text in (files or {}).items():
    _write(repo, rel, text)
  _git(repo, "add", "-A")
  _git(repo, "commit", "-q", "-m", message)
  return _git(repo, "rev-parse", "HEAD")


@pytest.fixture(name="repo")
def _repo(tmp_path):
  repo = str(tmp_path / "repo")
  os.makedirs(repo)
  _git(repo, "init", "-q")
  return repo


def _result(repo, name, **payload):
  _write(repo, f"benchmarks/results/{name}.json", json.dumps(payload))


def _by_name(repo):
  return {x["result"]: x for x in status.statuses(repo)}


def test_a_result_is_stale_only_after_a_commit_to_a_path_its_benchmark_measures(repo):
  c1 = _commit(repo, "start", {"lib/measured/a.py": "x = 1\n", "lib/other.py": "y = 1\n",
                               "benchmarks/foo_bench.py": 'MEASURES = ("lib/measured/",)\n'})
  _result(repo, "foo", environment={"command": "python -m benchmarks.foo_bench --n=1",
                                    "git": {"commit": c1, "dirty": False},
                                    "time_utc": "2026-01-01T00:00:00Z"})
  assert _by_name(repo)["foo"]["status"] == "current"
  # Paths it does not measure, its paths' tests and docs: still current.
  _commit(repo, "other code", {"lib/other.py": "y = 2\n"})
  _commit(repo, "tests and docs", {"lib/measured/a_test.py": "t = 1\n",
                                   "lib/measured/NOTES.md": "notes\n"})
  line = _by_name(repo)["foo"]
  assert (line["status"], line["commit"], line["module"]) == (
      "current", c1, "benchmarks/foo_bench.py")
  assert line["paths"] == ["lib/measured/", "benchmarks/foo_bench.py"]
  # A commit to a measured path: stale, naming it.
  c4 = _commit(repo, "measured code", {"lib/measured/a.py": "x = 2\n"})
  line = _by_name(repo)["foo"]
  assert line["status"] == "stale" and line["changed_since"] == [c4[:len(line["changed_since"][0])]]
  # The benchmark's own file counts too.
  _result(repo, "foo", environment={"command": "python -m benchmarks.foo_bench",
                                    "git": {"commit": c4, "dirty": True}})
  assert _by_name(repo)["foo"]["status"] == "current"
  assert _by_name(repo)["foo"]["dirty"] is True
  _commit(repo, "benchmark",
          {"benchmarks/foo_bench.py": 'MEASURES = ("lib/measured/",)\nN = 2\n'})
  assert _by_name(repo)["foo"]["status"] == "stale"


def test_each_recorded_shape_is_read_and_a_result_is_as_old_as_its_oldest_part(repo):
  benches = ("fault_bench", "scale_bench", "import_release_bench", "plain_bench", "scale_resume")
  c1 = _commit(repo, "one", dict({"lib/a.py": "1\n"}, **{
      f"benchmarks/{b}.py": 'MEASURES = ("lib/",)\n' for b in benches}))
  c2 = _commit(repo, "two", {"lib/a.py": "2\n"})
  c3 = _commit(repo, "three", {"other.txt": "3\n"})
  # The fault matrix: rows from two commits, the last run's environment at the newest.
  _result(repo, "faults", environment={"command": "python -m benchmarks.fault_bench",
                                       "git": {"commit": c3, "dirty": False}},
          rows=[{"commit": c2, "time_utc": "2026-01-02T00:00:00Z", "dirty": False},
                {"commit": c1, "time_utc": "2026-01-01T00:00:00Z", "dirty": True},
                {"commit": c3, "time_utc": "2026-01-03T00:00:00Z"}])
  # The scale benchmark: a map of stage stamps; the import benchmark: a top-level git_commit,
  # and a command that is not a benchmark module (the result's name finds it).
  _result(repo, "scale", environment={"command": "python -m benchmarks.scale_bench"},
          provenance={"1000/index": {"commit": c3, "dirty": False},
                      "1000/scann_rebuilds": {"commit": c1, "dirty": False,
                                              "time_utc": "2026-01-05T00:00:00Z"},
                      "global/baseline": None})
  _result(repo, "import_release_exact", git_commit=c3,
          environment={"command": "python -m benchmarks.import_release_bench --searcher=exact"})
  _result(repo, "scale_resume", environment={"command": "python -m /tmp/write.py"},
          provenance={"commit": c2, "dirty": False})
  _result(repo, "plain", environment={"command": "python -m benchmarks.plain_bench",
                                      "git": {"commit": "unknown", "dirty": None}})
  _result(repo, "lost", environment={"command": "python -m benchmarks.plain_bench",
                                     "git": {"commit": "0" * 40, "dirty": False}})
  lines = _by_name(repo)
  faults = lines["faults"]
  assert (faults["commit"], faults["status"], faults["commits_recorded"]) == (c1, "stale", 3)
  assert faults["time_utc"] == "2026-01-01T00:00:00Z" and faults["dirty"] is True
  scale = lines["scale"]
  assert (scale["commit"], scale["status"], scale["time_utc"]) == (
      c1, "stale", "2026-01-05T00:00:00Z")
  assert (lines["import_release_exact"]["commit"], lines["import_release_exact"]["status"],
          lines["import_release_exact"]["module"]) == (
              c3, "current", "benchmarks/import_release_bench.py")
  assert (lines["scale_resume"]["module"], lines["scale_resume"]["status"]) == (
      "benchmarks/scale_resume.py", "current")
  assert lines["plain"]["status"] == "no commit" and lines["plain"]["commit"] is None
  assert lines["lost"]["status"] == "unknown commit"
  text = status.table(list(lines.values()))
  assert "faults.json" in text and "parts from 3 commits" in text and "no commit" in text


def test_a_result_file_that_is_not_json_is_named(repo):
  _commit(repo, "one", {"benchmarks/foo_bench.py": 'MEASURES = ()\n'})
  _write(repo, "benchmarks/results/broken.json", "{not json")
  with pytest.raises(status.StatusError, match="broken.json"):
    status.statuses(repo)


def test_provenance_refuses_a_dirty_checkout_and_marks_a_change_during_the_run(repo):
  c1 = _commit(repo, "one", {"a.py": "1\n"})
  clean = common.Provenance(repo=repo)
  assert clean.commit == c1
  first = clean.record()
  assert (first["commit"], first["dirty"], first["changed_during_run"]) == (c1, False, False)
  # A tracked file changed after the stamp: the record is dirty; committing it moves HEAD.
  _write(repo, "a.py", "2\n")
  changed = clean.record()
  assert changed["dirty"] is True and changed["changed_during_run"] is True
  assert changed["commit"] == c1 and changed["dirty_at_start"] is False
  assert changed["files_changed_during_run"] == ["a.py"]
  c2 = _commit(repo, "two")
  moved = clean.record()
  assert moved["dirty"] is True and moved["commit"] == c1 and moved["commit_at_check"] == c2
  # A dirty checkout at the start: refused in one line, unless allowed (then always dirty).
  _write(repo, "a.py", "3\n")
  with pytest.raises(common.DirtyCheckoutError, match="--allow_dirty"):
    common.Provenance(repo=repo)
  allowed = common.Provenance(allow_dirty=True, repo=repo).record()
  assert allowed["dirty"] is True and allowed["changed_during_run"] is False
  assert allowed["allow_dirty"] is True
  # Untracked files are not the checkout's code: no refusal.
  _git(repo, "checkout", "--", "a.py")
  _write(repo, "scratch.txt", "x\n")
  assert common.Provenance(repo=repo).record()["dirty"] is False


def test_no_result_is_written_without_a_stamp(tmp_path, monkeypatch):
  monkeypatch.setattr(common, "RESULTS_DIR", str(tmp_path))
  with pytest.raises(TypeError, match="Provenance"):
    common.write_result("x", {"v": 1}, None)
  assert not os.listdir(tmp_path)


def test_a_scale_stage_that_ran_while_the_checkout_changed_is_dirty(repo, tmp_path):
  from benchmarks import scale_bench  # pylint: disable=g-import-not-at-top
  c1 = _commit(repo, "one", {"a.py": "1\n"})
  bench = scale_bench.Bench(scale_bench.ScaleBenchConfig(work_dir=str(tmp_path / "w")),
                            common.Provenance(repo=repo))
  clean = bench.cached(None, "x", lambda: {"v": 1}, required=True)["provenance"]
  assert (clean["commit"], clean["dirty"], clean["changed_during_run"]) == (c1, False, False)

  def edits_the_checkout():
    _write(repo, "a.py", "2\n")
    return {"v": 2}

  dirty = bench.cached(None, "y", edits_the_checkout, required=True)["provenance"]
  assert (dirty["commit"], dirty["dirty"], dirty["changed_during_run"]) == (c1, True, True)


def test_fault_rows_carry_the_stamp_taken_when_the_run_started(repo, tmp_path):
  """Rows name the commit the run started at (not the one checked out when their group ended),
  and are dirty when the checkout changed before their group ended."""
  from benchmarks import fault_bench  # pylint: disable=g-import-not-at-top
  from benchmarks.faults import FaultConfig  # pylint: disable=g-import-not-at-top
  c1 = _commit(repo, "one", {"a.py": "1\n"})
  provenance = common.Provenance(repo=repo)
  c2 = _commit(repo, "two", {"a.py": "2\n"})
  config = FaultConfig.fast(str(tmp_path / "faults"))
  config.groups = ["locking"]
  result = fault_bench.run(config, provenance)
  assert result["rows"] and c2 != c1
  for row in result["rows"]:
    assert (row["commit"], row["dirty"], row["changed_during_run"]) == (c1, True, True)
    assert row["time_utc"] >= provenance.started_utc
