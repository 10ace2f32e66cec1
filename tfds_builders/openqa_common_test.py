"""Tests of the shared open-QA readers, ORQA's split rule and the builders' download branch."""
import gzip
import json
import os
import shutil
import tempfile

from etils import epath
import tensorflow as tf

import tfds_builders
from tfds_builders import openqa_common
from tfds_builders.curated_trec_orqa import curated_trec_orqa_dataset_builder
from tfds_builders.nq_open_orqa import nq_open_orqa_dataset_builder
from tfds_builders.web_questions_orqa import web_questions_orqa_dataset_builder


def _tmpdir(test: tf.test.TestCase) -> str:
  """A fresh temporary folder removed after the test."""
  path = tempfile.mkdtemp(prefix="openqa_common_test_")
  test.addCleanup(shutil.rmtree, path, ignore_errors=True)
  return path


def _write(path, lines, binary=False):
  mode = "wb" if binary else "w"
  with open(path, mode, **({} if binary else {"encoding": "utf-8"})) as f:
    for line in lines:
      f.write(line)
  return path


class CleanTextTest(tf.test.TestCase):

  def test_removes_format_characters_and_normalises_spaces(self):
    self.assertEqual(openqa_common.clean_text("Algeria\u200e"), "Algeria")
    self.assertEqual(openqa_common.clean_text("Hydro\xadgen"), "Hydrogen")
    self.assertEqual(openqa_common.clean_text("\ufeff54\xa0Mbit/s "), "54 Mbit/s")
    self.assertEqual(openqa_common.clean_text("June 1925\n\n10"), "June 1925 10")
    self.assertEqual(openqa_common.clean_text("a\x00b\u200bc"), "abc")
    self.assertEqual(openqa_common.clean_text(" \u200b\t"), "")
    # Accents and non-Latin scripts are kept as they are.
    self.assertEqual(openqa_common.clean_text("Padm\u00e9 \u6771\u4eac"), "Padm\u00e9 \u6771\u4eac")

  def test_regex_keeps_inner_spacing(self):
    self.assertEqual(openqa_common.clean_text(" a  b\\s+c ", is_regex=True), "a  b\\s+c")
    self.assertEqual(openqa_common.clean_text("a\u200bb", is_regex=True), "ab")


class ReadersTest(tf.test.TestCase):

  def test_jsonl_bad_records_have_defined_outcomes_and_warnings(self):
    path = _write(os.path.join(_tmpdir(self), "qa.jsonl"), [
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
    with self.assertLogs("absl", level="WARNING") as logs:
      examples = openqa_common.read_qa_jsonl(path)
    self.assertEqual([e.question for e in examples],
                     ["who is fine?", "single?", "zerowidth?", "plural key?", "lone surrogate?"])
    self.assertEqual([e.answers for e in examples],
                     [("Fine",), ("Single",), ("Ros\u00e9",), ("Yes",), ("ok",)])
    # The raw question (what ORQA hashes) is kept; the source names file and line.
    self.assertEqual(examples[2].raw_question, "zero\u200bwidth?")
    self.assertEqual([e.source for e in examples],
                     ["qa.jsonl:1", "qa.jsonl:9", "qa.jsonl:11", "qa.jsonl:12", "qa.jsonl:13"])
    text = "\n".join(logs.output)
    for line in (2, 3, 4, 5, 6, 7, 8, 9, 11, 13):
      self.assertIn(f"{path}:{line}:", text)
    self.assertNotIn(f"{path}:10:", text)
    self.assertNotIn(f"{path}:1:", text)
    self.assertNotIn(f"{path}:12:", text)
    self.assertIn("empty or white-space question", text)
    self.assertIn("no (non-empty) answers", text)

  def test_dpr_lines_are_parsed_as_literals_never_evaluated(self):
    tmp = _tmpdir(self)
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
    with self.assertLogs("absl", level="WARNING") as logs:
      examples = openqa_common.read_qa_dpr(path)
    self.assertFalse(os.path.exists(canary))
    self.assertEqual([(e.question, e.answers) for e in examples], [
        ("who sings", ("Linda Davis", "Reba's friend")),
        ("who has a tab in the question", ("Yes",)),
        ("caf\ufffd bytes", ("Caf\u00e9",)),
    ])
    text = "\n".join(logs.output)
    for line in (3, 4, 5, 6, 7):
      self.assertIn(f"{path}:{line}:", text)
    self.assertIn("not UTF-8", text)

  def test_warnings_are_capped_per_kind_with_a_summary(self):
    n = openqa_common.MAX_WARNINGS_PER_KIND + 5
    path = _write(os.path.join(_tmpdir(self), "empty.jsonl"),
                  ['{"question": "", "answer": ["x"]}\n'] * n)
    with self.assertLogs("absl", level="WARNING") as logs:
      self.assertEmpty(openqa_common.read_qa_jsonl(path))
    self.assertLen(logs.output, openqa_common.MAX_WARNINGS_PER_KIND + 1)
    self.assertIn(f"{n} records in total", logs.output[-1])


class OrqaSplitTest(tf.test.TestCase):

  def test_rule_matches_tf_hash(self):
    questions = ["what is the name of justin bieber brother?",
                 "what character did natalie portman play in star wars?",
                 "who sings does he love me with reba"]
    expected = [int(tf.strings.to_hash_bucket_fast(q, 100000)) % 10 == 0 for q in questions]
    self.assertEqual(openqa_common.orqa_is_dev(questions).tolist(), expected)
    self.assertEqual(openqa_common.orqa_is_dev([]).tolist(), [])
    # A lone surrogate (from a JSON escape) hashes instead of crashing.
    self.assertLen(openqa_common.orqa_is_dev(["lone \ud83d surrogate?"]), 1)

  def test_split_hashes_the_raw_question(self):
    # Line 11 of WebQuestions-train.txt is in ORQA's dev split. The same question with a
    # zero-width space hashes to bucket 5 (train) although it cleans to the same text: the raw
    # question as written in the file decides, as in ORQA.
    question = "what two countries invaded poland in the beginning of ww2?"
    real = openqa_common.QAExample(question, ("Germany",), question, "f:11")
    dirty = openqa_common.QAExample(question, ("Germany",), question + "\u200b", "f:12")
    self.assertEqual(openqa_common.orqa_is_dev([real.raw_question, dirty.raw_question]).tolist(),
                     [True, False])
    split = openqa_common.orqa_split([real, dirty])
    self.assertEqual(split, {"train": [dirty], "dev": [real]})

  def test_jsonl_and_dpr_sources_split_identically(self):
    """The `orqa` config's reader and the `dpr` config's reader agree on the same questions."""
    dpr_path = tfds_builders.shipped_data_dir("nq_open_orqa") / "topics.nq.dev.txt.gz"
    dpr = openqa_common.read_qa_dpr(dpr_path)
    jsonl_path = os.path.join(_tmpdir(self), "NQ-open.train.jsonl")
    _write(jsonl_path, [json.dumps({"question": e.raw_question, "answer": list(e.answers)}) + "\n"
                        for e in dpr])
    from_jsonl = openqa_common.orqa_split(openqa_common.read_qa_jsonl(jsonl_path))
    from_dpr = openqa_common.orqa_split(dpr)
    self.assertLen(from_dpr["train"], 7920)
    self.assertLen(from_dpr["dev"], 837)
    for split in ("train", "dev"):
      self.assertEqual([e.question for e in from_jsonl[split]],
                       [e.question for e in from_dpr[split]])


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


class DownloadBranchTest(tf.test.TestCase):
  """Without a manual_dir the builders download exactly the URLs registered in checksums.tsv."""

  def _files(self, builder_cls):
    dummy = epath.Path(builder_cls.code_path).parent / "dummy_data"
    return {p.name: p for p in dummy.iterdir()}

  def _run(self, builder_cls, config=None):
    kwargs = {"data_dir": _tmpdir(self)}
    if config:
      kwargs["config"] = config
    builder = builder_cls(**kwargs)
    dl_manager = _OfflineDownloadManager(self._files(builder_cls))
    splits = builder._split_generators(dl_manager)  # pylint: disable=protected-access
    counts = {name: len(list(gen)) for name, gen in splits.items()}
    self.assertContainsSubset(set(dl_manager.urls), set(builder_cls.url_infos))
    return counts, dl_manager.urls

  def test_web_questions(self):
    counts, urls = self._run(web_questions_orqa_dataset_builder.Builder)
    self.assertEqual(counts, {"train": 7, "dev": 2, "test": 4})
    self.assertLen(urls, 2)

  def test_curated_trec(self):
    counts, _ = self._run(curated_trec_orqa_dataset_builder.Builder)
    self.assertEqual(counts, {"train": 7, "dev": 2, "test": 3})

  def test_nq_open_both_configs(self):
    counts, urls = self._run(nq_open_orqa_dataset_builder.Builder, "orqa")
    self.assertEqual(counts, {"train": 5, "dev": 2, "test": 3})
    self.assertEqual(sorted(u.rsplit("/", 1)[-1] for u in urls),
                     ["NQ-open.dev.jsonl", "NQ-open.train.jsonl"])
    counts, urls = self._run(nq_open_orqa_dataset_builder.Builder, "dpr")
    self.assertEqual(counts, {"train": 7, "dev": 2, "test": 3})
    self.assertIn("topics.nq.dev.txt", urls[-1])

  def test_every_url_is_pinned_to_a_commit(self):
    for name, builder_cls in tfds_builders.BUILDERS.items():
      self.assertNotEmpty(builder_cls.url_infos, name)
      for url, info in builder_cls.url_infos.items():
        self.assertRegex(url, r"^https://raw\.githubusercontent\.com/[^/]+/[^/]+/[0-9a-f]{7,40}/")
        self.assertLen(info.checksum, 64, url)
        self.assertTrue(info.filename, url)


class ManualDirErrorsTest(tf.test.TestCase):

  def test_missing_required_file_names_it(self):
    manual = epath.Path(_tmpdir(self))
    (manual / "WebQuestions-train.txt").write_text("")
    with self.assertRaisesRegex(FileNotFoundError, "WebQuestions-test.txt"):
      openqa_common.require_manual_file(manual, "WebQuestions-test.txt")
    self.assertEqual(openqa_common.find_manual_file(manual, "WebQuestions-train.txt").name,
                     "WebQuestions-train.txt")

  def test_shipped_data_dir(self):
    self.assertTrue((tfds_builders.shipped_data_dir("nq_open_orqa/dpr") /
                     "NQ-open.dev.jsonl.gz").exists())
    with self.assertRaisesRegex(ValueError, "Unknown open-QA builder"):
      tfds_builders.shipped_data_dir("natural_questions_open")


if __name__ == "__main__":
  tf.test.main()
