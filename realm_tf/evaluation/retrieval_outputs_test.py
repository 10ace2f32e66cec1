"""Tests of RetrievalOutputs: a question's ranked blocks → figures, DPR results, TREC lines."""
import os
import types

import numpy as np
import pytest

from realm_tf.data import corpus
from realm_tf.data.block_lookup import BlockLookup
from realm_tf.data.doc_ids import DocIdTable
from realm_tf.evaluation import retrieval_outputs as O
from realm_tf.evaluation import run_files
from realm_tf.modeling.openqa_features import OpenQAExample

DOCS = [("long doc", 0), ("solo", 0), ("long doc", 1)]


@pytest.fixture(scope="module")
def table_and_index(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("corpus"))
  records = [corpus.block_example(corpus.block_id_for(d, k), d, d, f"body {i}", [7], [8])
             for i, (d, k) in enumerate(DOCS)]
  shard = corpus.write_shard(os.path.join(path, corpus.SHARD_PATTERN.format(0, 1)), records)
  corpus.write_manifest(path, [shard], "vocab", 16)
  lookup = BlockLookup.open(path)
  # Index rows in reverse corpus order: the outputs must go through index.lookup_rows.
  index = types.SimpleNamespace(lookup_rows=np.array([2, 1, 0], np.int32))
  return DocIdTable.open(path, lookup), index


def _evidence(scores):
  return [{"title": f"t{i}", "text": f"text {i}", "retrieval_score": s}
          for i, s in enumerate(scores)]


def test_blocks_of_one_document_are_one_trec_line_and_two_contexts(table_and_index, tmp_path):
  table, index = table_and_index
  dpr, trec = str(tmp_path / "r.dpr.json"), str(tmp_path / "r.trec")
  qrels_question = OpenQAExample("j", "judged?", (), relevant_doc_ids=("solo",), relevance=(3,))
  with O.RetrievalOutputs(index, table, dpr, trec, "tag", depth=2, recall_ks=(1, 3),
                          accuracy_ks=(1, 20)) as out:
    # Index rows 2, 0 are corpus rows 0, 2: both blocks of "long doc".
    out.add(OpenQAExample("q", "who?", ("text 1",)), [2, 0, 1], _evidence([3.0, 2.0, 1.0]),
            [False, True, False])
    out.add(qrels_question, [1, 2, 0], _evidence([5.0, 4.0, 1.0]), [False] * 3)
  entries = run_files.read_dpr_results(dpr)
  assert [c["id"] for c in entries[0]["ctxs"]] == ["long doc#0", "long doc#1"]  # depth 2
  assert [c["has_answer"] for c in entries[0]["ctxs"]] == [False, True]
  assert run_files.read_trec_run(trec) == {"q": {"long%20doc": 3.0},
                                           "j": {"solo": 5.0, "long%20doc": 4.0}}
  result = out.result()
  # Answer strings: 1 of 2 questions answered, at rank 2 (the judged one counts as a miss).
  assert result == {"recall@1": 0.0, "recall@3": 0.5, "top1_accuracy": 0.0,
                    "top20_accuracy": 0.5,
                    "qrels": {"num_queries": 1, "recall@1": 1.0, "recall@20": 1.0,
                              "ndcg@10": 1.0, "mrr@10": 1.0}}


def test_judgements_and_missing_doc_ids():
  assert O.judgements(OpenQAExample("a", "q", (), relevant_doc_ids=("x", "y"))) == \
      {"x": 1.0, "y": 1.0}
  assert O.judgements(OpenQAExample("a", "q", ("ans",))) == {}
  with pytest.raises(ValueError, match="2 relevant documents but 1 relevance grades"):
    O.judgements(OpenQAExample("a", "q", (), relevant_doc_ids=("x", "y"), relevance=(2,)))
  with pytest.raises(ValueError, match="needs the corpus's doc ids"):
    O.RetrievalOutputs(None, None, dpr_results_path="x.json")
  out = O.RetrievalOutputs(None)
  with out:
    out.add(OpenQAExample("a", "q", ("ans",)), [0], _evidence([1.0]), [True])
    with pytest.raises(ValueError, match="has judged documents"):
      out.add(OpenQAExample("b", "q", (), relevant_doc_ids=("x",)), [0], _evidence([1.0]),
              [False])
  assert out.result()["top1_accuracy"] == 1.0 and "qrels" not in out.result()
