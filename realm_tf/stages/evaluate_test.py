"""Tests of open-QA evaluation: one call per batch, EM/regex plumbing, JSONL, bad input."""
import json
import logging as py_logging
import re

import numpy as np
import pytest

from realm_tf.stages import evaluate as E
from realm_tf.openqa import features as F
from realm_tf.openqa import metrics
from realm_tf.testing import openqa_models as T
from realm_tf.text import RealmTokenizer


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  return T.micro_model(str(tmp_path_factory.mktemp("corpus")), RealmTokenizer(), seed=1,
                       reader_beam_size=5)


def test_batch_of_eight_in_one_call(model):
  predictor = E.Predictor(model, num_retrieved=10)
  preds = predictor.predict(T.examples(8))
  assert predictor.num_calls == 1 and len(preds) == 8
  for p in preds:
    assert len(p["evidence"]) == 10
    assert [ev["read"] for ev in p["evidence"]] == [True] * 5 + [False] * 5
    assert 0 < p["probability"] <= 1
    assert p["prediction"] in p["evidence"][p["answer_rank"]]["text"]
    ids = [ev["block_id"] for ev in p["evidence"]]
    assert len(set(ids)) == 10 and set(ids) <= set(model.index.block_ids.tolist())


def test_em_regex_and_recall_plumbing(model, tmp_path, caplog):
  base = T.examples(8)
  preds = E.Predictor(model, num_retrieved=10).predict(base)
  examples = []
  for i, (e, p) in enumerate(zip(base, preds)):
    pred = p["prediction"]
    if i % 4 == 0:    # EM after normalisation: case, punctuation, articles, spacing
      examples.append(F.OpenQAExample(e.qid, e.question, ("wrong", f"The  {pred.upper()}!")))
    elif i % 4 == 1:  # regex answer matching the start of the prediction
      examples.append(F.OpenQAExample(e.qid, e.question, (re.escape(pred.split()[0]) + r"\b",),
                                      True))
    elif i % 4 == 2:  # a pattern that does not compile never matches, never crashes
      examples.append(F.OpenQAExample(e.qid, e.question, ("(unclosed",), True))
    else:             # plain wrong answer
      examples.append(F.OpenQAExample(e.qid, e.question, ("Zanzibar",)))
  path = str(tmp_path / "pred.jsonl")
  with caplog.at_level(py_logging.WARNING):
    result = E.evaluate(model, examples, batch_size=8, recall_ks=(1, 5, 10),
                        predictions_path=path)
  assert "(unclosed" in caplog.text
  assert result["model_calls"] == 1 and result["num_examples"] == 8
  assert result["exact_match"] == pytest.approx(4 / 8)
  lines = [json.loads(x) for x in open(path, encoding="utf-8")]
  assert [x["correct"] for x in lines] == [True, True, False, False] * 2
  assert [x["prediction"] for x in lines] == [p["prediction"] for p in preds]
  for x in lines:
    assert set(x) >= {"qid", "question", "answers", "prediction", "probability", "evidence"}
    assert set(x["evidence"][0]) >= {"block_id", "title", "text", "retrieval_score",
                                     "has_answer"}
  # recall@k = questions whose top-k blocks contain an answer (has_answer on the block text)
  for k in (1, 5, 10):
    hits = [any(metrics.has_answer(ev["text"], x["answers"], x["answers_are_regex"])
                for ev in x["evidence"][:k]) for x in lines]
    assert result[f"recall@{k}"] == pytest.approx(np.mean(hits))
  assert result["recall@10"] >= result["recall@5"] >= result["recall@1"]


def test_bad_inputs_never_crash(model, tmp_path, caplog):
  examples = [
      F.OpenQAExample("empty", "", ("Paris",)),
      F.OpenQAExample("blank", " \t\n ", ("Paris",)),
      F.OpenQAExample("long", "what " * 300 + "is the capital of France?", ("Paris",)),
      F.OpenQAExample("unicode", "Who wrote Hamlet?", ("\u200bWilliam\ud800 Shakespeare\x07",
                                                       b"\xff\xfe".decode("latin-1"))),
      F.OpenQAExample("regex", "Which planet?", ("Jupit[er",), True),
  ]
  with caplog.at_level(py_logging.WARNING):
    result = E.evaluate(model, examples, batch_size=8, recall_ks=(5,),
                        predictions_path=str(tmp_path / "bad.jsonl"))
  assert result["num_examples"] == 5 and result["num_empty_questions"] == 2
  lines = [json.loads(x) for x in open(tmp_path / "bad.jsonl", encoding="utf-8")]
  assert lines[0]["prediction"] == "" and lines[0]["evidence"] == [] and not lines[0]["correct"]
  assert len(lines[2]["evidence"]) == 5
  for name in ("'empty'", "'blank'", "'long'", "Jupit[er"):
    assert name in caplog.text, name


def test_external_retriever_rows_are_read(model):
  rows = np.tile(np.arange(5, dtype=np.int32)[None], [3, 1])

  def retrieve(examples, feats):
    del feats
    return {"rows": rows[:len(examples)], "scores": np.ones([len(examples), 5], np.float32),
            "reader_logits": np.zeros([len(examples), 5], np.float32)}

  preds = E.Predictor(model, num_retrieved=5, retrieve_fn=retrieve).predict(T.examples(3))
  for p in preds:
    assert [ev["block_id"] for ev in p["evidence"]] == model.index.block_ids[:5].tolist()
    assert all(ev["retrieval_score"] == 1.0 for ev in p["evidence"])


def test_bm25_retrieves_the_block_a_question_was_copied_from(model, tmp_path):
  """--retriever=bm25: BM25 over the same blocks feeds the same reader; EM and recall@k as dense."""
  from realm_tf.openqa import bm25  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.bm25 import bm25_tokens  # pylint: disable=g-import-not-at-top
  index = model.index
  facts = T.FACTS[:6]
  # Each question is a verbatim sentence of its block (its first 7 words, for the other blocks
  # to share some of them).
  examples = [F.OpenQAExample(f"copy{i}", " ".join(body.split()[:7]), (answer,))
              for i, (_, body, _, answer) in enumerate(facts)]
  bodies = index.texts(range(index.size))[1]
  rows = [bodies.index(body) for _, body, _, _ in facts]
  path = str(tmp_path / "bm25.jsonl")
  result = E.evaluate(model, examples, batch_size=4, recall_ks=(1, 5), predictions_path=path,
                      retriever="bm25")
  assert result["retriever"] == "bm25" and result["model_calls"] == 2
  assert result["recall@1"] == 1.0 and result["recall@5"] == 1.0
  lines = [json.loads(x) for x in open(path, encoding="utf-8")]
  retriever = bm25.BM25Retriever(index, 5)
  for line, row, e in zip(lines, rows, examples):
    assert line["evidence"][0]["block_id"] == int(index.block_ids[row])
    assert line["evidence"][0]["has_answer"]
    # Evidence scores are BM25's, best first; the reader read BM25's top K and answered from them.
    want = np.sort(retriever.scores(e.question))[::-1][:5]
    np.testing.assert_allclose([ev["retrieval_score"] for ev in line["evidence"]], want,
                               rtol=1e-5)
    assert [ev["read"] for ev in line["evidence"]] == [True] * 5
    assert line["prediction"] in line["evidence"][line["answer_block_rank"]]["text"]
  correct = [metrics.exact_match(x["prediction"], x["answers"]) for x in lines]
  assert result["exact_match"] == pytest.approx(np.mean(correct))
  # Dense retrieval over the random index does not find those blocks first.
  dense = E.evaluate(model, examples, batch_size=8, recall_ks=(1,))
  assert dense["retriever"] == "dense" and dense["recall@1"] < 1.0
  assert bm25_tokens("Who's the U.S. president, 2024?") == ["who", "s", "the", "u", "s",
                                                           "president", "2024"]
  with pytest.raises(ValueError, match="retriever must be one of"):
    E.Predictor(model, retriever="tfidf")
