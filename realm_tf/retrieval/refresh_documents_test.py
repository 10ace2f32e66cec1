"""Tests for adding and removing documents without re-embedding the corpus."""
import os

import numpy as np
import pytest

from realm_tf.data import corpus as corpus_lib
from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.retrieval import embed_corpus
from realm_tf.retrieval import embedder_export as ee
from realm_tf.retrieval import refresh
from realm_tf.testing import retrieval_fixtures as testing
from realm_tf.testing.retrieval_fixtures import copy_export


def test_add_replace_and_remove_documents(tmp_path):
  model_dir = str(tmp_path / "model")
  export = ee.export_embedder(testing.make_retriever(seed=5), model_dir, 100)
  corpus_dir = str(tmp_path / "corpus")
  base_ids = testing.make_corpus(corpus_dir, (6, 6), seed=1)
  index_dir = str(tmp_path / "index")

  def refresher():
    return refresh.IndexRefresher(refresh.RefreshConfig(
        model_dir=model_dir, corpus_dir=corpus_dir, index_dir=index_dir, batch_size=8,
        grace_seconds=0, keep=10))

  v1 = refresher().run_once()
  embedder = ee.load_embedder(export)

  # --add: four new documents; only they are embedded, the old rows are reused as they were.
  new_dir = str(tmp_path / "new")
  new_ids = testing.make_corpus(new_dir, (4,), seed=2, doc_prefix="new")
  r = refresher()
  v2 = r.update_documents(add_dirs=[new_dir])
  assert r.last_stats.embedded == [0] and r.last_stats.num_blocks == 4
  assert v2.version == 2 and v2.num_rows == 16
  np.testing.assert_array_equal(v2.block_ids, base_ids + new_ids)
  np.testing.assert_array_equal(v2.embeddings[:12], v1.embeddings)
  ref_ids, ref_emb = embed_corpus.embed_blocks(embedder, corpus_lib.shard_paths(new_dir))
  np.testing.assert_array_equal(ref_ids, new_ids)
  np.testing.assert_allclose(v2.embeddings[12:], ref_emb, atol=1e-5)
  m = v2.manifest
  assert m["build"] == "incremental" and m["step"] == 100 and m["source_export"] == export
  assert m["changes"]["added_blocks"] == 4 and m["changes"]["base_version"] == 1
  assert m["documents"]["corpus_dirs"] == [corpus_dir, new_dir]
  rows, _ = v2.searcher.search(np.asarray(v2.embeddings[12:]), 16)
  assert rows.numpy().max() == 15  # the searcher covers the new rows

  # --remove: two old ids, one new id; comments and blank lines are allowed.
  ids_file = tmp_path / "gone.txt"
  ids_file.write_text(f"# stale documents\n{base_ids[0]}\n\n{base_ids[7]}\n{new_ids[1]}  # dup\n")
  v3 = refresher().update_documents(remove_file=str(ids_file))
  assert v3.num_rows == 13 and v3.manifest["changes"]["removed_blocks"] == 3
  assert not set(v3.block_ids) & {base_ids[0], base_ids[7], new_ids[1]}
  assert sorted(v3.removed_block_ids) == sorted([base_ids[0], base_ids[7], new_ids[1]])
  assert v3.manifest["corpus_fingerprint"] != v1.manifest["corpus_fingerprint"]

  # Re-adding a document under an existing id replaces its row (an updated document).
  upd_dir = str(tmp_path / "updated")
  upd_ids = testing.make_corpus(upd_dir, (1,), seed=9, doc_prefix="doc")  # "doc0" again
  assert upd_ids == [base_ids[0]]  # it was removed above: adding brings it back, updated
  v4 = refresher().update_documents(add_dirs=[upd_dir])
  assert v4.num_rows == 14 and base_ids[0] in set(v4.block_ids)
  row = int(np.where(v4.block_ids == base_ids[0])[0][0])
  assert not np.allclose(v4.embeddings[row], v1.embeddings[0], atol=1e-4)
  assert base_ids[0] not in set(v4.removed_block_ids)

  # A new export re-embeds the whole document set; additions and removals carry over.
  copy_export(export, model_dir, 200)
  v5 = refresher().run_once()
  assert v5.step == 200 and v5.manifest["build"] == "full"
  assert sorted(v5.block_ids) == sorted(v4.block_ids)
  assert v5.manifest["corpus_fingerprint"] == v4.manifest["corpus_fingerprint"]
  assert refresher().run_once() is None

  # Bad input: an unparsable ids file names the file and line; nothing is published.
  bad = tmp_path / "bad.txt"
  bad.write_text("123\nabc\n")
  with pytest.raises(corpus_lib.CorpusError, match=f"{bad}:2: expected one integer"):
    refresher().update_documents(remove_file=str(bad))
  with pytest.raises(corpus_lib.CorpusError, match="No corpus manifest"):
    refresher().update_documents(add_dirs=[str(tmp_path / "missing")])
  assert bundle_lib.latest(index_dir).version == 5
  assert os.path.isdir(v1.path)  # keep=10
