"""TFDS builder `web_questions_orqa`: WebQuestions with ORQA's train/dev/test splits.

Source: DrQA's `WebQuestions-{train,test}.txt` (JSON lines `{"answer": [...], "question": ...}`,
answers are Freebase entity names). Splits (ORQA / REALM): train 3,417, dev 361 (hash rule of
`tfds_builders.openqa_common`), test 2,032. Named `*_orqa` because TFDS's catalogue already has
`web_questions` (with the original 3,778 / 2,032 split).

Offline: put `WebQuestions-train.txt` and `WebQuestions-test.txt` (or `.gz` copies) in
`manual_dir`; the project ships them in `tfds_builders/web_questions_orqa/data/`.
"""
from tfds_builders import openqa_common

# DrQA's data files as committed in CfaBotTeam/stanford (data/datasets/); the sha256 sums in
# checksums.tsv are those of the copies shipped in data/.
_BASE_URL = ("https://raw.githubusercontent.com/CfaBotTeam/stanford/"
             "13d23daa063741c6d258a7183ea540607372819d/data/datasets/")


class Builder(openqa_common.OrqaTrainTestBuilder):
  """WebQuestions (Berant et al., 2013) as used by ORQA and REALM for open-domain QA."""

  TRAIN_FILE = "WebQuestions-train.txt"
  TEST_FILE = "WebQuestions-test.txt"
  TRAIN_URL = _BASE_URL + TRAIN_FILE
  TEST_URL = _BASE_URL + TEST_FILE
  ANSWERS_ARE_REGEX = False
  HOMEPAGE = "https://nlp.stanford.edu/software/sempre/"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Optional (offline use). Place WebQuestions-train.txt and WebQuestions-test.txt, DrQA's
  JSON-lines files (plain or .gz), in manual_dir. The project ships them in
  tfds_builders/web_questions_orqa/data/. Without a manual_dir holding files the builder
  downloads them from the pinned URLs in checksums.tsv.
  """
