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

from realm_tf.data import corpus as corpus_lib
from realm_tf.io import work_dir as work_dir_lib
from realm_tf.launch import pretrain
from realm_tf.stages import pretrain_job
from realm_tf.testing.cli import parsed_flags

# The longest end-to-end runs are kept out of the default run (`make test-slow` runs them);
# the default run keeps one end-to-end smoke of the same path (tests/test_field_formats_e2e.py
# pre-trains, fine-tunes and evaluates on a user's corpus; the ram:// paths are in io/paths_test.py).
pytestmark = pytest.mark.slow

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
    {"id": "everest", "title": "Mount Everest", "text": "Mount Everest is the highest mountain on "
     "Earth. It stands in the Himalayas on the border of Nepal and China."},
    {"id": "amazon", "title": "Amazon River", "text": "The Amazon River flows through the "
     "rainforest of Brazil. It carries more water than any other river into the Atlantic Ocean."},
    {"id": "penguin", "title": "Emperor penguin", "text": "The emperor penguin lives in "
     "Antarctica. It is the tallest penguin and breeds during the cold winter on the sea ice."},
    {"id": "volcano", "title": "Volcano", "text": "A volcano is an opening in the crust of a "
     "planet. Hot lava, ash and gas escape from it when it erupts."},
    {"id": "piano", "title": "Piano", "text": "The piano is a keyboard instrument. Pressing a key "
     "makes a felt hammer strike steel strings inside its wooden case."},
    {"id": "coffee", "title": "Coffee", "text": "Coffee is a drink brewed from roasted coffee "
     "beans. The plant first grew in Ethiopia, and Brazil now grows the most."},
    {"id": "moon", "title": "Moon", "text": "The Moon is the only natural satellite of the Earth. "
     "Neil Armstrong walked on the Moon in July 1969 during the Apollo 11 mission."},
    {"id": "bicycle", "title": "Bicycle", "text": "A bicycle has two wheels, pedals and a chain. "
     "Riders steer it with handlebars and stop it with brakes."},
    {"id": "honey", "title": "Honey", "text": "Honey bees make honey from the nectar of flowers. "
     "They store it in wax combs inside the hive to eat during winter."},
    {"id": "sahara", "title": "Sahara", "text": "The Sahara is the largest hot desert in the "
     "world. It covers much of North Africa, where sand dunes and rocky plateaus get little rain."},
    {"id": "telescope", "title": "Telescope", "text": "A telescope gathers light with lenses or "
     "mirrors so that distant stars and planets look brighter and larger."},
    {"id": "chess", "title": "Chess", "text": "Chess is a board game for two players. Each player "
     "moves sixteen pieces, and the game ends when a king is checkmated."},
    {"id": "tomato", "title": "Tomato", "text": "The tomato is the red fruit of a plant from South "
     "America. Cooks use it in sauces, soups and salads."},
    {"id": "whale", "title": "Blue whale", "text": "The blue whale is the largest animal that has "
     "ever lived. It feeds on tiny krill that it filters from ocean water."},
    {"id": "glacier", "title": "Glacier", "text": "A glacier is a slow river of ice. It forms where "
     "more snow falls each winter than melts each summer."},
    {"id": "printing", "title": "Printing press", "text": "Johannes Gutenberg built a printing "
     "press with movable metal type in Mainz around 1440."},
    {"id": "olympics", "title": "Olympic Games", "text": "The modern Olympic Games began in Athens "
     "in 1896. Athletes from many nations compete in summer and winter sports."},
    {"id": "silk", "title": "Silk", "text": "Silk is a soft fibre spun by silkworms. Weavers in "
     "ancient China made it into fine cloth traded along the Silk Road."},
]
# Gold passages by doc_id, and by answer alone.
QUESTIONS = [
    {"question": "Where was Marie Curie born?", "answers": ["Warsaw"], "doc_id": "curie"},
    {"question": "Into which sea does the Vistula flow?", "answers": ["Baltic Sea"],
     "doc_id": "vistula"},
    {"question": "Who founded the Nobel Prize?", "answers": ["Alfred Nobel"]},
    {"question": "Where was Chopin born?", "answers": ["Zelazowa Wola"]},
    {"question": "What is the highest mountain on Earth?", "answers": ["Mount Everest"],
     "doc_id": "everest"},
    {"question": "Where does the emperor penguin live?", "answers": ["Antarctica"]},
    {"question": "Who walked on the Moon in 1969?", "answers": ["Neil Armstrong"]},
    {"question": "Who built a printing press with movable type?", "answers": ["Johannes Gutenberg"],
     "doc_id": "printing"},
]
# Recall@5 every dense figure must reach: the towers are all-MiniLM-L6-v2's (the main job's
# default), so the index retrieves (all 8 at the start and the end, as measured); random
# embeddings reach it (7 of these 8 questions in the top 5 of 24 blocks) with probability 1.1e-4
# (test_the_recall_bar_is_out_of_reach_of_random_embeddings).
MIN_RECALL_AT_5 = 0.875
# Toy sizes: MiniLM towers (no ICT), a tiny reader from random weights, a few steps of every stage.
TOY = ["--retriever_preset=minilm", "--retriever_init=minilm", "--ict_steps=0",
       "--reader_preset=tiny", "--reader_init=", "--reader_warmup_steps=2",
       "--reader_warmup_batch_size=2", "--batch_size=2", "--num_train_steps=2",
       "--refresh_every_steps=2", "--checkpoint_every=2", "--num_candidates=2", "--min_recall=0",
       "--heldout_fraction=0.3", "--heldout_queries=4"]


def _config(*argv) -> pretrain_job.PretrainJobConfig:
  """The job's config from a `python -m realm_tf.launch.pretrain` command line."""
  return pretrain.config_from_flags(parsed_flags(pretrain, *argv))


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
  assert summary["ict"] == {}  # no ICT steps: MiniLM's towers as they are
  assert np.isfinite(summary["reader_warmup"]["loss"]) and np.isfinite(summary["train"]["loss"])
  assert summary["heldout_questions"] == f"jsonl:{mine['questions']}"
  start, end = summary["heldout_start"], summary["heldout_end"]
  assert (start["step"], end["step"]) == (0, 2)
  for figures in (start, end):
    # Every question has a gold block (its doc_id's, or the one holding its answer) among the
    # corpus's 24: the dense index finds it in its top 5 for most questions, as BM25 does (the
    # questions name their passages), where random embeddings would not.
    assert figures["question_recall@5"] >= MIN_RECALL_AT_5, figures
    assert figures["bm25_question_recall@5"] >= MIN_RECALL_AT_5, figures
  assert summary["question_recall_change"]["questions"] == len(QUESTIONS)
  assert work_dir_lib.recorded_settings(work_dir_lib.WorkDir(str(work))) == {
      "block_length": 128, "query_length": 32, "retriever_preset": "minilm",
      "retriever_init": "minilm", "retriever_pooling": "mean", "projection_size": 384,
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


def test_the_recall_bar_is_out_of_reach_of_random_embeddings():
  """What a broken retriever gives: the same questions against random query and block
  embeddings, 20,000 times. Recall@5 over 24 blocks averages 5/24, and reaches MIN_RECALL_AT_5
  (7 of the 8 questions) in about one draw in 10,000 (binomial: 1.1e-4)."""
  rng = np.random.default_rng(0)
  draws, blocks, questions = 20_000, len(DOCS), len(QUESTIONS)
  scores = rng.standard_normal([draws, questions, 64]) @ rng.standard_normal([draws, 64, blocks])
  top5 = np.argsort(-scores, axis=-1)[..., :5]
  recall = (top5 == np.arange(questions)[None, :, None]).any(-1).mean(-1)  # gold: block i
  assert abs(recall.mean() - 5 / blocks) < 0.01
  assert (recall >= MIN_RECALL_AT_5).mean() < 1e-3, (recall >= MIN_RECALL_AT_5).mean()
