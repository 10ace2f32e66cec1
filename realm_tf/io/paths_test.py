"""Tests for realm_tf.io.paths on local disk and on TensorFlow's in-memory filesystem (ram://),
which `open()` and `os.path` cannot reach, as they cannot reach gs://."""
import os

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.io import paths


def test_absolute_keeps_urls_and_makes_local_paths_absolute(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert paths.absolute("gs://bucket/run/./index/../corpus/") == "gs://bucket/run/corpus"
  assert paths.absolute("ram://x") == "ram://x"
  assert paths.absolute("rel/a/../b/") == str(tmp_path / "rel" / "b")
  assert paths.absolute(tmp_path / "c") == str(tmp_path / "c")
  assert paths.is_remote("gs://b/x") and not paths.is_remote(str(tmp_path))


def test_copy_tree_between_local_disk_and_ram(tmp_path):
  src = tmp_path / "src"
  (src / "sub").mkdir(parents=True)
  (src / "a.txt").write_text("alpha")
  (src / "sub" / "b.bin").write_bytes(b"\x00\x01")
  remote = f"ram://{tmp_path.name}/copy"
  paths.copy_tree(str(src), remote)
  assert sorted(tf.io.gfile.listdir(remote)) == ["a.txt", "sub"]
  back = tmp_path / "back"
  paths.copy_tree(remote, str(back))
  assert (back / "a.txt").read_text() == "alpha"
  assert (back / "sub" / "b.bin").read_bytes() == b"\x00\x01"
  tf.io.gfile.rmtree(remote)


def test_local_copy_of_a_remote_file_outlives_its_block_as_a_memory_map(tmp_path):
  local = tmp_path / "a.npy"
  np.save(local, np.arange(12, dtype=np.float32).reshape(3, 4))
  with paths.local_copy(str(local)) as same:
    assert same == str(local)  # a local file is read where it is
  remote = f"ram://{tmp_path.name}/a.npy"
  tf.io.gfile.copy(str(local), remote)
  with paths.local_copy(remote) as copy:
    assert not paths.is_remote(copy) and os.path.exists(copy)
    mapped = np.load(copy, mmap_mode="r")
  assert not os.path.exists(copy)  # the temporary copy is gone ...
  np.testing.assert_array_equal(mapped[2], [8, 9, 10, 11])  # ... its mapping is still readable
  tf.io.gfile.remove(remote)


def test_verify_checkpoint_names_the_damaged_file_and_passes_a_whole_one(tmp_path):
  ckpt = tf.train.Checkpoint(a=tf.Variable(np.arange(1000, dtype=np.float32)),
                             b=tf.Variable(np.ones(1000, np.float32)))
  prefix = ckpt.write(str(tmp_path / "ckpt"))
  paths.verify_checkpoint(prefix)
  data = tf.io.gfile.glob(prefix + ".data-*")[0]
  with open(data, "r+b") as f:
    f.seek(2000)
    byte = f.read(1)
    f.seek(2000)
    f.write(bytes([byte[0] ^ 0x01]))
  with pytest.raises(tf.errors.DataLossError) as e:
    paths.verify_checkpoint(prefix)
  assert prefix in str(e.value) and os.path.basename(data) in str(e.value), str(e.value)
  os.remove(data)
  with pytest.raises(tf.errors.DataLossError, match="ckpt"):
    paths.verify_checkpoint(prefix)
