"""Tests of the run files: DPR retriever results and TREC runs, streamed and published whole."""
import json
import os

import numpy as np
import pytest

from realm_tf.evaluation import run_files as R


def test_dpr_results_stream_is_one_json_list(tmp_path):
  path = str(tmp_path / "out" / "results.json")
  with R.DprResultsWriter(path) as out:
    assert not os.path.exists(path)  # published only at the end
    out.add("Who wrote Hamlet?", ["Shakespeare"],
            [R.dpr_context("doc7", "Hamlet", "Written by Shakespeare.", np.float32(3.5), True),
             R.dpr_context("doc9#1", "Other", "Nothing.", 1.25, False)])
    out.add("Empty?", [], [])
    out.add("Ünïcode \ud800 question", ["a"], [])
  data = R.read_dpr_results(path)
  assert data == [
      {"question": "Who wrote Hamlet?", "answers": ["Shakespeare"],
       "ctxs": [{"id": "doc7", "title": "Hamlet", "text": "Written by Shakespeare.",
                 "score": 3.5, "has_answer": True},
                {"id": "doc9#1", "title": "Other", "text": "Nothing.", "score": 1.25,
                 "has_answer": False}]},
      {"question": "Empty?", "answers": [], "ctxs": []},
      {"question": "Ünïcode \ud800 question", "answers": ["a"], "ctxs": []}]
  with R.DprResultsWriter(str(tmp_path / "none.json")):
    pass
  assert R.read_dpr_results(str(tmp_path / "none.json")) == []


def test_a_failed_run_publishes_nothing(tmp_path):
  path = tmp_path / "run.trec"
  with pytest.raises(RuntimeError):
    with R.TrecRunWriter(str(path), "tag") as out:
      out.add("q1", ["d1"], [1.0])
      raise RuntimeError("evaluation failed")
  assert not path.exists() and os.listdir(tmp_path) == []


def test_trec_run_keeps_each_documents_best_block_in_trec_eval_order(tmp_path):
  path = str(tmp_path / "run.trec")
  with R.TrecRunWriter(path, "my run") as out:
    # Blocks best first: doc "a" twice (its best block first), a tie between "b" and "c".
    ranking = out.add("q 1", ["a", "b", "a", "c", "Super Bowl 50#0"],
                      np.float32([9.0, 5.0, 4.0, 5.0, 1.0 / 3]))
    out.add("q2", [], [])
  assert ranking == [("a", 9.0), ("c", 5.0), ("b", 5.0),
                     ("Super%20Bowl%2050#0", 0.333333343)]  # the score as written
  lines = open(path, encoding="utf-8").read().splitlines()
  assert lines == ["q%201 Q0 a 1 9 my%20run", "q%201 Q0 c 2 5 my%20run",
                   "q%201 Q0 b 3 5 my%20run",
                   "q%201 Q0 Super%20Bowl%2050#0 4 0.333333343 my%20run"]
  # The written score reads back as the same float32.
  assert np.float32(float(lines[3].split()[4])) == np.float32(1.0 / 3)
  assert R.read_trec_run(path) == {"q%201": {"a": 9.0, "c": 5.0, "b": 5.0,
                                             "Super%20Bowl%2050#0": 0.333333343}}
  with R.TrecRunWriter(str(tmp_path / "dup.trec"), "t") as out:
    out.add("q", ["x"], [1.0])
    with pytest.raises(ValueError, match="twice"):
      out.add("q", ["y"], [1.0])


def test_trec_fields_escape_only_white_space_and_percent():
  assert R.trec_field("MED-10") == "MED-10"
  assert R.trec_field("a b\tc%d") == "a%20b%09c%25d"
  assert R.trec_field("x\u3000y") == "x%E3%80%80y"  # ideographic space, UTF-8 bytes
  with pytest.raises(ValueError, match="empty"):
    R.trec_field("")
  assert R.run_tag("/runs/eval/nq_open_orqa-test-bm25") == "nq_open_orqa-test-bm25"
  assert R.run_tag("/x/y", "my tag") == "my%20tag"


@pytest.mark.parametrize("text, problem", [
    ("q1 Q0 d1 1 2.0\n", "expected `qid Q0 docid rank score tag`"),
    ("q1 Q1 d1 1 2.0 t\n", "expected `qid Q0"),
    ("q1 Q0 d1 1 high t\n", "score 'high' is not a number"),
    ("q1 Q0 d1 1 2 t\nq1 Q0 d1 2 1 t\n", "occurs twice"),
])
def test_bad_run_lines_are_named(tmp_path, text, problem):
  path = tmp_path / "bad.trec"
  path.write_text(text)
  with pytest.raises(R.RunFileError, match=problem) as e:
    R.read_trec_run(str(path))
  assert str(path) + ":" in str(e.value)


def test_bad_dpr_results_file(tmp_path):
  (tmp_path / "a.json").write_text("{\"ctxs\": []}")
  (tmp_path / "b.json").write_text("[{\"question\": \"x\"")
  for name in ("a.json", "b.json"):
    with pytest.raises(R.RunFileError, match=name):
      R.read_dpr_results(str(tmp_path / name))
  assert json.loads(json.dumps(R.dpr_context("i", "t", "x", np.float32(2), 1)))["score"] == 2.0
