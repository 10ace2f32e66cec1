"""Tests of the doc-id table: each lookup row's document and a unique, traceable context id."""
import os

import pytest

from realm_tf.data import corpus
from realm_tf.data import doc_ids as D
from realm_tf.data.block_lookup import BlockLookup

# (doc_id, block index): "long doc" has three blocks, one of them in another shard.
BLOCKS = [("long doc", 0), ("solo", 0), ("long doc", 1), ("ünï#1", 0), ("long doc", 2)]


def _corpus(path, blocks=BLOCKS, shards=2):
  os.makedirs(path, exist_ok=True)
  records = [corpus.block_example(corpus.block_id_for(d, k), d, f"T{i}", f"body {i}", [7], [8, 9])
             for i, (d, k) in enumerate(blocks)]
  per = -(-len(records) // shards)
  written = [corpus.write_shard(os.path.join(path, corpus.SHARD_PATTERN.format(s, shards)),
                                records[s * per:(s + 1) * per]) for s in range(shards)]
  corpus.write_manifest(path, written, "vocab", 16)
  return path


def test_context_ids_are_unique_and_lead_back_to_the_block(tmp_path):
  path = _corpus(str(tmp_path / "c"))
  lookup = BlockLookup.open(path)
  table = D.DocIdTable.open(path, lookup)
  assert table.path == os.path.join(path, "lookup-doc_ids")
  rows = range(len(BLOCKS))
  assert table.doc_ids(rows) == [d for d, _ in BLOCKS]
  assert table.parts(rows).tolist() == [0, -1, 1, -1, 2]
  ids = table.context_ids([4, 1, 0, 3, 2])
  assert ids == ["long doc#2", "solo", "long doc#0", "ünï#1", "long doc#1"]
  assert len(set(table.context_ids(rows))) == len(BLOCKS)
  for row in rows:  # the corpus builder's block id, from the document id and the part
    doc, part = table.doc_ids([row])[0], max(int(table.parts([row])[0]), 0)
    assert corpus.block_id_for(doc, part) == int(lookup.block_ids[row])
  assert table.meta["num_documents"] == 3


def test_built_once_and_rebuilt_for_another_corpus(tmp_path):
  path = _corpus(str(tmp_path / "c"))
  lookup = BlockLookup.open(path)
  table = D.DocIdTable.open(path, lookup)
  stamp = os.stat(os.path.join(table.path, D.META)).st_mtime_ns
  assert D.DocIdTable.open(path, lookup).doc_ids([1]) == ["solo"]
  assert os.stat(os.path.join(table.path, D.META)).st_mtime_ns == stamp  # not rebuilt
  # The corpus rewritten with other documents: the lookup and the table are rebuilt.
  other = [("x", 0), ("y", 0), ("x", 1)]
  for name in os.listdir(path):
    if name.startswith("blocks-"):
      os.remove(os.path.join(path, name))
  _corpus(path, other, shards=1)
  lookup = BlockLookup.open(path)
  assert D.DocIdTable.open(path, lookup).context_ids([0, 1, 2]) == ["x#0", "y", "x#1"]


def test_a_lookup_of_another_corpus_is_refused(tmp_path):
  a = _corpus(str(tmp_path / "a"))
  b = _corpus(str(tmp_path / "b"), [("p", 0), ("q", 0), ("r", 0), ("s", 0), ("t", 0)])
  with pytest.raises(corpus.CorpusError, match="from row 0 are not those of the block lookup"):
    D.build_table(b, BlockLookup.open(a), str(tmp_path / "t"))
  assert not os.path.exists(tmp_path / "t")


def test_empty_doc_ids(tmp_path):
  path = _corpus(str(tmp_path / "c"), [("", 0)], shards=1)
  table = D.DocIdTable.open(path, BlockLookup.open(path))
  assert table.doc_ids([0]) == [""] and table.context_ids([0]) == [""]
