"""Tests for the embedder export: layout, atomic publication, loading, validation."""
import json
import os
import shutil
import time

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.retrieval import embedder_export as ee
from realm_tf.testing import retrieval_fixtures as testing


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp("model"))
  retriever = testing.make_retriever(seed=1)
  path = ee.export_embedder(retriever, model_dir, 1200)
  return retriever, model_dir, path


def _features(batch, length, seed):
  ids = tf.random.stateless_uniform([batch, length], [seed, 0], 1000, 30000, tf.int32)
  return {"input_word_ids": ids, "input_mask": tf.ones_like(ids),
          "input_type_ids": tf.zeros_like(ids)}


def test_layout_and_metadata(exported):
  _, model_dir, path = exported
  assert path == os.path.join(model_dir, "embedder_exports", "00001200")
  with open(os.path.join(path, ee.METADATA)) as f:
    meta = json.load(f)
  assert meta["step"] == 1200
  assert (meta["query_seq_length"], meta["doc_seq_length"]) == (testing.QUERY_LEN, testing.DOC_LEN)
  assert meta["embedding_dim"] == 128
  assert meta["encoder_config"]["hidden_size"] == 128 and meta["encoder_config"]["num_layers"] == 2
  from realm_tf.text import RealmTokenizer
  tok = RealmTokenizer()
  assert (meta["vocab_fingerprint"], meta["cls_id"], meta["sep_id"]) == (
      tok.fingerprint, tok.cls_id, tok.sep_id)
  # Nothing but the published export is left in embedder_exports/ (the temp dir was renamed).
  assert os.listdir(os.path.join(model_dir, "embedder_exports")) == ["00001200"]
  loaded = tf.saved_model.load(path)
  assert set(loaded.signatures.keys()) == {"embed_queries", "embed_documents"}
  sig = loaded.signatures["embed_documents"]
  assert sig.structured_input_signature[1]["input_word_ids"].shape.as_list() == [None,
                                                                                testing.DOC_LEN]


def test_loaded_embedder_matches_retriever(exported):
  retriever, _, path = exported
  emb = ee.load_embedder(path)
  assert emb.step == 1200 and emb.doc_seq_length == testing.DOC_LEN
  q = _features(3, testing.QUERY_LEN, 1)
  d = _features(4, testing.DOC_LEN, 2)
  np.testing.assert_allclose(emb.embed_queries(q).numpy(), retriever.embed_queries(q).numpy(),
                             atol=1e-5)
  np.testing.assert_allclose(emb.embed_documents(d).numpy(),
                             retriever.embed_documents(d).numpy(), atol=1e-5)
  # The signature is also usable by name (what TF Serving calls).
  out = emb.module.signatures["embed_queries"](**q)
  assert out["embeddings"].shape == (3, 128)


def test_latest_export_ignores_temp_dirs_and_re_export_is_kept(exported, tmp_path):
  retriever, model_dir, path = exported
  os.makedirs(os.path.join(model_dir, "embedder_exports", ".tmp-00009999-abcd"))
  assert ee.latest_export(model_dir) == path
  assert ee.export_embedder(retriever, model_dir, 1200) == path  # already there: kept
  assert ee.latest_export(str(tmp_path)) is None


def test_missing_and_half_written_exports_name_the_file(exported, tmp_path):
  _, model_dir, path = exported
  with pytest.raises(ee.ExportError, match="does not exist"):
    ee.load_embedder(str(tmp_path / "embedder_exports" / "00000001"))
  half = tmp_path / "embedder_exports" / "00000002"
  half.mkdir(parents=True)
  (half / "saved_model.pb").write_bytes(b"\x00")
  with pytest.raises(ee.ExportError, match=f"{half}.*realm_export.json is missing"):
    ee.load_embedder(str(half))
  (half / "realm_export.json").write_text("{\"step\": 2")
  with pytest.raises(ee.ExportError, match="realm_export.json is not valid JSON"):
    ee.load_embedder(str(half))
  meta = json.loads(open(os.path.join(path, ee.METADATA)).read())
  (half / "realm_export.json").write_text(json.dumps(dict(meta, step=1200)))
  with pytest.raises(ee.ExportError, match="named for step 2 but .*realm_export.json says "
                                           "step 1200"):
    ee.load_embedder(str(half))
  (half / "realm_export.json").write_text(json.dumps(dict(meta, step=2)))
  with pytest.raises(ee.ExportError, match=f"{half / 'variables'} is missing"):
    ee.load_embedder(str(half))


def test_corpus_compatibility(exported):
  _, _, path = exported
  meta = ee.read_metadata(path)
  manifest = {"vocab_fingerprint": meta["vocab_fingerprint"], "max_block_length": testing.DOC_LEN}
  ee.check_corpus_compatible(meta, manifest, path, "/c/manifest.json")  # no error
  with pytest.raises(ee.ExportError, match=r"Vocabulary mismatch: .*realm_export.json.*"
                                           r"/c/manifest.json"):
    ee.check_corpus_compatible(meta, dict(manifest, vocab_fingerprint="f00"), path,
                               "/c/manifest.json")
  with pytest.raises(ee.ExportError, match="doc_seq_length=32 .*/c/manifest.json has "
                                           "max_block_length=288"):
    ee.check_corpus_compatible(meta, dict(manifest, max_block_length=288), path,
                               "/c/manifest.json")


def test_keep_prunes_old_exports(exported, tmp_path):
  retriever, _, path = exported
  model_dir = str(tmp_path)
  for step in (1, 2):
    shutil.copytree(path, ee.export_path(model_dir, step))
  ee.export_embedder(retriever, model_dir, 3, keep=2, grace_seconds=0)
  assert [os.path.basename(p) for p in ee.list_exports(model_dir)] == ["00000002", "00000003"]
  assert not ee.training_done(model_dir)
  open(os.path.join(model_dir, ee.TRAINING_DONE), "w").close()
  assert ee.training_done(model_dir)


def _steps(model_dir):
  return [int(os.path.basename(p)) for p in ee.list_exports(model_dir)]


def _set_created(path, created):
  meta_path = os.path.join(path, ee.METADATA)
  with open(meta_path) as f:
    meta = json.load(f)
  with open(meta_path, "w") as f:
    json.dump(dict(meta, created=created), f)


def test_prune_keeps_newest_best_and_held_exports(exported, tmp_path):
  _, _, path = exported
  model_dir = str(tmp_path)
  for step in range(100, 700, 100):
    _set_created(testing.copy_export(path, model_dir, step), time.time() - 3600)
  with open(os.path.join(model_dir, ee.BEST_EXPORT), "w") as f:
    json.dump({"step": 200, "export": ee.export_path(model_dir, 200)}, f)
  with ee.hold_export(ee.export_path(model_dir, 300)):  # a refresher embeds with it
    deleted = ee.prune_exports(model_dir, keep=2)
    assert [os.path.basename(p) for p in deleted] == ["00000100", "00000400"]
    assert _steps(model_dir) == [200, 300, 500, 600]
  assert ee.prune_exports(model_dir, keep=2) == [ee.export_path(model_dir, 300)]
  assert _steps(model_dir) == [200, 500, 600]  # the best stays whatever its age
  assert sorted(os.listdir(ee.exports_dir(model_dir))) == [
      ".leases", "00000200", "00000500", "00000600"]  # nothing half-deleted left behind


def test_prune_spares_recently_superseded_and_ignores_stale_leases(exported, tmp_path):
  _, _, path = exported
  model_dir = str(tmp_path)
  _set_created(testing.copy_export(path, model_dir, 1), time.time() - 3600)
  _set_created(testing.copy_export(path, model_dir, 2), time.time() - 3600)
  _set_created(testing.copy_export(path, model_dir, 3), time.time())
  # Step 2 was superseded moments ago: a refresher may have just picked it.
  assert ee.prune_exports(model_dir, keep=1, grace_seconds=600) == [ee.export_path(model_dir, 1)]
  assert _steps(model_dir) == [2, 3]
  with ee.hold_export(ee.export_path(model_dir, 2)):
    lease, = os.listdir(os.path.join(ee.exports_dir(model_dir), ee.LEASES_SUBDIR))
    lease = os.path.join(ee.exports_dir(model_dir), ee.LEASES_SUBDIR, lease)
    assert ee.prune_exports(model_dir, keep=1, grace_seconds=0) == []
    os.utime(lease, (time.time() - 7200, time.time() - 7200))  # its holder died long ago
    assert ee.prune_exports(model_dir, keep=1, grace_seconds=0, lease_seconds=3600) == [
        ee.export_path(model_dir, 2)]
    assert not os.path.exists(lease)
  assert _steps(model_dir) == [3]


def _matmul_dtypes(fn) -> set:
  """The dtypes of the matrix products (MatMul, BatchMatMul, Einsum) in a loaded function's graph
  and the functions it calls."""
  graph_def = fn.concrete_functions[0].graph.as_graph_def()
  nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
  return {tf.as_dtype(n.attr["T"].type).name for n in nodes
          if "MatMul" in n.op or n.op == "Einsum"}


# "auto" gives bfloat16 on a host with native bfloat16 (the trainer's own tower), else float32
# (a float32 copy of the query tower), as "float32" always does.
@pytest.mark.parametrize("policy,query_dtype", [("mixed_bfloat16", "float32"),
                                                ("mixed_bfloat16", "auto")])
def test_host_query_embedder_dtype_follows_the_rule(policy, query_dtype, tmp_path):
  from realm_tf.retrieval import host_precision  # pylint: disable=g-import-not-at-top
  with host_precision.keras_policy(policy):
    retriever = testing.make_retriever(seed=4)
  trainer_dtype = "bfloat16" if policy == "mixed_bfloat16" else "float32"
  expected = host_precision.resolve_query_dtype(query_dtype, trainer_dtype)
  path = ee.export_embedder(retriever, str(tmp_path), 7, query_dtype=query_dtype)
  emb = ee.load_embedder(path)
  assert (emb.metadata["query_dtype"], emb.metadata["trainer_dtype"]) == (expected, trainer_dtype)
  assert emb.metadata["host_native_bf16"] == host_precision.native_bf16()
  assert _matmul_dtypes(emb.module.embed_queries) == {expected}
  assert _matmul_dtypes(emb.module.embed_documents) == {trainer_dtype}  # the trainer's own
  q = _features(5, testing.QUERY_LEN, 3)
  got = emb.embed_queries(q).numpy()
  # Exactly the tower in the host dtype; the trainer's tower up to bfloat16 rounding.
  host_tower = host_precision.query_tower_in(retriever, expected)
  np.testing.assert_allclose(got, tf.cast(host_tower.embed_queries(q), tf.float32).numpy(),
                             atol=1e-5 if expected == "float32" else 2e-2)
  np.testing.assert_allclose(got, tf.cast(retriever.embed_queries(q), tf.float32).numpy(),
                             atol=0.1)
  assert np.corrcoef(got.ravel(), retriever.embed_queries(q).numpy().astype(
      np.float32).ravel())[0, 1] > 0.999
  # Every weight saved once, with the trainer's values in the trainer's order (warm starts).
  saved = emb.module.retriever_variables
  assert len(saved) == len(retriever.variables)
  for a, b in zip(saved, retriever.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
