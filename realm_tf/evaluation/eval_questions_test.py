"""Tests of the user's held-out questions: gold blocks by doc_id or by answer, sampling, errors."""
import json

import numpy as np
import pytest

from realm_tf.evaluation import eval_questions
from realm_tf.openqa import datasets
from realm_tf.modeling.openqa_features import OpenQAExample
from realm_tf.testing import openqa_models as T


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """The open-QA fixtures' corpus: one block per fact, `fact<i>` its document."""
  path = str(tmp_path_factory.mktemp("eval_questions") / "corpus")
  return path, T.make_text_corpus(path)


def test_gold_blocks_by_doc_id_else_by_answer_wordpieces(corpus):
  path, ids = corpus
  questions = [
      OpenQAExample("a", "Where is the Seine?", ("nowhere",), False, "fact0"),  # doc_id wins
      OpenQAExample("b", "Which sea?", ("black sea",), False),     # "...to the Black Sea."
      OpenQAExample("c", "Which year?", ("1928",), False),
      OpenQAExample("d", "Which word?", ("Sea. Black",), False),    # not in that order
      OpenQAExample("e", "Which part?", ("Seine riv",), False),     # "river" is one wordpiece
      OpenQAExample("f", "Which city?", ("Vienna|Paris",), True),   # regex: no gold
      OpenQAExample("g", "Unknown?", ("x",), False, "no-such-doc"),
      OpenQAExample("h", "Judged?", (), False, None, ("fact1", "fact2"), (1, 2)),  # BEIR qrels
  ]
  gold = eval_questions.gold_blocks(questions, path)
  assert gold == [{ids[0]}, {ids[5]}, {ids[6]}, set(), set(), set(), set(), {ids[1], ids[2]}]
  # An answer in a title (and a body) of one block: that block, once.
  assert eval_questions.gold_blocks(
      [OpenQAExample("t", "?", ("Mozart",), False)], path) == [{ids[9]}]


def test_answers_are_found_in_every_block_and_by_hash_only_when_equal():
  matcher = eval_questions._AnswerMatcher([], tokenizer=None)  # pylint: disable=protected-access
  assert matcher.matches(np.arange(5), np.array([0, 5])) == []

  class Ids:
    """A tokenizer stand-in: an answer's ids are its characters' codes."""

    def tokenize(self, texts):
      class Ragged(list):
        def to_list(self):
          return list(self)
      return Ragged([[ord(c) for c in t] for t in texts])

  matcher = eval_questions._AnswerMatcher([(0, "ab"), (1, "b"), (2, "abc")], Ids())  # pylint: disable=protected-access
  flat = np.array([ord(c) for c in "xab" "ab" "cab"])
  splits = np.array([0, 3, 5, 8])  # rows "xab", "ab", "cab": "abc" runs across rows 1 and 2
  assert matcher.matches(flat, splits) == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]


def test_load_samples_a_fixed_subset_and_refuses_other_specs(corpus, tmp_path):
  path, ids = corpus
  questions = tmp_path / "qs.jsonl"
  questions.write_text("\n".join(json.dumps({"question": q, "answers": [a], "doc_id": f"fact{i}"})
                                 for i, (_, _, q, a) in enumerate(T.FACTS)) + "\n")
  loaded, gold = eval_questions.load(f"jsonl:{questions}", path)
  assert [q.qid for q in loaded] == [f"qs.jsonl:{i + 1}" for i in range(len(T.FACTS))]
  assert gold == [{b} for b in ids]
  some, gold = eval_questions.load(f"jsonl:{questions}", path, limit=5)
  again, _ = eval_questions.load(f"jsonl:{questions}", path, limit=5)
  assert len(some) == 5 and [q.qid for q in some] == [q.qid for q in again]
  assert gold == [{ids[int(q.doc_id[4:])]} for q in some]
  with pytest.raises(datasets.DatasetError, match="give jsonl:<path>"):
    eval_questions.load("squad_open", path)
  with pytest.raises(datasets.DatasetError, match="does not exist"):
    eval_questions.load(f"jsonl:{tmp_path / 'none.jsonl'}", path)


def test_beir_questions_have_their_qrels_documents_as_gold(corpus, tmp_path):
  path, ids = corpus
  (tmp_path / "qrels").mkdir()
  (tmp_path / "queries.jsonl").write_text("\n".join(
      json.dumps({"_id": f"q{i}", "text": q}) for i, (_, _, q, _) in enumerate(T.FACTS)) + "\n")
  (tmp_path / "qrels" / "test.tsv").write_text(
      "query-id\tcorpus-id\tscore\nq3\tfact3\t1\nq3\tfact4\t0\nq7\tfact7\t2\n")
  loaded, gold = eval_questions.load(f"beir:{tmp_path}", path)
  assert [q.qid for q in loaded] == ["q3", "q7"] and gold == [{ids[3]}, {ids[7]}]
