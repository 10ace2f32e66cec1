"""realm_tf.io.publish: directories appear whole or not at all, refuse/replace, version claiming."""
import json
import os
import threading
import uuid

import pytest
import tensorflow as tf

from realm_tf.io import publish


def _write(path, text):
  with open(path, "w") as f:
    f.write(text)


def _read(path):
  with open(path) as f:
    return f.read()


def _old_target(tmp_path, text="old"):
  target = tmp_path / "out"
  target.mkdir()
  _write(target / "a.txt", text)
  return str(target)


def test_publish_dir_renames_a_hidden_temp_into_place(tmp_path):
  target = str(tmp_path / "sub" / "out")
  with publish.publish_dir(target) as work:
    assert os.path.isdir(work) and os.listdir(work) == []
    assert os.path.dirname(work) == str(tmp_path / "sub")
    assert os.path.basename(work).startswith(".tmp-out-")
    _write(os.path.join(work, "a.txt"), "new")
    assert not os.path.exists(target)  # nothing visible until the body ends
  assert _read(os.path.join(target, "a.txt")) == "new"
  assert os.listdir(tmp_path / "sub") == ["out"]


def test_publish_dir_failure_removes_the_temp_and_publishes_nothing(tmp_path):
  target = str(tmp_path / "out")
  with pytest.raises(RuntimeError, match="boom"):
    with publish.publish_dir(target) as work:
      _write(os.path.join(work, "a.txt"), "half")
      raise RuntimeError("boom")
  assert os.listdir(tmp_path) == []


def test_publish_dir_refuses_an_existing_target_before_the_body_runs(tmp_path):
  target = _old_target(tmp_path)
  ran = []
  with pytest.raises(publish.TargetExistsError, match="already exists"):
    with publish.publish_dir(target):
      ran.append(True)
  assert not ran
  assert _read(os.path.join(target, "a.txt")) == "old"
  assert os.listdir(tmp_path) == ["out"]
  assert issubclass(publish.TargetExistsError, FileExistsError)


def test_publish_dir_refuses_a_target_a_concurrent_publisher_created(tmp_path):
  target = str(tmp_path / "out")
  with pytest.raises(publish.TargetExistsError):
    with publish.publish_dir(target) as work:
      _write(os.path.join(work, "a.txt"), "mine")
      os.makedirs(target)
      _write(os.path.join(target, "a.txt"), "theirs")
  assert _read(os.path.join(target, "a.txt")) == "theirs"
  assert os.listdir(tmp_path) == ["out"]


def test_publish_dir_replace(tmp_path):
  target = _old_target(tmp_path)
  with publish.publish_dir(target, replace=True) as work:
    _write(os.path.join(work, "b.txt"), "new")
    assert _read(os.path.join(target, "a.txt")) == "old"  # the old one serves until the rename
  assert os.listdir(target) == ["b.txt"]
  assert os.listdir(tmp_path) == ["out"]  # neither the temp nor the old copy is left
  with publish.publish_dir(str(tmp_path / "fresh"), replace=True) as work:  # nothing to replace
    _write(os.path.join(work, "c.txt"), "c")
  assert sorted(os.listdir(tmp_path)) == ["fresh", "out"]


def test_publish_dir_replace_failure_keeps_the_old_target(tmp_path, monkeypatch):
  target = _old_target(tmp_path)
  with pytest.raises(ValueError):
    with publish.publish_dir(target, replace=True):
      raise ValueError("bad")
  assert os.listdir(target) == ["a.txt"] and os.listdir(tmp_path) == ["out"]

  real_rename = tf.io.gfile.rename

  def rename_failing_onto_target(src, dst, overwrite=False):
    if dst == target and os.path.basename(src).startswith(publish.TEMP_PREFIX):
      raise tf.errors.PermissionDeniedError(None, None, "no rename")
    return real_rename(src, dst, overwrite)

  monkeypatch.setattr(tf.io.gfile, "rename", rename_failing_onto_target)
  with pytest.raises(tf.errors.PermissionDeniedError):
    with publish.publish_dir(target, replace=True) as work:
      _write(os.path.join(work, "b.txt"), "new")
  # The old directory was moved aside, then put back when the new one could not take its place.
  assert _read(os.path.join(target, "a.txt")) == "old"
  assert os.listdir(tmp_path) == ["out"]


def test_publish_dir_with_marker_on_local_disk_still_renames(tmp_path):
  target = str(tmp_path / "00000001")
  os.makedirs(target)  # a directory without its marker does not count as published...
  with pytest.raises(publish.TargetExistsError):  # ...but the rename still will not clobber it
    with publish.publish_dir(target, marker="meta.json") as work:
      assert work != target
      _write(os.path.join(work, "meta.json"), "{}")
  assert os.listdir(target) == [] and os.listdir(tmp_path) == ["00000001"]
  _write(os.path.join(target, "meta.json"), "{}")
  with pytest.raises(publish.TargetExistsError):  # published: refused up front
    with publish.publish_dir(target, marker="meta.json"):
      pass


def test_publish_dir_on_an_object_store_writes_in_place_marker_last():
  root = f"ram://publish_test_{uuid.uuid4().hex}"
  target = f"{root}/00000001"
  with pytest.raises(RuntimeError):
    with publish.publish_dir(target, marker="meta.json") as work:
      assert work == target  # no atomic directory rename there: written in place
      with tf.io.gfile.GFile(f"{work}/part", "w") as f:
        f.write("half")
      raise RuntimeError("before the marker")
  assert not tf.io.gfile.exists(target)  # the incomplete write is removed
  with publish.publish_dir(target, marker="meta.json") as work:
    with tf.io.gfile.GFile(f"{work}/meta.json", "w") as f:
      f.write("{}")
  assert tf.io.gfile.exists(f"{target}/meta.json")
  with pytest.raises(publish.TargetExistsError):
    with publish.publish_dir(target, marker="meta.json"):
      pass
  with pytest.raises(ValueError, match="in place"):
    with publish.publish_dir(target, marker="meta.json", replace=True):
      pass
  assert tf.io.gfile.exists(f"{target}/meta.json")


def test_is_remote():
  assert publish.is_remote("gs://bucket/x") and publish.is_remote("ram://x")
  assert not publish.is_remote("/tmp/x") and not publish.is_remote("relative/x")


def _commit(record):
  def commit(path, version):
    record.append(version)
    _write(os.path.join(path, "manifest.json"), json.dumps({"version": version}))
  return commit


def test_publish_next_version_numbers_from_first_and_skips_existing(tmp_path):
  parent = str(tmp_path / "index")
  os.makedirs(os.path.join(parent, "00000003"))  # e.g. an incomplete version: never reused
  commits = []
  with publish.publish_next_version(parent, _commit(commits), first=2) as staging:
    assert staging.version == 2 and staging.target == os.path.join(parent, "00000002")
    assert os.path.basename(staging.path).startswith(publish.TEMP_PREFIX)
    _write(os.path.join(staging.path, "data"), "a")
  assert (staging.version, staging.path) == (2, staging.target)
  with publish.publish_next_version(parent, _commit(commits), first=3) as staging:
    _write(os.path.join(staging.path, "data"), "b")
  assert staging.version == 4 and commits == [2, 4]
  assert sorted(os.listdir(parent)) == ["00000002", "00000003", "00000004"]
  assert json.loads(_read(os.path.join(parent, "00000004", "manifest.json"))) == {"version": 4}
  with publish.publish_next_version(str(tmp_path / "v"), _commit([]),
                                    name=lambda v: f"v{v}") as staging:
    pass
  assert os.listdir(tmp_path / "v") == ["v1"]


def test_publish_next_version_failure_removes_the_temp(tmp_path):
  parent = str(tmp_path)
  commits = []
  with pytest.raises(RuntimeError):
    with publish.publish_next_version(parent, _commit(commits)) as staging:
      _write(os.path.join(staging.path, "data"), "half")
      raise RuntimeError("boom")
  assert os.listdir(parent) == [] and commits == []

  def failing_commit(path, version):
    raise OSError("disk full")

  with pytest.raises(OSError, match="disk full"):
    with publish.publish_next_version(parent, failing_commit):
      pass
  assert os.listdir(parent) == []


def test_two_racing_publishers_claim_different_versions(tmp_path):
  parent = str(tmp_path)
  both_chose = threading.Barrier(2, timeout=60)
  results, commits, errors = {}, {"a": [], "b": []}, []

  def publisher(name):
    try:
      with publish.publish_next_version(parent, _commit(commits[name])) as staging:
        _write(os.path.join(staging.path, "data"), name)
        both_chose.wait()  # each has picked a tentative number before either publishes
        results[name + "_tentative"] = staging.version
      results[name] = staging.version
    except Exception as e:  # pylint: disable=broad-except
      errors.append(repr(e))

  threads = [threading.Thread(target=publisher, args=(n,)) for n in ("a", "b")]
  for t in threads:
    t.start()
  for t in threads:
    t.join(timeout=120)
  assert not errors, errors
  assert results["a_tentative"] == results["b_tentative"] == 1
  assert sorted([results["a"], results["b"]]) == [1, 2]
  loser = "a" if results["a"] == 2 else "b"
  assert commits[loser] == [1, 2]  # the marker was rewritten for the number it finally got
  assert sorted(os.listdir(parent)) == ["00000001", "00000002"]  # no temporaries left
  for name in ("a", "b"):
    path = os.path.join(parent, f"{results[name]:08d}")
    assert _read(os.path.join(path, "data")) == name
    assert json.loads(_read(os.path.join(path, "manifest.json"))) == {"version": results[name]}


def test_publish_next_version_on_an_object_store_writes_in_place():
  parent = f"ram://publish_test_{uuid.uuid4().hex}/index"
  commits = []
  with publish.publish_next_version(parent, _commit_gfile(commits)) as staging:
    assert staging.path == staging.target == f"{parent}/00000001"
  assert commits == [1] and tf.io.gfile.exists(f"{parent}/00000001/manifest.json")
  with pytest.raises(RuntimeError):
    with publish.publish_next_version(parent, _commit_gfile(commits)) as staging:
      assert staging.version == 2
      raise RuntimeError("boom")
  assert not tf.io.gfile.exists(f"{parent}/00000002")


def _commit_gfile(record):
  def commit(path, version):
    record.append(version)
    with tf.io.gfile.GFile(f"{path}/manifest.json", "w") as f:
      f.write(json.dumps({"version": version}))
  return commit


def test_publishing_on_a_full_disk_is_a_disk_full_error_and_keeps_the_published_version(tmp_path):
  from realm_tf.io import atomic  # pylint: disable=g-import-not-at-top
  from realm_tf.testing import small_disk  # pylint: disable=g-import-not-at-top
  small_disk.skip_unless_mountable(str(tmp_path))
  with small_disk.small_tmpfs(str(tmp_path / "disk"), 512 << 10) as disk:
    parent = os.path.join(disk, "index")
    with publish.publish_next_version(parent, _commit_gfile([])) as staging:
      with open(os.path.join(staging.path, "data"), "wb") as f:
        f.write(b"1" * (32 << 10))
    small_disk.fill(disk, 16 << 10)
    for attempt in ("next_version", "dir"):
      with pytest.raises(atomic.DiskFullError) as e:
        if attempt == "next_version":
          with publish.publish_next_version(parent, _commit_gfile([]), first=2) as staging:
            with tf.io.gfile.GFile(os.path.join(staging.path, "data"), "wb") as f:
              f.write(b"2" * (64 << 10))
        else:
          with publish.publish_dir(os.path.join(parent, "00000002")) as work:
            with tf.io.gfile.GFile(os.path.join(work, "data"), "wb") as f:
              f.write(b"2" * (64 << 10))
      assert os.path.join(parent, "00000002") in str(e.value), str(e.value)
      assert "Disk full" in str(e.value)
      assert os.listdir(parent) == ["00000001"]  # no temporary or partial version left
      assert _read(os.path.join(parent, "00000001", "data")) == "1" * (32 << 10)
    small_disk.free(disk)
    with publish.publish_next_version(parent, _commit_gfile([]), first=2) as staging:
      with open(os.path.join(staging.path, "data"), "wb") as f:
        f.write(b"2" * (64 << 10))
    assert staging.version == 2 and sorted(os.listdir(parent)) == ["00000001", "00000002"]


def _dead_pid():
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                            capture_output=True, text=True, check=True).stdout)


def _own(path, owner):
  """Rewrites (or with None removes) the owner file of the temporary `path`."""
  if owner is None:
    os.remove(path + publish.OWNER_SUFFIX)
  else:
    with open(path + publish.OWNER_SUFFIX, "w", encoding="utf-8") as f:
      json.dump(owner, f)


def test_orphaned_temporaries_of_dead_writers_are_removed_and_no_others(tmp_path):
  import socket  # pylint: disable=g-import-not-at-top
  dead_pid, host = _dead_pid(), socket.gethostname()
  base = str(tmp_path / "corpus")

  def temp(name, owner):
    path = publish.claim_temp_dir(f"{base}.tmp-{name}")
    with open(os.path.join(path, "shard"), "w", encoding="utf-8") as f:
      f.write("half")
    _own(path, owner)
    return path

  orphan = temp("dead", {"host": host, "pid": dead_pid})
  live = publish.claim_temp_dir(f"{base}.tmp-live")  # this process: alive
  elsewhere = temp("other-host", {"host": host + "-b", "pid": dead_pid})
  unowned = temp("unowned", None)
  garbled = temp("garbled", {"pid": "x"})
  assert publish.remove_orphaned_temps(f"{base}.tmp-*") == [orphan]
  kept = [os.path.basename(p) for p in (live, elsewhere, garbled)]
  assert sorted(os.listdir(tmp_path)) == sorted(
      kept + [k + publish.OWNER_SUFFIX for k in kept] + [os.path.basename(unowned)])


def test_a_publish_removes_what_a_killed_publish_of_the_same_target_left(tmp_path):
  import socket  # pylint: disable=g-import-not-at-top
  dead = {"host": socket.gethostname(), "pid": _dead_pid()}
  parent = tmp_path / "models"
  killed_dir = publish.claim_temp_dir(publish.temp_dir_path(str(parent), "m"))
  killed_version = publish.claim_temp_dir(publish.temp_dir_path(str(parent), "version"))
  for path in (killed_dir, killed_version):
    _own(path, dead)
  with publish.publish_dir(str(parent / "m")) as work:
    assert os.path.exists(work + publish.OWNER_SUFFIX)
    with open(os.path.join(work, "a"), "w", encoding="utf-8") as f:
      f.write("a")
  with publish.publish_next_version(str(parent), lambda d, v: None) as staging:
    with open(os.path.join(staging.path, "b"), "w", encoding="utf-8") as f:
      f.write("b")
  # Only the published directories: no temporaries, no owner files, nothing foreign inside.
  assert sorted(os.listdir(parent)) == ["00000001", "m"]
  assert os.listdir(parent / "m") == ["a"] and os.listdir(parent / "00000001") == ["b"]
  with pytest.raises(RuntimeError):
    with publish.publish_dir(str(parent / "n")):
      raise RuntimeError("the body failed")
  assert sorted(os.listdir(parent)) == ["00000001", "m"]
