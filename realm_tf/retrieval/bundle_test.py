"""Tests for index bundles: layout, latest(), pruning, and publishing under concurrent readers."""
import json
import os
import threading

import numpy as np
import pytest

from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.retrieval import embedder_export as ee
from realm_tf.testing import retrieval_fixtures as testing
from realm_tf.retrieval.brute_force import BruteForceSearcher
from realm_tf.retrieval.scann_searcher import ScannConfig, ScannSearcher


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
  return ee.export_embedder(testing.make_retriever(seed=3),
                            str(tmp_path_factory.mktemp("model")), 42)


def _publish(index_dir, export_dir, n, seed, keep=3, grace=0.0, searcher_class=None):
  emb = testing.clustered(n, seed=seed)
  ids = np.arange(1000 * seed, 1000 * seed + n, dtype=np.int64)
  searcher = searcher_class(emb) if searcher_class else ScannSearcher(emb, ScannConfig())
  return bundle_lib.publish(
      index_dir, export_dir=export_dir, searcher=searcher,
      embeddings=emb, block_ids=ids, manifest={"step": 42, "source_export": export_dir,
                                               "seed": seed},
      keep=keep, grace_seconds=grace)


def test_layout_manifest_and_latest(export_dir, tmp_path):
  index_dir = str(tmp_path / "index")
  with pytest.raises(bundle_lib.BundleNotFoundError, match=f"No index bundle published in "
                                                           f"{index_dir}"):
    bundle_lib.latest(index_dir)
  b = _publish(index_dir, export_dir, 50, seed=1)
  assert b.path == os.path.join(index_dir, "00000001") and b.version == 1
  # The embeddings are stored once: in the searcher's checkpoint, not in an embeddings.npy too.
  assert sorted(os.listdir(b.path)) == sorted([
      "query_embedder", "searcher", "block_ids.npy", "removed_block_ids.npy", "manifest.json"])
  assert os.listdir(index_dir) == ["00000001"]  # no temp dir left behind
  m = json.load(open(os.path.join(b.path, "manifest.json")))
  assert (m["version"], m["num_rows"], m["embedding_dim"], m["embedding_dtype"]) == (
      1, 50, 128, "float32")
  assert m["searcher"]["kind"] == "scann" and m["searcher"]["config"]["mode"] == "brute_force"
  assert m["step"] == 42 and m["source_export"] == export_dir and m["created"] > 0
  _publish(index_dir, export_dir, 60, seed=2)
  latest = bundle_lib.latest(index_dir, load=True)
  assert latest.version == 2 and latest.embeddings.shape == (60, 128)
  assert latest.embeddings.dtype == np.float32 and isinstance(latest.embeddings, np.memmap)
  np.testing.assert_array_equal(latest.embeddings, testing.clustered(60, seed=2))  # row order
  np.testing.assert_array_equal(latest.block_ids, np.arange(2000, 2060))
  searcher = latest.searcher
  rows, _ = searcher.search(latest.embeddings[:3], 5)
  assert rows.shape == (3, 5) and rows.numpy().max() < 60
  q = latest.query_embedder.embed_queries(
      {k: np.ones([2, testing.QUERY_LEN], np.int32) for k in ee.INPUT_KEYS})
  assert q.shape == (2, 128)
  latest.close()  # frees the searcher's index at once; parts load again on use
  assert not searcher.release()
  assert latest.searcher is not searcher and latest.embeddings.shape == (60, 128)


class _ExactWithoutKey(BruteForceSearcher):
  """A searcher that does not name its matrix (as a format-1 bundle's manifest does not)."""
  embeddings_key = None


def test_embeddings_npy_when_the_searcher_does_not_hold_the_matrix(export_dir, tmp_path):
  b = _publish(str(tmp_path), export_dir, 40, seed=3, searcher_class=_ExactWithoutKey)
  assert os.path.exists(os.path.join(b.path, "embeddings.npy"))
  opened = bundle_lib.open_bundle(b.path, load=True)
  np.testing.assert_array_equal(opened.embeddings, testing.clustered(40, seed=3))
  os.remove(os.path.join(b.path, "embeddings.npy"))
  with pytest.raises(bundle_lib.BundleError, match="embeddings.npy is missing"):
    bundle_lib.open_bundle(b.path)


def test_latest_ignores_temp_and_incomplete_versions(export_dir, tmp_path):
  index_dir = str(tmp_path)
  _publish(index_dir, export_dir, 30, seed=1)
  os.makedirs(os.path.join(index_dir, ".tmp-abc", "searcher"))   # a publish in progress
  os.makedirs(os.path.join(index_dir, "00000007"))               # no manifest: not a bundle
  assert bundle_lib.latest(index_dir).version == 1
  with pytest.raises(bundle_lib.BundleError, match="00000007 has no manifest.json"):
    bundle_lib.open_bundle(os.path.join(index_dir, "00000007"))
  # The next version number skips past anything already on disk.
  assert _publish(index_dir, export_dir, 30, seed=2).version == 8


def test_keep_and_grace_period(export_dir, tmp_path):
  index_dir = str(tmp_path)
  for seed in range(1, 4):
    _publish(index_dir, export_dir, 20, seed=seed, keep=1, grace=3600)
  # Superseded moments ago: still within the grace period, so nothing is deleted.
  assert bundle_lib.list_versions(index_dir) == [1, 2, 3]
  assert bundle_lib.prune(index_dir, keep=2, grace_seconds=0) == [1]
  assert bundle_lib.list_versions(index_dir) == [2, 3]
  assert not [n for n in os.listdir(index_dir) if n.startswith(".trash")]


def test_latest_picks_again_when_its_bundle_is_pruned_while_loading(export_dir, tmp_path,
                                                                    monkeypatch):
  index_dir = str(tmp_path)
  _publish(index_dir, export_dir, 30, seed=1, keep=5)
  _publish(index_dir, export_dir, 31, seed=2, keep=5)
  real_load = ee.load_embedder
  calls = []

  def load_while_a_publisher_prunes(path):
    calls.append(path)
    if len(calls) == 1:  # the newest version is published and this one pruned mid-load
      _publish(index_dir, export_dir, 33, seed=3, keep=1, grace=0.0)
      assert not os.path.exists(path)
    return real_load(path)  # the first call fails: its SavedModel is gone

  monkeypatch.setattr(ee, "load_embedder", load_while_a_publisher_prunes)
  b = bundle_lib.latest(index_dir, load=True)
  assert (b.version, b.num_rows, b.manifest["seed"]) == (3, 33, 3)
  assert [os.path.basename(os.path.dirname(c)) for c in calls] == ["00000002", "00000003"]
  # A load failure of a bundle that is still there is not retried: it is the caller's error.
  os.remove(os.path.join(b.path, "query_embedder", "saved_model.pb"))
  monkeypatch.setattr(ee, "load_embedder", real_load)
  with pytest.raises(ee.ExportError, match="00000003"):
    bundle_lib.latest(index_dir, load=True)


def test_reader_never_sees_a_half_published_bundle(export_dir, tmp_path):
  index_dir = str(tmp_path)
  _publish(index_dir, export_dir, 41, seed=1, keep=2)
  errors, opened = [], []
  stop = threading.Event()

  def publisher():
    try:
      for seed in range(2, 8):
        _publish(index_dir, export_dir, 40 + seed, seed=seed, keep=2, grace=0.0)
    except Exception as e:  # pylint: disable=broad-except
      errors.append(("publisher", repr(e)))
    finally:
      stop.set()

  def reader():
    while not stop.is_set():
      try:
        b = bundle_lib.latest(index_dir, load=True)
        seed = b.manifest["seed"]
        # Every part belongs to the same version: sizes and ids agree with the manifest.
        assert b.embeddings.shape == (40 + seed, 128) and b.num_rows == 40 + seed
        np.testing.assert_array_equal(b.block_ids[:2], [1000 * seed, 1000 * seed + 1])
        rows, _ = b.searcher.search(np.asarray(b.embeddings[:2]), 3)
        assert rows.numpy().max() < 40 + seed
        opened.append(b.version)
      except Exception as e:  # pylint: disable=broad-except
        errors.append(("reader", repr(e)))
        return

  threads = [threading.Thread(target=publisher), threading.Thread(target=reader)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(timeout=300)
  assert not errors, errors
  assert len(opened) >= 3 and opened == sorted(opened)
  assert bundle_lib.list_versions(index_dir) == [6, 7]


@pytest.mark.parametrize("part", ["searcher", "block_ids", "embeddings_npy"])
def test_a_short_part_is_a_one_line_error_naming_its_file(export_dir, tmp_path, part):
  from realm_tf.utils import command_line  # pylint: disable=g-import-not-at-top
  searcher_class = _ExactWithoutKey if part == "embeddings_npy" else None
  b = _publish(str(tmp_path), export_dir, 40, seed=4, searcher_class=searcher_class)
  name = {"searcher": os.path.join("searcher", "variables", "variables.data-00000-of-00001"),
          "block_ids": "block_ids.npy", "embeddings_npy": "embeddings.npy"}[part]
  path = os.path.join(b.path, name)
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)
  with pytest.raises(Exception) as e:
    bundle_lib.latest(str(tmp_path), load=True)
  assert command_line.is_user_error(e.value), repr(e.value)  # a CLI prints it as one `error:` line
  assert path in str(e.value), str(e.value)
