"""Pre-training on your own documents, end to end at toy size, the way the README says:

    python -m realm_tf.launch.pretrain --inputs=my_docs.jsonl --work_dir=runs/mine \
        --eval_questions=jsonl:my_questions.jsonl

The command line (`pretrain`'s flags, parsed into the job's config) runs every stage on a small
JSONL of documents: corpus, annotations, ICT, index, reader warm-up, REALM with inline refresh and
the held-out figures, question recall of the user's questions (gold passage by doc_id, or by
answer) beside BM25's. The work dir then refuses other documents or shapes before any work.
"""
import json

import numpy as np
import pytest
from absl import flags

from realm_tf.data import corpus as corpus_lib
from realm_tf.io import work_dir as work_dir_lib
from realm_tf.launch import pretrain
from realm_tf.stages import pretrain_job

DOCS = [
    {"id": "curie", "title": "Marie Curie", "text": "Marie Curie was born in Warsaw in 1867. She "
     "won the Nobel Prize in Physics in 1903. She later moved to Paris and worked at the Sorbonne."},
    {"id": "warsaw", "title": "Warsaw", "text": "Warsaw is the capital of Poland. The Vistula "
     "River flows through Warsaw. Frederic Chopin grew up in Warsaw before moving to Paris in "
     "1831."},
    {"id": "sorbonne", "title": "Sorbonne", "text": "The Sorbonne is a building in Paris. It "
     "housed the University of Paris. Pierre Curie taught there in 1904 after the Nobel Prize."},
    {"id": "vistula", "title": "Vistula", "text": "The Vistula is the longest river in Poland. It "
     "flows into the Baltic Sea near Gdansk. Krakow also lies on the Vistula."},
    {"id": "chopin", "title": "Chopin", "text": "Frederic Chopin was a Polish composer. He was "
     "born in 1810 in Zelazowa Wola. He died in Paris in October 1849."},
    {"id": "nobel", "title": "Nobel Prize", "text": "Alfred Nobel founded the Nobel Prize in 1895. "
     "The first prizes were awarded in Stockholm in 1901. Albert Einstein won the prize in 1921."},
]
# Gold passages by doc_id, and by answer alone.
QUESTIONS = [
    {"question": "Where was Marie Curie born?", "answers": ["Warsaw"], "doc_id": "curie"},
    {"question": "Into which sea does the Vistula flow?", "answers": ["Baltic Sea"],
     "doc_id": "vistula"},
    {"question": "Who founded the Nobel Prize?", "answers": ["Alfred Nobel"]},
    {"question": "Where was Chopin born?", "answers": ["Zelazowa Wola"]},
]
# Toy sizes: tiny towers from random weights, a few steps of every stage.
TOY = ["--retriever_preset=tiny", "--retriever_init=", "--ict_steps=2", "--ict_batch_size=4",
       "--reader_preset=tiny", "--reader_init=", "--reader_warmup_steps=2",
       "--reader_warmup_batch_size=2", "--batch_size=2", "--num_train_steps=2",
       "--refresh_every_steps=2", "--checkpoint_every=2", "--num_candidates=2", "--min_recall=0",
       "--heldout_fraction=0.3", "--heldout_queries=4"]


def _config(*argv) -> pretrain_job.PretrainJobConfig:
  """The job's config from a `python -m realm_tf.launch.pretrain` command line."""
  fv = flags.FlagValues()
  pretrain.define_flags(fv)
  fv(["pretrain", *argv])
  return pretrain.config_from_flags(fv)


@pytest.fixture(scope="module")
def mine(tmp_path_factory):
  root = tmp_path_factory.mktemp("user_corpus")
  docs, questions = root / "my_docs.jsonl", root / "my_questions.jsonl"
  docs.write_text("\n".join(json.dumps(d) for d in DOCS) + "\n")
  questions.write_text("\n".join(json.dumps(q) for q in QUESTIONS) + "\n")
  work = root / "mine"
  summary = pretrain_job.run(_config(f"--inputs={docs}", f"--work_dir={work}",
                                     f"--eval_questions=jsonl:{questions}", *TOY))
  return {"root": root, "docs": docs, "questions": questions, "work": work, "summary": summary}


def test_every_stage_runs_on_your_documents_and_measures_your_questions(mine):
  summary, work = mine["summary"], mine["work"]
  manifest = corpus_lib.load_manifest(str(work / "corpus"))
  assert manifest["inputs"] == [str(mine["docs"])] and manifest["max_block_length"] == 128
  assert summary["corpus_blocks"] == len(DOCS) == manifest["num_blocks"]  # one block each
  assert summary["annotated_records"] > 0
  assert set(summary["ict"]) == {"loss", "accuracy"}
  assert np.isfinite(summary["reader_warmup"]["loss"]) and np.isfinite(summary["train"]["loss"])
  assert summary["heldout_questions"] == f"jsonl:{mine['questions']}"
  start, end = summary["heldout_start"], summary["heldout_end"]
  assert (start["step"], end["step"]) == (0, 2)
  for figures in (start, end):
    # Every question has a gold block (its doc_id's, or the one holding its answer), so over a
    # corpus of fewer than 20 blocks recall@20 is 1 for the dense index and for BM25 alike.
    assert figures["question_recall@20"] == figures["bm25_question_recall@20"] == 1.0
    assert 0.0 <= figures["question_recall@5"] <= 1.0
    assert figures["bm25_question_recall@5"] >= 0.75  # the questions name their passages
  assert summary["question_recall_change"]["questions"] == len(QUESTIONS)
  assert work_dir_lib.recorded_settings(work_dir_lib.WorkDir(str(work))) == {
      "block_length": 128, "query_length": 32, "retriever_preset": "tiny",
      "retriever_init": None, "retriever_pooling": "mean", "projection_size": 128,
      "share_towers": True, "reader_preset": "tiny", "reader_init": None}


def test_the_work_dir_refuses_other_documents_or_shapes_before_any_work(mine):
  work, docs = mine["work"], mine["docs"]
  other = mine["root"] / "other.jsonl"
  with pytest.raises(work_dir_lib.WorkDirMismatchError,
                     match=f"built from \\['{docs}'\\], not from --inputs=\\['{other}'\\]"):
    pretrain_job.prepare(_config(f"--inputs={other}", f"--work_dir={work}", *TOY))
  with pytest.raises(work_dir_lib.WorkDirMismatchError, match="--block_length=288, but"):
    pretrain_job.prepare(_config(f"--work_dir={work}", "--block_length=288", *TOY))
  with pytest.raises(work_dir_lib.WorkDirMismatchError,
                     match=r"--query_length=96 \(built with 32\), --reader_preset=mini "
                           r"\(built with tiny\)"):
    pretrain_job.prepare(_config(f"--work_dir={work}", *TOY, "--query_length=96",
                                 "--reader_preset=mini"))
  # The same documents (or none: the work dir's corpus) and settings: a resume, shapes read back.
  for inputs in ([f"--inputs={docs}"], []):
    config = pretrain_job.prepare(_config(f"--work_dir={work}", *inputs, *TOY))
    assert (config.block_length, config.query_length) == (128, 32)
