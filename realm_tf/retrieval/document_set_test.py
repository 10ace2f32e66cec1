"""Tests for the document set: combining embedding parts, removed ids and the ids file."""
import numpy as np
import pytest

from realm_tf.data import corpus as corpus_lib
from realm_tf.retrieval.document_set import DocumentSet, combine, read_ids_file
from realm_tf.testing import retrieval_fixtures as testing


def test_later_parts_replace_rows_and_removed_ids_are_dropped():
  base = (np.array([1, 2, 3], np.int64), np.array([[1.0], [2.0], [3.0]], np.float32))
  added = (np.array([2, 9], np.int64), np.array([[20.0], [90.0]], np.float32))
  ids, emb = combine([base, added], np.array([3], np.int64))
  assert ids.tolist() == [1, 2, 9] and emb[:, 0].tolist() == [1.0, 20.0, 90.0]
  assert ids.dtype == np.int64 and emb.dtype == np.float32
  ids, emb = combine([base], np.zeros([0], np.int64))
  assert ids.tolist() == [1, 2, 3] and emb.shape == (3, 1)


def test_fingerprint_is_the_corpus_one_until_documents_change(tmp_path):
  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  testing.make_corpus(a, (3,), seed=1)
  testing.make_corpus(b, (2,), seed=2, doc_prefix="new")
  base = DocumentSet([a])
  assert base.fingerprint() == corpus_lib.load_manifest(a)["fingerprint"]
  added, removed = DocumentSet([a, b]), DocumentSet([a], np.array([5], np.int64))
  assert len({base.fingerprint(), added.fingerprint(), removed.fingerprint()}) == 3
  assert DocumentSet([a], np.array([5], np.int64)).fingerprint() == removed.fingerprint()
  assert added.fingerprints() == [base.fingerprint(), DocumentSet([b]).fingerprint()]


def test_each_manifest_is_read_once(tmp_path, monkeypatch):
  a = str(tmp_path / "a")
  testing.make_corpus(a, (3,), seed=1)
  reads = []
  real = corpus_lib.load_manifest
  monkeypatch.setattr(corpus_lib, "load_manifest", lambda d: reads.append(d) or real(d))
  docs = DocumentSet([a])
  docs.fingerprint(), docs.fingerprints(), docs.manifest(a)
  assert reads == [a]


def test_ids_file_names_the_bad_line(tmp_path):
  path = tmp_path / "ids.txt"
  path.write_text("# gone\n7\n\n8  # dup\n")
  assert read_ids_file(str(path)).tolist() == [7, 8]
  path.write_text("7\nx\n")
  with pytest.raises(corpus_lib.CorpusError, match=f"{path}:2: expected one integer"):
    read_ids_file(str(path))
  with pytest.raises(corpus_lib.CorpusError, match="does not exist"):
    read_ids_file(str(tmp_path / "none.txt"))
