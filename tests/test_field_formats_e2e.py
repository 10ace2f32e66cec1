"""DPR's files as a user has them, with no conversion script, end to end at toy size:

    python -m realm_tf.launch.pretrain --inputs=psgs_w100.tsv --work_dir=runs/dpr \
        --eval_questions=dpr_qa:nq-test.qa.csv
    python -m realm_tf.launch.finetune --work_dir=runs/dpr --dataset=dpr_qa:nq-test.qa.csv
    python -m realm_tf.launch.evaluate --work_dir=runs/dpr --dataset=dpr_qa:nq-test.qa.csv

The passages file has psgs_w100.tsv's layout (header row `id\ttext\ttitle`, every text cell in
quotes with `""` for a quote inside), detected by its content; the questions are a DPR `*.qa.csv`
(`question \t ['answer', ...]`, one answers cell quoted as a csv writer quotes it). Each program's
command line is parsed into its config and run. The corpus must hold every passage's id, title and
text exactly; question recall, fine-tuning and evaluation run on the qa.csv's questions.
"""
import json
import os

import numpy as np
import pytest
from absl import flags

from realm_tf.data import corpus as corpus_lib
from realm_tf.launch import evaluate as evaluate_cli
from realm_tf.launch import finetune as finetune_cli
from realm_tf.launch import pretrain
from realm_tf.stages import evaluate as evaluate_stage
from realm_tf.stages import finetune as finetune_stage
from realm_tf.stages import pretrain_job
from realm_tf.testing import toy_jobs
from realm_tf.testing.cli import parsed_flags

# (id, title, text): 24 passages; DPR's text cells are quoted, and quotes inside are doubled.
PLACES = [("Warsaw", "Vistula", "Poland"), ("Paris", "Seine", "France"),
          ("Vienna", "Danube", "Austria"), ("Cairo", "Nile", "Egypt"),
          ("Lisbon", "Tagus", "Portugal"), ("Prague", "Vltava", "Czechia"),
          ("Budapest", "Danube", "Hungary"), ("Rome", "Tiber", "Italy"),
          ("London", "Thames", "England"), ("Dublin", "Liffey", "Ireland"),
          ("Berlin", "Spree", "Germany"), ("Madrid", "Manzanares", "Spain")]
PASSAGES = []
for i, (city, river, country) in enumerate(PLACES):
  PASSAGES.append((str(2 * i + 1), city, f"{city} is the capital of {country}. The {river} "
                   f"flows through {city}, known as \"the city on the {river}\"."))
  PASSAGES.append((str(2 * i + 2), f"{river} (river)", f"The {river} is a river of {country}. "
                   f"Its banks hold {city} and {10 + i} bridges."))
PASSAGES[4] = ("5", 'Vienna "City of Music"', PASSAGES[4][2])  # a quote in a title cell
# DPR's *.qa.csv: question, then a Python list literal; a cell holding quotes is quoted.
QUESTIONS = [("what is the capital of poland", ["Warsaw"]),
             ("which river flows through paris", ["Seine", "the Seine"]),
             ("what is the capital of egypt", ["Cairo"]),
             ("which river flows through rome", ["Tiber"]),
             ('which city is called "the city on the thames"', ['"London"', "London"]),
             ("what is the capital of ireland", ["Dublin"])]


def _tsv_cell(text: str) -> str:
  """A text cell as psgs_w100.tsv writes it: in quotes, with a quote inside doubled."""
  return '"' + text.replace('"', '""') + '"'


@pytest.fixture(scope="module")
def dpr(tmp_path_factory):
  """runs/dpr after the main job on psgs_w100.tsv with the qa.csv's question recall."""
  root = tmp_path_factory.mktemp("field_formats")
  passages, questions = root / "psgs_w100.tsv", root / "nq-test.qa.csv"
  passages.write_text("id\ttext\ttitle\n" + "".join(
      f"{i}\t{_tsv_cell(text)}\t{title}\n" for i, title, text in PASSAGES), encoding="utf-8")
  lines = []
  for question, answers in QUESTIONS:
    cell = repr(answers)
    cell = _tsv_cell(cell) if '"' in cell else cell
    lines.append(f"{question}\t{cell}\n")
  questions.write_text("".join(lines), encoding="utf-8")
  work = root / "dpr"
  spec = f"dpr_qa:{questions}"
  summary = pretrain_job.run(pretrain.config_from_flags(parsed_flags(
      pretrain, f"--inputs={passages}", f"--work_dir={work}", f"--eval_questions={spec}",
      *toy_jobs.PRETRAIN_TOY)))
  return {"work": work, "passages": passages, "spec": spec, "summary": summary}


def test_dpr_passages_and_questions_pretrain_finetune_and_evaluate(dpr):
  work, spec, summary = dpr["work"], dpr["spec"], dpr["summary"]
  # Pre-training: the corpus holds each passage as DPR reads it, one block each.
  manifest = corpus_lib.load_manifest(str(work / "corpus"))
  assert manifest["format"] == "auto" and manifest["num_documents"] == len(PASSAGES) > 20
  assert not sum(manifest["bad_records"].values())
  blocks = sorted(((b["doc_id"].decode(), b["title"].decode(), b["body"].decode())
                   for b in corpus_lib.read_blocks(str(work / "corpus")).as_numpy_iterator()),
                  key=lambda b: int(b[0]))
  assert blocks == PASSAGES
  assert np.isfinite(summary["train"]["loss"])
  assert summary["heldout_questions"] == spec
  assert summary["question_recall_change"]["questions"] == len(QUESTIONS)
  # Every question's answer is in a passage, so over 24 blocks recall@20 is found for BM25.
  assert summary["heldout_end"]["bm25_question_recall@20"] == 1.0

  # Fine-tuning on the qa.csv, every path from the work dir.
  job = finetune_cli.job_from_flags(parsed_flags(finetune_cli, f"--work_dir={work}",
                                            f"--dataset={spec}", *toy_jobs.FINETUNE_TOY))
  result = finetune_stage.run(job)
  assert result["num_examples"] == len(QUESTIONS)
  assert os.path.exists(work / "finetune" / "TRAINING_DONE")

  # Evaluation on the same questions: each qa.csv line, its answers as the file gives them.
  metrics = evaluate_stage.run(evaluate_cli.config_from_flags(
      parsed_flags(evaluate_cli, f"--work_dir={work}", f"--dataset={spec}", "--recall_ks=1,5")))
  assert metrics["num_examples"] == len(QUESTIONS)
  with open(work / "finetune" / "eval" / "dpr_qa_nq-test-test.jsonl", encoding="utf-8") as f:
    predictions = [json.loads(line) for line in f]
  assert [p["question"] for p in predictions] == [q for q, _ in QUESTIONS]
  assert [p["answers"] for p in predictions] == [a for _, a in QUESTIONS]
  assert metrics["recall@5"] >= metrics["recall@1"]
  # Every question's answer is in some passage and retrieval goes to the whole corpus (100 deep,
  # capped at 24 blocks), so DPR's top-100 accuracy is 1 whatever the toy retriever learned.
  assert metrics["top100_accuracy"] == 1.0
  assert metrics["top1_accuracy"] <= metrics["top5_accuracy"] <= metrics["top20_accuracy"] <= 1.0

  # The results open in the field's formats: DPR's retriever results and a TREC run, whose
  # document ids are the TSV's passage ids.
  prefix = work / "finetune" / "eval" / "dpr_qa_nq-test-test"
  with open(f"{prefix}.dpr.json", encoding="utf-8") as f:
    results = json.load(f)
  passage_ids = {pid for pid, _, _ in PASSAGES}
  texts = {pid: text for pid, _, text in PASSAGES}
  titles = {pid: title for pid, title, _ in PASSAGES}
  assert [r["question"] for r in results] == [q for q, _ in QUESTIONS]
  for r in results:
    assert len(r["ctxs"]) == len(PASSAGES)
    assert {c["id"] for c in r["ctxs"]} == passage_ids
    assert all(c["text"] == texts[c["id"]] and c["title"] == titles[c["id"]] for c in r["ctxs"])
    scores = [c["score"] for c in r["ctxs"]]
    assert scores == sorted(scores, reverse=True)
    assert any(c["has_answer"] for c in r["ctxs"])
  with open(f"{prefix}.trec", encoding="utf-8") as f:
    run = [line.split() for line in f]
  assert all(len(fields) == 6 and fields[1] == "Q0" for fields in run)
  assert len(run) == len(QUESTIONS) * len(PASSAGES)
  assert {fields[2] for fields in run} == passage_ids


def test_finetune_refuses_beir_questions_which_have_no_answers(tmp_path):
  (tmp_path / "qrels").mkdir()
  (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "What is a prion?"}\n')
  (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
  with pytest.raises(flags.IllegalFlagValueError, match="BEIR questions have no answer strings"):
    parsed_flags(finetune_cli, f"--dataset=beir:{tmp_path}")
  parsed_flags(evaluate_cli, f"--dataset=beir:{tmp_path}")  # evaluation takes them (retrieval only)
