"""Tests of open-QA evaluation: one call per batch, EM/regex plumbing, JSONL, bad input."""
import json
import logging as py_logging
import re

import numpy as np
import pytest

from realm_tf.data.doc_ids import DocIdTable
from realm_tf.evaluation import run_files
from realm_tf.evaluation import topk_accuracy
from realm_tf.stages import evaluate as E
from realm_tf.modeling import openqa_features as F
from realm_tf.openqa import metrics
from realm_tf.testing import openqa_models as T
from realm_tf.text import RealmTokenizer


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def model(corpus_dir):
  return T.micro_model(corpus_dir, RealmTokenizer(), seed=1, reader_beam_size=5)


@pytest.fixture(scope="module")
def doc_ids(model, corpus_dir):
  return DocIdTable.open(corpus_dir, model.index.lookup)


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
    elif i % 4 == 2:  # a pattern that does not compile never matches, never crashes (a pattern
      # no other test uses: the warning is given once per pattern and process)
      examples.append(F.OpenQAExample(e.qid, e.question, ("(unclosed in evaluate_test",), True))
    else:             # plain wrong answer
      examples.append(F.OpenQAExample(e.qid, e.question, ("Zanzibar",)))
  path = str(tmp_path / "pred.jsonl")
  with caplog.at_level(py_logging.WARNING):
    result = E.evaluate(model, examples, batch_size=8, recall_ks=(1, 5, 10),
                        predictions_path=path)
  assert "(unclosed in evaluate_test" in caplog.text
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
  from realm_tf.openqa import bm25_retriever  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.bm25 import bm25_tokens  # pylint: disable=g-import-not-at-top
  index = model.index
  facts = T.FACTS[:6]
  # Each question is a verbatim sentence of its block (its first 7 words, for the other blocks
  # to share some of them).
  examples = [F.OpenQAExample(f"copy{i}", " ".join(body.split()[:7]), (answer,))
              for i, (_, body, _, answer) in enumerate(facts)]
  bodies = index.texts(range(index.size))[1]
  rows = [bodies.index(body) for _, body, _, _ in facts]
  path = str(tmp_path / "bm25_retriever.jsonl")
  result = E.evaluate(model, examples, batch_size=4, recall_ks=(1, 5), predictions_path=path,
                      retriever="bm25")
  assert result["retriever"] == "bm25" and result["model_calls"] == 2
  assert result["recall@1"] == 1.0 and result["recall@5"] == 1.0
  lines = [json.loads(x) for x in open(path, encoding="utf-8")]
  retriever = bm25_retriever.BM25Retriever(index, 5)
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


@pytest.mark.parametrize("retriever", ["dense", "bm25"])
def test_run_files_go_to_depth_past_the_readers_beam(model, doc_ids, tmp_path, retriever):
  """DPR retriever results and a TREC run of every retrieved block (12: the whole corpus, past
  the reader's 5), and DPR top-k accuracy recomputed from the written file."""
  examples = T.examples(6)
  examples[1] = F.OpenQAExample("q1", "", ("Mount Everest",))      # empty question
  prefix = str(tmp_path / f"eval-{retriever}")
  result = E.evaluate(model, examples, batch_size=4, recall_ks=(1, 5),
                      predictions_path=prefix + ".jsonl", retriever=retriever, doc_ids=doc_ids,
                      dpr_results_path=prefix + ".dpr.json", trec_run_path=prefix + ".trec",
                      run_tag="micro run")
  size = model.index.size
  assert result["mode"] == "reader" and result["num_retrieved"] == size == 12
  assert result["model_calls"] == 2
  dpr = run_files.read_dpr_results(prefix + ".dpr.json")
  lines = [json.loads(x) for x in open(prefix + ".jsonl", encoding="utf-8")]
  assert [x["question"] for x in dpr] == [e.question for e in examples]
  assert dpr[1]["ctxs"] == [] and lines[1]["evidence"] == []
  for entry, line, e in zip(dpr, lines, examples):
    if not e.question:
      continue
    ctxs = entry["ctxs"]
    assert len(ctxs) == size and len(line["evidence"]) == 5     # the file goes deeper
    assert entry["answers"] == list(e.answers)
    # Each block's document (one block a fact: the id is the doc id), best first.
    assert sorted(c["id"] for c in ctxs) == sorted(f"fact{i}" for i in range(size))
    scores = [c["score"] for c in ctxs]
    assert scores == sorted(scores, reverse=True)
    for c, ev in zip(ctxs, line["evidence"]):
      assert (c["text"], c["title"], c["has_answer"]) == (ev["text"], ev["title"],
                                                          ev["has_answer"])
      assert c["score"] == pytest.approx(ev["retrieval_score"])
    for c in ctxs:
      assert c["has_answer"] == metrics.has_answer(c["text"], e.answers, False)
  # Top-k accuracy: in the result, and the same from the written file by an independent pass.
  from_file = topk_accuracy.from_dpr_results(prefix + ".dpr.json")
  for k in topk_accuracy.DPR_KS:
    assert result[f"top{k}_accuracy"] == from_file[f"top{k}_accuracy"]
  assert result["top100_accuracy"] == result["top20_accuracy"] == 5 / 6  # every block but q1
  assert result["recall@5"] == result["top5_accuracy"]
  run = run_files.read_trec_run(prefix + ".trec")
  assert sorted(run) == sorted(e.qid for e in examples if e.question)
  for e, entry in zip(examples, dpr):
    if e.question:
      assert run[e.qid] == {c["id"]: pytest.approx(c["score"]) for c in entry["ctxs"]}
  first = open(prefix + ".trec", encoding="utf-8").readline().split()
  assert first[1:4:2] == ["Q0", "1"] and first[5] == "micro%20run"
  line = E.summary_line(dict(result, dataset="jsonl:q.jsonl", split="test"))
  assert line.startswith(f"jsonl:q.jsonl test, {retriever} retriever, 6 questions: EM ")
  assert "top-1/5/20/100 accuracy" in line


def test_retrieval_only_questions_from_qrels(model, doc_ids, tmp_path):
  """Questions with judged documents and no answers: no reader, figures of the TREC run against
  the judgements as trec_eval computes them."""
  import pytrec_eval  # pylint: disable=g-import-not-at-top
  examples = [F.OpenQAExample(f"b{i}", q, (), relevant_doc_ids=(f"fact{i}", f"fact{i + 1}"),
                              relevance=(2, 1))
              for i, (_, _, q, _) in enumerate(T.FACTS[:5])]
  prefix = str(tmp_path / "beir")
  result = E.evaluate(model, examples, batch_size=8, predictions_path=prefix + ".jsonl",
                      doc_ids=doc_ids, trec_run_path=prefix + ".trec", num_retrieved=10)
  assert result["mode"] == "retrieval_only" and "exact_match" not in result
  assert "top1_accuracy" not in result and "recall@1" not in result  # no answer strings
  assert result["model_calls"] == 1 and result["num_retrieved"] == 10
  assert not (tmp_path / "beir.jsonl").exists()                  # nothing was read
  qrels = {e.qid: dict(zip(e.relevant_doc_ids, e.relevance)) for e in examples}
  run = run_files.read_trec_run(prefix + ".trec")
  assert all(len(docs) == 10 for docs in run.values())
  got = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.5"}).evaluate(run)
  figures = result["qrels"]
  assert figures["num_queries"] == 5 and "recall@20" not in figures  # k <= num_retrieved
  assert figures["ndcg@10"] == pytest.approx(np.mean([v["ndcg_cut_10"] for v in got.values()]))
  assert figures["recall@5"] == pytest.approx(np.mean([v["recall_5"] for v in got.values()]))
  line = E.summary_line(dict(result, dataset="beir:x", split="test"))
  assert "reader and EM skipped (no answer strings)" in line and "nDCG@10" in line
  with pytest.raises(ValueError, match="doc ids"):
    E.evaluate(model, examples[:1])                                # judged docs need doc ids
