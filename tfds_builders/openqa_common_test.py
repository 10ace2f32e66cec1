"""Tests of the shared open-QA readers, ORQA's split rule and the builders' download branch."""
import gzip
import json
import logging as py_logging
import os
import re

from etils import epath
import pytest
import tensorflow as tf

import tfds_builders
from tfds_builders import openqa_common
from tfds_builders.curated_trec_orqa import curated_trec_orqa_dataset_builder
from tfds_builders.nq_open_orqa import nq_open_orqa_dataset_builder
from tfds_builders.web_questions_orqa import web_questions_orqa_dataset_builder


def _write(path, lines, binary=False):
  mode = "wb" if binary else "w"
  with open(path, mode, **({} if binary else {"encoding": "utf-8"})) as f:
    for line in lines:
      f.write(line)
  return path


def _absl_warnings(caplog):
  """The messages of the WARNING (or worse) records of absl's logger that caplog holds."""
  return [r.getMessage() for r in caplog.records
          if r.name.startswith("absl") and r.levelno >= py_logging.WARNING]


# Text cleaning.

def test_removes_format_characters_and_normalises_spaces():
  assert openqa_common.clean_text("Algeria\u200e") == "Algeria"
  assert openqa_common.clean_text("Hydro\xadgen") == "Hydrogen"
  assert openqa_common.clean_text("\ufeff54\xa0Mbit/s ") == "54 Mbit/s"
  assert openqa_common.clean_text("June 1925\n\n10") == "June 1925 10"
  assert openqa_common.clean_text("a\x00b\u200bc") == "abc"
  assert openqa_common.clean_text(" \u200b\t") == ""
  # Accents and non-Latin scripts are kept as they are.
  assert openqa_common.clean_text("Padm\u00e9 \u6771\u4eac") == "Padm\u00e9 \u6771\u4eac"


def test_regex_keeps_inner_spacing():
  assert openqa_common.clean_text(" a  b\\s+c ", is_regex=True) == "a  b\\s+c"
  assert openqa_common.clean_text("a\u200bb", is_regex=True) == "ab"


# Readers.

def test_jsonl_bad_records_have_defined_outcomes_and_warnings(tmp_path, caplog):
  path = _write(os.path.join(tmp_path, "qa.jsonl"), [
      '{"question": "who is fine?", "answer": ["Fine"]}\n',
      '{"question": "  \\u200b ", "answer": ["x"]}\n',          # 2: empty question
      '{"question": "no answers?", "answer": []}\n',             # 3: empty list
      '{"question": "only blank answers?", "answer": [" ", "\\u200b"]}\n',  # 4
      'not json\n',                                               # 5
      '{"question": "missing answer key"}\n',                     # 6
      '{"question": 7, "answer": ["x"]}\n',                       # 7: not a string
      '{"question": "numbers?", "answer": [1, 2]}\n',            # 8
      '{"question": "single?", "answer": "Single"}\n',           # 9: kept as a list
      '\n',                                                       # 10: blank, ignored
      '{"question": "zero\\u200bwidth?", "answer": ["Ros\\u00e9\\u200e", " ", "Ros\\u00e9"]}\n',
      '{"question": "plural key?", "answers": ["Yes"], "id": 3}\n',   # 12: kept
      '{"question": "lone \\ud83d surrogate?", "answer": ["ok"]}\n',  # 13: surrogate removed
  ])
  caplog.clear()
  with caplog.at_level(py_logging.WARNING, logger="absl"):
    examples = openqa_common.read_qa_jsonl(path)
  warnings = _absl_warnings(caplog)
  assert warnings
  assert [e.question for e in examples] == [
      "who is fine?", "single?", "zerowidth?", "plural key?", "lone surrogate?"]
  assert [e.answers for e in examples] == [
      ("Fine",), ("Single",), ("Ros\u00e9",), ("Yes",), ("ok",)]
  # The raw question (what ORQA hashes) is kept; the source names file and line.
  assert examples[2].raw_question == "zero\u200bwidth?"
  assert [e.source for e in examples] == [
      "qa.jsonl:1", "qa.jsonl:9", "qa.jsonl:11", "qa.jsonl:12", "qa.jsonl:13"]
  text = "\n".join(warnings)
  for line in (2, 3, 4, 5, 6, 7, 8, 9, 11, 13):
    assert f"{path}:{line}:" in text
  assert f"{path}:10:" not in text
  assert f"{path}:1:" not in text
  assert f"{path}:12:" not in text
  assert "empty or white-space question" in text
  assert "no (non-empty) answers" in text


def test_dpr_lines_are_parsed_as_literals_never_evaluated(tmp_path, caplog):
  tmp = str(tmp_path)
  canary = os.path.join(tmp, "canary")
  path = _write(os.path.join(tmp, "nq.txt.gz"), [], binary=True)
  lines = [
      "who sings\t['Linda Davis', \"Reba's friend\"]\n",
      "who has a tab\tin the question\t['Yes']\n",
      f"what runs code\topen({canary!r}, 'w')\n",
      "no tab at all\n",
      "bad literal\t['x'\n",
      "empty\t[]\n",
  ]
  raw = "".join(lines).encode("utf-8") + b"caf\xe9 bytes\t['Caf\xc3\xa9']\n"
  with open(path, "wb") as f:
    f.write(gzip.compress(raw))
  caplog.clear()
  with caplog.at_level(py_logging.WARNING, logger="absl"):
    examples = openqa_common.read_qa_dpr(path)
  warnings = _absl_warnings(caplog)
  assert warnings
  assert not os.path.exists(canary)
  assert [(e.question, e.answers) for e in examples] == [
      ("who sings", ("Linda Davis", "Reba's friend")),
      ("who has a tab in the question", ("Yes",)),
      ("caf\ufffd bytes", ("Caf\u00e9",)),
  ]
  text = "\n".join(warnings)
  for line in (3, 4, 5, 6, 7):
    assert f"{path}:{line}:" in text
  assert "not UTF-8" in text


def test_warnings_are_capped_per_kind_with_a_summary(tmp_path, caplog):
  n = openqa_common.MAX_WARNINGS_PER_KIND + 5
  path = _write(os.path.join(tmp_path, "empty.jsonl"),
                ['{"question": "", "answer": ["x"]}\n'] * n)
  caplog.clear()
  with caplog.at_level(py_logging.WARNING, logger="absl"):
    assert not openqa_common.read_qa_jsonl(path)
  warnings = _absl_warnings(caplog)
  assert len(warnings) == openqa_common.MAX_WARNINGS_PER_KIND + 1
  assert f"{n} records in total" in warnings[-1]


# ORQA's train/dev split.

def test_rule_matches_tf_hash():
  questions = ["what is the name of justin bieber brother?",
               "what character did natalie portman play in star wars?",
               "who sings does he love me with reba"]
  expected = [int(tf.strings.to_hash_bucket_fast(q, 100000)) % 10 == 0 for q in questions]
  assert openqa_common.orqa_is_dev(questions).tolist() == expected
  assert openqa_common.orqa_is_dev([]).tolist() == []
  # A lone surrogate (from a JSON escape) hashes instead of crashing.
  assert len(openqa_common.orqa_is_dev(["lone \ud83d surrogate?"])) == 1


def test_split_hashes_the_raw_question():
  # Line 11 of WebQuestions-train.txt is in ORQA's dev split. The same question with a
  # zero-width space hashes to bucket 5 (train) although it cleans to the same text: the raw
  # question as written in the file decides, as in ORQA.
  question = "what two countries invaded poland in the beginning of ww2?"
  real = openqa_common.QAExample(question, ("Germany",), question, "f:11")
  dirty = openqa_common.QAExample(question, ("Germany",), question + "\u200b", "f:12")
  assert openqa_common.orqa_is_dev([real.raw_question, dirty.raw_question]).tolist() == [
      True, False]
  split = openqa_common.orqa_split([real, dirty])
  assert split == {"train": [dirty], "dev": [real]}


def test_jsonl_and_dpr_sources_split_identically(tmp_path):
  """The `orqa` config's reader and the `dpr` config's reader agree on the same questions."""
  dpr_path = tfds_builders.shipped_data_dir("nq_open_orqa") / "topics.nq.dev.txt.gz"
  dpr = openqa_common.read_qa_dpr(dpr_path)
  jsonl_path = os.path.join(tmp_path, "NQ-open.train.jsonl")
  _write(jsonl_path, [json.dumps({"question": e.raw_question, "answer": list(e.answers)}) + "\n"
                      for e in dpr])
  from_jsonl = openqa_common.orqa_split(openqa_common.read_qa_jsonl(jsonl_path))
  from_dpr = openqa_common.orqa_split(dpr)
  assert len(from_dpr["train"]) == 7920
  assert len(from_dpr["dev"]) == 837
  for split in ("train", "dev"):
    assert [e.question for e in from_jsonl[split]] == [e.question for e in from_dpr[split]]


# The download branch: without a manual_dir the builders download exactly the URLs registered
# in checksums.tsv.

class _OfflineDownloadManager:
  """Stands in for the network: serves each pinned URL from a local copy of its file."""

  def __init__(self, files_by_name):
    self.files_by_name = files_by_name
    self.urls = []

  @property
  def manual_dir(self):
    raise AssertionError("Manual directory does not exist or is empty.")

  def download(self, urls):
    self.urls.extend(urls.values())
    return {k: self.files_by_name[url.rsplit("/", 1)[-1]] for k, url in urls.items()}


def _dummy_files(builder_cls):
  dummy = epath.Path(builder_cls.code_path).parent / "dummy_data"
  return {p.name: p for p in dummy.iterdir()}


def _run_split_generators(data_dir, builder_cls, config=None):
  """Example counts per split and the URLs downloaded, from the builder's dummy_data/."""
  os.makedirs(data_dir)
  kwargs = {"data_dir": str(data_dir)}
  if config:
    kwargs["config"] = config
  builder = builder_cls(**kwargs)
  dl_manager = _OfflineDownloadManager(_dummy_files(builder_cls))
  splits = builder._split_generators(dl_manager)  # pylint: disable=protected-access
  counts = {name: len(list(gen)) for name, gen in splits.items()}
  assert set(dl_manager.urls) <= set(builder_cls.url_infos)
  return counts, dl_manager.urls


def test_web_questions(tmp_path):
  counts, urls = _run_split_generators(tmp_path / "data",
                                       web_questions_orqa_dataset_builder.Builder)
  assert counts == {"train": 7, "dev": 2, "test": 4}
  assert len(urls) == 2


def test_curated_trec(tmp_path):
  counts, _ = _run_split_generators(tmp_path / "data", curated_trec_orqa_dataset_builder.Builder)
  assert counts == {"train": 7, "dev": 2, "test": 3}


def test_nq_open_both_configs(tmp_path):
  counts, urls = _run_split_generators(tmp_path / "orqa", nq_open_orqa_dataset_builder.Builder,
                                       "orqa")
  assert counts == {"train": 5, "dev": 2, "test": 3}
  assert sorted(u.rsplit("/", 1)[-1] for u in urls) == [
      "NQ-open.dev.jsonl", "NQ-open.train.jsonl"]
  counts, urls = _run_split_generators(tmp_path / "dpr", nq_open_orqa_dataset_builder.Builder,
                                       "dpr")
  assert counts == {"train": 7, "dev": 2, "test": 3}
  assert "topics.nq.dev.txt" in urls[-1]


def test_every_url_is_pinned_to_a_commit():
  for name, builder_cls in tfds_builders.BUILDERS.items():
    assert builder_cls.url_infos, name
    for url, info in builder_cls.url_infos.items():
      assert re.search(r"^https://raw\.githubusercontent\.com/[^/]+/[^/]+/[0-9a-f]{7,40}/", url)
      assert len(info.checksum) == 64, url
      assert info.filename, url


# Errors about the manual directory.

def test_missing_required_file_names_it(tmp_path):
  manual = epath.Path(tmp_path)
  (manual / "WebQuestions-train.txt").write_text("")
  with pytest.raises(FileNotFoundError, match="WebQuestions-test.txt"):
    openqa_common.require_manual_file(manual, "WebQuestions-test.txt")
  assert (openqa_common.find_manual_file(manual, "WebQuestions-train.txt").name
          == "WebQuestions-train.txt")


def test_shipped_data_dir():
  assert (tfds_builders.shipped_data_dir("nq_open_orqa/dpr") / "NQ-open.dev.jsonl.gz").exists()
  with pytest.raises(ValueError, match="Unknown open-QA builder"):
    tfds_builders.shipped_data_dir("natural_questions_open")


def test_dpr_line_cells_quoted_by_a_csv_writer_are_unquoted():
  # DPR reads *.qa.csv with csv (tab-delimited): a cell holding quotes is written quoted.
  assert openqa_common.parse_qa_dpr_line(
      'who said "hi"\t"[\'He said ""hi""\', \'Bob\']"') == (
          'who said "hi"', ['He said "hi"', "Bob"])
  assert openqa_common.parse_qa_dpr_line("q\twith a tab\t['a']") == ("q\twith a tab", ["a"])
  for bad, problem in (("no tab", "no tab"), ("q\t['x'", "not a Python list literal"),
                       ("q\t__import__('os')", "not a Python list literal")):
    with pytest.raises(ValueError, match=problem):
      openqa_common.parse_qa_dpr_line(bad)


def test_dpr_rows_spanning_lines_with_a_byte_order_mark_and_crlf(tmp_path, caplog):
  """DPR reads *.qa.csv with csv.reader over the file: a quoted question may span lines. A BOM
  and CRLF line ends (a Windows editor's save) change nothing: no warning, same raw questions."""
  rows = ('who wrote hamlet\t[\'Shakespeare\']\n"a question\nover two lines"\t[\'Two\']\n'
          "no tab\nlast\t['z']\n")
  for name, data in (("plain.qa.csv", rows.encode()),
                     ("windows.qa.csv", b"\xef\xbb\xbf" + rows.replace("\n", "\r\n").encode())):
    path = _write(str(tmp_path / name), [data], binary=True)
    caplog.clear()
    with caplog.at_level(py_logging.WARNING, logger="absl"):
      examples = openqa_common.read_qa_dpr(path)
    assert [(e.raw_question, e.question, e.answers, e.source) for e in examples] == [
        ("who wrote hamlet", "who wrote hamlet", ("Shakespeare",), f"{name}:1"),
        ("a question\nover two lines", "a question over two lines", ("Two",), f"{name}:2"),
        ("last", "last", ("z",), f"{name}:5")], name
    assert _absl_warnings(caplog) == [
        f"{path}:4: no tab between question and answers; record skipped"], name
  jsonl = _write(str(tmp_path / "NQ-open.dev.jsonl"),
                 [b'\xef\xbb\xbf{"question": "q", "answer": ["a"]}\r\n'], binary=True)
  assert [(e.raw_question, e.answers) for e in openqa_common.read_qa_jsonl(jsonl)] == [
      ("q", ("a",))]


def test_deeply_nested_json_line_is_skipped(tmp_path, caplog):
  """json.loads raises RecursionError on deep nesting: a skipped record, the rest kept."""
  path = tmp_path / "deep.jsonl"
  path.write_text('{"question": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
                  '{"question": "kept?", "answer": ["yes"]}\n')
  with caplog.at_level(py_logging.WARNING, logger="absl"):
    examples = openqa_common.read_qa_jsonl(path)
  assert [e.question for e in examples] == ["kept?"]
  assert f"{path}:1: not valid JSON (RecursionError" in caplog.text
