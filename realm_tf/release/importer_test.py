"""Tests for importing a released ORQA/REALM evidence index (the files written in the original
formats by realm_tf.testing.orqa_release, a tiny embedder under REALM's TF1 names)."""
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.testing import bert_checkpoints
from realm_tf.data import corpus as corpus_lib
from realm_tf.data.block_lookup import BlockLookup
from realm_tf.release import importer
from realm_tf.release.files import ReleaseError
from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.retrieval.topk import exact_top_k
from realm_tf.testing import orqa_release
from realm_tf.testing.cli import run_cli
from realm_tf.text import RealmTokenizer

N = 240
WIDTH = bert_checkpoints.PROJ  # 128, as released


def _texts(n):
  rng = np.random.default_rng(0)
  titles = [f"Page {i // 3} é" for i in range(n)]
  # Every 7th body is longer than a 288-wordpiece block: it is cut where the block ends.
  bodies = [f"block {i} " + " ".join(f"w{int(x)}" for x in rng.integers(0, 50, 400 if i % 7 == 0
                                                                         else 20))
            for i in range(n)]
  return titles, bodies


@pytest.fixture(scope="module")
def release(tmp_path_factory):
  root = tmp_path_factory.mktemp("release")
  titles, bodies = _texts(N)
  blocks_path, titles_path = orqa_release.write_block_files(str(root), titles, bodies)
  embedder = orqa_release.write_tiny_embedder(str(root / "embedder"))
  emb = np.random.default_rng(1).standard_normal((N, WIDTH)).astype(np.float32)
  ckpt = orqa_release.write_encoded_checkpoint(
      os.path.join(embedder, "encoded", "encoded.ckpt"), emb)
  return {"root": root, "titles": titles, "bodies": bodies, "emb": emb, "ckpt": ckpt,
          "config": importer.ImportConfig(blocks=blocks_path, titles=titles_path,
                                          embedder=embedder, num_shards=3, rows_per_slice=50)}


@pytest.fixture(scope="module")
def imported(release, tmp_path_factory):
  """{searcher: (work dir, result)} for both searchers."""
  out = {}
  for kind in importer.SEARCHERS:
    work = str(tmp_path_factory.mktemp(f"work_{kind}"))
    shutil.rmtree(work)
    cfg = importer.ImportConfig(**dict(release["config"].to_dict(), work_dir=work, searcher=kind))
    out[kind] = (work, importer.run(cfg))
  return out


def test_corpus_rows_are_the_release_rows(release, imported):
  work, result = imported["scann"]
  assert result["num_rows"] == N and result["num_shards"] == 3
  manifest = corpus_lib.load_manifest(os.path.join(work, "corpus"))
  assert manifest["num_blocks"] == N and manifest["max_block_length"] == 288
  corpus_lib.verify_shards(os.path.join(work, "corpus"))
  tok = RealmTokenizer()
  cut = 0
  for i, ex in enumerate(corpus_lib.read_blocks(os.path.join(work, "corpus"))):
    title, body = ex["title"].numpy().decode(), ex["body"].numpy().decode()
    assert int(ex["block_id"]) == i
    assert title == release["titles"][i] and ex["doc_id"].numpy().decode() == title
    assert len(ex["title_ids"]) + len(ex["body_ids"]) + 3 <= 288
    # The ids are the project tokenizer's of the kept text; a long body is cut at a wordpiece.
    np.testing.assert_array_equal(ex["title_ids"], tok.tokenize([title]).flat_values)
    np.testing.assert_array_equal(ex["body_ids"], tok.tokenize([body]).flat_values)
    if body != release["bodies"][i]:
      assert i % 7 == 0 and release["bodies"][i].startswith(body)
      assert len(ex["title_ids"]) + len(ex["body_ids"]) + 3 == 288
      cut += 1
  assert cut == result["truncated_blocks"] == len(range(0, N, 7))
  lookup = BlockLookup.open(os.path.join(work, "corpus"))
  np.testing.assert_array_equal(lookup.block_ids, np.arange(N))
  assert lookup.texts([5])[0] == [release["titles"][5]]
  assert lookup.texts([5])[1] == [release["bodies"][5]]


@pytest.mark.parametrize("kind", importer.SEARCHERS)
def test_bundle_holds_block_emb_as_released(release, imported, kind):
  work, result = imported[kind]
  bundle = bundle_lib.latest(os.path.join(work, "index"), load=True)
  assert bundle.version == 1 and bundle.manifest["searcher"]["kind"] == {
      "scann": "scann", "exact": "brute_force"}[kind]
  np.testing.assert_array_equal(np.asarray(bundle.embeddings), release["emb"])
  np.testing.assert_array_equal(bundle.block_ids, np.arange(N))
  # block_emb is stored (and loaded) once: the searcher's checkpoint holds one float copy (no
  # ScaNN re-ordering copy: ORQA's candidates are re-scored from it) and no embeddings.npy.
  assert bundle.embeddings_in_searcher
  assert not os.path.exists(os.path.join(bundle.path, bundle_lib.EMBEDDINGS))
  reader = tf.train.load_checkpoint(os.path.join(bundle.path, "searcher", "variables", "variables"))
  floats = sum(int(np.prod(shape)) for name, shape in reader.get_variable_to_shape_map().items()
               if reader.get_variable_to_dtype_map()[name] == tf.float32)
  assert N * WIDTH <= floats <= N * WIDTH + 16
  if kind == "scann":
    assert bundle.manifest["searcher"]["config"]["rescoring"] == "gather"
  meta = bundle.query_embedder.metadata
  assert meta["retrieval_score_scale"] == 1.0 and meta["query_seq_length"] == 96
  assert meta["retriever_config"]["pooling"] == "cls" and meta["embedding_dim"] == WIDTH
  assert bundle.manifest["release"]["embeddings"] == release["ckpt"]
  record = json.load(open(os.path.join(work, "release", "import.json")))
  assert record["bundle"] == bundle.path and record["num_rows"] == N
  # The stages downstream open it as they open a pre-training's (fine-tuning's FrozenIndex).
  from realm_tf.stages import finetune  # pylint: disable=g-import-not-at-top
  _, index = finetune.load_index(os.path.join(work, "index"), os.path.join(work, "corpus"))
  assert index.size == N and index.texts([3])[0] == [release["titles"][3]]
  assert finetune.index_retriever_config(bundle).projection_size == WIDTH
  bundle.close()


def test_searchers_return_exactly_scored_top_k(release, imported):
  q = np.random.default_rng(2).standard_normal((6, WIDTH)).astype(np.float32)
  exact_rows, exact_scores = exact_top_k(q, release["emb"], 10)
  for kind in importer.SEARCHERS:
    bundle = bundle_lib.latest(os.path.join(imported[kind][0], "index"))
    rows, scores = (t.numpy() for t in bundle.searcher.search(tf.constant(q), tf.constant(10)))
    # Every score is the exact inner product of its row, best first.
    np.testing.assert_allclose(scores, np.take_along_axis(q @ release["emb"].T, rows, 1),
                               rtol=1e-5, atol=1e-4)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    if kind == "exact":
      np.testing.assert_array_equal(rows, exact_rows)
    bundle.close()
  cfg = imported["scann"][1]["searcher_config"]
  assert (cfg["mode"], cfg["dimensions_per_block"], cfg["num_leaves"],
          cfg["reordering_num_neighbors"]) == ("tree_ah", 2, N // 16, 1)
  assert np.isnan(cfg["anisotropic_quantization_threshold"])
  # Re-scoring every point exactly, ORQA's ScaNN returns the exact top-k.
  full = importer.build_searcher(
      importer.ImportConfig(scann_reordering_num_neighbors=N), release["emb"])
  rows, scores = (t.numpy() for t in full.search(tf.constant(q), tf.constant(10)))
  np.testing.assert_array_equal(rows, exact_rows)
  np.testing.assert_allclose(scores, exact_scores, rtol=1e-5, atol=1e-4)
  full.release()


def _refused(release, tmp_path, match, **changes):
  work = str(tmp_path / "work")
  cfg = importer.ImportConfig(**dict(release["config"].to_dict(), work_dir=work, **changes))
  with pytest.raises(ReleaseError) as err:
    importer.run(cfg)
  message = str(err.value)
  assert "\n" not in message and match in message, message
  assert not os.path.exists(work), os.listdir(work)
  return message


def test_refuses_row_counts_that_differ(release, tmp_path):
  titles = str(tmp_path / "short" / "titles.tfr")
  os.makedirs(os.path.dirname(titles))
  orqa_release.write_records(titles, release["titles"][:-1])
  message = _refused(release, tmp_path, titles, titles=titles)
  assert f"{N - 1} records" in message and f"{N} rows" in message
  # Both files agree and block_emb is one row short: the checkpoint is named.
  ckpt = orqa_release.write_encoded_checkpoint(str(tmp_path / "enc" / "encoded.ckpt"),
                                               release["emb"][:-1])
  message = _refused(release, tmp_path, ckpt, embeddings=ckpt)
  assert f"{N - 1} rows" in message and f"{N} records" in message


def test_refuses_a_checkpoint_without_block_emb(release, tmp_path):
  ckpt = orqa_release.write_encoded_checkpoint(str(tmp_path / "enc" / "encoded.ckpt"),
                                               release["emb"], variable_name="embeddings")
  assert "block_emb" in _refused(release, tmp_path, ckpt, embeddings=ckpt)


def test_refuses_a_width_other_than_the_query_towers(release, tmp_path):
  ckpt = orqa_release.write_encoded_checkpoint(str(tmp_path / "enc" / "encoded.ckpt"),
                                               release["emb"][:, :64])
  assert "64 wide" in _refused(release, tmp_path, ckpt, embeddings=ckpt)


def test_refuses_a_truncated_tfrecord(release, tmp_path):
  blocks = str(tmp_path / "cut" / "blocks.tfr")
  os.makedirs(os.path.dirname(blocks))
  data = open(release["config"].blocks, "rb").read()
  with open(blocks, "wb") as f:
    f.write(data[:len(data) - 40])  # the last record cut short
  assert "cut short" in _refused(release, tmp_path, blocks, blocks=blocks)


def test_cli_imports_and_refuses_an_existing_work_dir(release, imported):
  cfg = release["config"]
  work = imported["exact"][0]
  proc = run_cli("realm_tf.launch.import_release", f"--blocks={cfg.blocks}",
                 f"--titles={cfg.titles}", f"--embedder={cfg.embedder}", f"--work_dir={work}",
                 "--searcher=exact", "--overwrite", "--num_shards=2")
  assert proc.returncode == 0, proc.stderr[-3000:]
  figures = json.loads(proc.stdout.strip().splitlines()[-1])
  assert figures["num_rows"] == N and figures["searcher"] == "exact"
  assert corpus_lib.load_manifest(os.path.join(work, "corpus"))["num_blocks"] == N
  assert len(corpus_lib.load_manifest(os.path.join(work, "corpus"))["shards"]) == 2
  assert not [n for n in os.listdir(work) if n.startswith(".")]
  with pytest.raises(FileExistsError, match="corpus"):
    importer.run(importer.ImportConfig(**dict(cfg.to_dict(), work_dir=work)))
