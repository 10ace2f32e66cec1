"""realm_tf.io.atomic: content lands whole, no temporary is left, a failure keeps the old file."""
import json
import os

import pytest
import tensorflow as tf

from realm_tf.io import atomic


def _read(path, mode="r"):
  with open(path, mode) as f:
    return f.read()


def _write_old(tmp_path, name="out.json", text="old"):
  path = str(tmp_path / name)
  with open(path, "w") as f:
    f.write(text)
  return path


def test_write_text_writes_content_and_leaves_no_temp(tmp_path):
  path = str(tmp_path / "a.txt")
  atomic.write_text(path, "hello\nworld\n")
  assert _read(path) == "hello\nworld\n"
  assert os.listdir(tmp_path) == ["a.txt"]


def test_write_text_empty_creates_the_file(tmp_path):
  path = str(tmp_path / "empty.txt")
  atomic.write_text(path, "")
  assert _read(path) == ""
  assert os.listdir(tmp_path) == ["empty.txt"]


def test_write_text_replaces_an_existing_file(tmp_path):
  path = _write_old(tmp_path, "a.txt", "a much longer old content")
  atomic.write_text(path, "new")
  assert _read(path) == "new"
  assert os.listdir(tmp_path) == ["a.txt"]


def test_write_bytes(tmp_path):
  path = str(tmp_path / "b.bin")
  atomic.write_bytes(path, b"\x00\xffdata")
  assert _read(path, "rb") == b"\x00\xffdata"
  assert os.listdir(tmp_path) == ["b.bin"]


def test_write_json_defaults_are_indented_and_sorted(tmp_path):
  path = str(tmp_path / "m.json")
  obj = {"b": [1, 2], "a": {"z": 1, "y": "é"}}
  atomic.write_json(path, obj)
  assert _read(path) == json.dumps(obj, indent=2, sort_keys=True)
  assert json.loads(_read(path)) == obj
  assert _read(path).index('"a"') < _read(path).index('"b"')


def test_write_json_compact_form(tmp_path):
  path = str(tmp_path / "m.json")
  obj = {"step": 7, "a": 1}
  atomic.write_json(path, obj, indent=None, sort_keys=False)
  assert _read(path) == '{"step": 7, "a": 1}'


def test_write_json_unserialisable_keeps_old_file(tmp_path):
  path = _write_old(tmp_path)
  with pytest.raises(TypeError):
    atomic.write_json(path, {"x": object()})
  assert _read(path) == "old"
  assert os.listdir(tmp_path) == ["out.json"]


def test_atomic_open_exception_keeps_old_file_and_removes_temp(tmp_path):
  path = _write_old(tmp_path)
  with pytest.raises(RuntimeError, match="boom"):
    with atomic.atomic_open(path, "w") as f:
      f.write("half-written")
      raise RuntimeError("boom")
  assert _read(path) == "old"
  assert os.listdir(tmp_path) == ["out.json"]


def test_atomic_open_exception_without_old_file_leaves_nothing(tmp_path):
  path = str(tmp_path / "new.jsonl")
  with pytest.raises(KeyboardInterrupt):
    with atomic.atomic_open(path, "wb") as f:
      f.write(b"line\n")
      raise KeyboardInterrupt()
  assert os.listdir(tmp_path) == []


def test_atomic_open_streams_to_temp_until_the_body_ends(tmp_path):
  path = str(tmp_path / "p.jsonl")
  with atomic.atomic_open(path, "wb") as f:
    f.write(b"1\n")
    f.flush()
    assert not os.path.exists(path)
    assert os.listdir(tmp_path) == ["p.jsonl.tmp"]
    f.write(b"2\n")
  assert _read(path, "rb") == b"1\n2\n"
  assert os.listdir(tmp_path) == ["p.jsonl"]


def test_atomic_open_rejects_non_write_modes(tmp_path):
  with pytest.raises(ValueError, match="mode"):
    with atomic.atomic_open(str(tmp_path / "x"), "a"):
      pass
  assert os.listdir(tmp_path) == []


def test_atomic_path_renames_on_success(tmp_path):
  path = _write_old(tmp_path, "shard.tfrecord.gz", "old")
  with atomic.atomic_path(path) as tmp:
    assert tmp == path + ".tmp"
    assert not os.path.exists(tmp)
    with tf.io.TFRecordWriter(tmp, options="GZIP") as w:
      w.write(b"record")
  assert list(tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator()) == [
      b"record"]
  assert os.listdir(tmp_path) == ["shard.tfrecord.gz"]


def test_atomic_path_exception_keeps_old_file_and_removes_temp(tmp_path):
  path = _write_old(tmp_path)
  with pytest.raises(ValueError):
    with atomic.atomic_path(path) as tmp:
      with open(tmp, "w") as f:
        f.write("partial")
      raise ValueError("bad")
  assert _read(path) == "old"
  assert os.listdir(tmp_path) == ["out.json"]


def test_atomic_path_exception_before_any_write(tmp_path):
  path = _write_old(tmp_path)
  with pytest.raises(ValueError):
    with atomic.atomic_path(path):
      raise ValueError("nothing written")
  assert _read(path) == "old"
  assert os.listdir(tmp_path) == ["out.json"]


def test_failed_rename_removes_temp_and_keeps_old_file(tmp_path, monkeypatch):
  path = _write_old(tmp_path)

  def fail(*args, **kwargs):
    raise tf.errors.PermissionDeniedError(None, None, "no rename")

  monkeypatch.setattr(tf.io.gfile, "rename", fail)
  with pytest.raises(tf.errors.PermissionDeniedError):
    atomic.write_text(path, "new")
  assert _read(path) == "old"
  assert os.listdir(tmp_path) == ["out.json"]


def test_unique_temp_names(tmp_path):
  path = str(tmp_path / "part-00001.npz")
  a, b = atomic.temp_path(path, unique=True), atomic.temp_path(path, unique=True)
  assert a != b
  assert a.startswith(path + ".tmp-") and b.startswith(path + ".tmp-")
  assert atomic.temp_path(path) == path + ".tmp"
  atomic.write_bytes(path, b"x", unique=True)
  assert os.listdir(tmp_path) == ["part-00001.npz"]


def test_out_of_space_is_a_disk_full_error_naming_the_file_and_keeps_the_old_one(tmp_path):
  from realm_tf.testing import small_disk  # pylint: disable=g-import-not-at-top
  small_disk.skip_unless_mountable(str(tmp_path))
  with small_disk.small_tmpfs(str(tmp_path / "disk"), 256 << 10) as disk:
    path = os.path.join(disk, "manifest.json")
    atomic.write_json(path, {"version": 1})
    small_disk.fill(disk, 8 << 10)
    with pytest.raises(atomic.DiskFullError) as e:
      atomic.write_bytes(path, b"x" * (64 << 10))
    assert path in str(e.value) and "Disk full" in str(e.value), str(e.value)
    assert "\n" not in str(e.value)
    assert json.loads(_read(path)) == {"version": 1}
    assert sorted(os.listdir(disk)) == ["filler.bin", "manifest.json"]  # no temporary left
    small_disk.free(disk)
    atomic.write_bytes(path, b"x" * (64 << 10))
    assert os.path.getsize(path) == 64 << 10


def test_is_disk_full_tells_enospc_from_other_errors():
  import errno  # pylint: disable=g-import-not-at-top
  assert atomic.is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
  assert atomic.is_disk_full(tf.errors.ResourceExhaustedError(None, None,
                                                              "/x; No space left on device"))
  assert not atomic.is_disk_full(OSError(errno.EACCES, "Permission denied"))
  assert not atomic.is_disk_full(tf.errors.ResourceExhaustedError(None, None, "OOM allocating"))
