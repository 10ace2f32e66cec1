"""SQuAD-open's article split reproduces its documented sizes, and its fixed per-article sample
is the first question of each dev article."""
import pytest

from realm_tf.data import squad_open

DEV_ARTICLES = ("Nikola_Tesla", "Teacher", "Sky_(United_Kingdom)", "Geology",
                "Victoria_and_Albert_Museum", "Immune_system", "Harvard_University", "Doctor_Who",
                "Chloroplast", "Force")


def test_split_sizes_and_dev_articles():
  train = squad_open.load_squad_questions(split="train")
  dev = squad_open.load_squad_questions(split="dev")
  assert (len(train), len(dev)) == (8102, 2468)
  assert {q.doc_id.split("#")[0] for q in dev} == set(DEV_ARTICLES)
  assert not {q.doc_id.split("#")[0] for q in train} & set(DEV_ARTICLES)


def test_first_question_per_article():
  first = squad_open.first_question_per_article("dev")
  assert [q.doc_id for q in first] == [f"{a}#0" for a in DEV_ARTICLES]
  assert first[0].question.strip() == "In what year was Nikola Tesla born?"
  assert first[0].answers == ("1856",)


def test_unknown_split_is_refused():
  with pytest.raises(ValueError, match="split must be one of"):
    squad_open.load_squad_questions(split="test")
