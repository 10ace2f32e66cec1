"""Tests of the question sets: offline TFDS builds into a temporary data_dir, JSONL files with
their file:line errors, and the --dataset names."""
import csv
import gzip
import io
import json
import logging as py_logging

from etils import epath
import pytest
import tensorflow as tf

from realm_tf.openqa import datasets
import tfds_builders


def _dummy_dir(name: str) -> str:
  return str(epath.Path(tfds_builders.BUILDERS[name].code_path).parent / "dummy_data")


@pytest.fixture
def data_dir(tmp_path):
  """A fresh TFDS data_dir for each test."""
  return str(tmp_path)


def test_shipped_curated_trec_dev_by_default(data_dir):
  ds = datasets.load_openqa_split("ct", "validation", data_dir=data_dir)
  assert set(ds.element_spec) == {"question", "answers", "answers_are_regex"}
  assert ds.element_spec["answers"].shape.as_list() == [None]
  examples = list(ds.as_numpy_iterator())
  assert len(examples) == 133
  assert all(ex["answers_are_regex"] for ex in examples)
  assert all(ex["question"] and len(ex["answers"]) for ex in examples)


def test_batches_of_questions_from_manual_dir(data_dir):
  ds = datasets.load_openqa_split("web_questions_orqa", "train", data_dir=data_dir,
                                  manual_dir=_dummy_dir("web_questions_orqa"))
  batch = next(iter(ds.ragged_batch(8)))
  assert batch["question"].shape == [7]
  assert not tf.reduce_any(batch["answers_are_regex"])
  questions = {q.decode() for q in batch["question"].numpy()}
  assert "what is a stray unicode question?" in questions
  assert "what is the name of justin bieber brother?" in questions


def test_nq_dpr_config_and_slicing(data_dir):
  ds = datasets.load_openqa_split("nq_dpr", "test[:2]", data_dir=data_dir,
                                  manual_dir=_dummy_dir("nq_open_orqa"))
  assert [ex["question"] for ex in ds.as_numpy_iterator()] == [
      b"when was the last time anyone was on the moon",
      b"who wrote he ain't heavy he's my brother lyrics"]
  dev = datasets.load_openqa_split("nq_open_orqa/dpr", "validation[1:]", data_dir=data_dir,
                                   manual_dir=_dummy_dir("nq_open_orqa"))
  assert len(list(dev)) == 1  # The dummy dpr source has 2 dev questions.


def test_missing_split_is_a_clear_error(data_dir):
  manual = epath.Path(data_dir) / "manual"
  manual.mkdir()
  (manual / "NQ-open.dev.jsonl").write_bytes(
      (epath.Path(_dummy_dir("nq_open_orqa")) / "NQ-open.dev.jsonl").read_bytes())
  with pytest.raises(ValueError, match=r"has no split 'train'; it has \['test'\]"):
    datasets.load_openqa_split("nq", "train", data_dir=data_dir, manual_dir=str(manual))


def test_bad_names(data_dir):
  with pytest.raises(ValueError, match="Unknown open-QA dataset 'natural_questions_open'"):
    datasets.load_openqa_split("natural_questions_open", "test", data_dir=data_dir)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    datasets.load_openqa_split("wq", "test", data_dir=data_dir,
                               manual_dir=data_dir + "/nope")


GOOD = {"question": "Who wrote Hamlet?", "answers": ["William Shakespeare", "Shakespeare"]}
BAD_LINES = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    (json.dumps({"answers": ["x"]}), 'missing or empty "question"'),
    (json.dumps({"question": "  ", "answers": ["x"]}), 'missing or empty "question"'),
    (json.dumps({"question": "Why?"}), 'missing or empty "answers"'),
    (json.dumps({"question": "Why?", "answers": []}), 'missing or empty "answers"'),
    (json.dumps({"question": "Why?", "answers": "x"}), 'missing or empty "answers"'),
    (json.dumps({"question": "Why?", "answers": ["x", 3]}), '"answers" must be a list of'),
    (json.dumps({"question": "Why?", "answers": [""]}), '"answers" must be a list of'),
    (json.dumps({"question": "Why?", "answers": ["x"], "answer_regex": "yes"}),
     '"answer_regex" must be true or false'),
    (json.dumps({"question": "Why?", "answers": ["x"], "id": [1]}), '"id" must be'),
]


def _write(path, lines):
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return str(path)


def test_jsonl_fields_ids_and_blank_lines(tmp_path):
  path = _write(tmp_path / "qs.jsonl", [
      json.dumps(GOOD), "", json.dumps({"question": "When? ", "answers": ["19[0-9]{2}"],
                                        "answer_regex": True, "id": 7, "doc_id": "Moon#0"})])
  examples = datasets.load_examples(f"jsonl:{path}", "ignored")
  assert [(e.qid, e.question, e.answers, e.is_regex, e.doc_id) for e in examples] == [
      ("qs.jsonl:1", "Who wrote Hamlet?", ("William Shakespeare", "Shakespeare"), False, None),
      ("7", "When? ", ("19[0-9]{2}",), True, "Moon#0")]
  assert datasets.load_examples(f"jsonl:{path}", "test", limit=1) == examples[:1]
  gz = tmp_path / "qs.jsonl.gz"
  gz.write_bytes(gzip.compress((tmp_path / "qs.jsonl").read_bytes()))
  assert datasets.load_jsonl_questions(str(gz))[1].qid == "7"


@pytest.mark.parametrize("line,problem", BAD_LINES, ids=[p for _, p in BAD_LINES])
def test_malformed_line_is_skipped_or_stops_with_file_and_line(tmp_path, caplog, line, problem):
  path = _write(tmp_path / "qs.jsonl", [json.dumps(GOOD), line, json.dumps(GOOD)])
  with caplog.at_level(py_logging.WARNING):
    examples = datasets.load_jsonl_questions(path)
  assert [e.qid for e in examples] == ["qs.jsonl:1", "qs.jsonl:3"]
  assert f"{path}:2: {problem}" in caplog.text and "line skipped" in caplog.text
  with pytest.raises(datasets.DatasetError) as info:
    datasets.load_examples(f"jsonl:{path}", "train", strict=True)
  assert str(info.value).startswith(f"{path}:2: {problem}")
  assert "\n" not in str(info.value)


def test_jsonl_without_usable_questions_or_file(tmp_path):
  path = _write(tmp_path / "bad.jsonl", [BAD_LINES[0][0], BAD_LINES[4][0]])
  with pytest.raises(datasets.DatasetError, match=r"holds no usable question \(2 malformed"):
    datasets.load_jsonl_questions(path)
  with pytest.raises(datasets.DatasetError, match="does not exist"):
    datasets.load_examples(f"jsonl:{tmp_path}/nope.jsonl", "train")


def test_dataset_names():
  assert datasets.check_dataset("squad_open") == "squad_open"
  assert datasets.check_dataset("wq") == datasets.check_dataset("nq_open_orqa/dpr") == "tfds"
  assert datasets.check_dataset("jsonl:/x/y.jsonl") == "jsonl"
  assert datasets.check_dataset("dpr_qa:/x/nq-test.qa.csv") == "dpr_qa"
  assert datasets.check_dataset("beir:/x/scifact") == "beir"
  for bad in ("natural_questions", "jsonl:", "squad", "dpr_qa:", "beir:"):
    with pytest.raises(datasets.DatasetError) as info:
      datasets.load_examples(bad, "train")
    if not bad.endswith(":"):
      for name in datasets.DATASETS + ("nq", "nq_dpr", "wq", "ct", "jsonl:<path>",
                                       "dpr_qa:<path>", "beir:<dir>[:<split>]"):
        assert name in str(info.value), (bad, name)
  assert datasets.dataset_tag("jsonl:/data/My_Qs.jsonl.gz") == "jsonl_My_Qs"
  assert datasets.dataset_tag("nq_open_orqa/dpr") == "nq_open_orqa_dpr"
  assert datasets.dataset_tag("dpr_qa:/data/nq-test.qa.csv.gz") == "dpr_qa_nq-test"
  assert datasets.dataset_tag("beir:/data/scifact/") == "beir_scifact"
  assert datasets.dataset_tag("beir:gs://b/scifact:dev") == "beir_scifact_dev"
  assert datasets.beir_location("beir:gs://b/scifact", "train") == ("gs://b/scifact", "train")
  assert datasets.beir_location("beir:/d/x:test", "train") == ("/d/x", "test")
  assert datasets.beir_location("beir:/d/x", "validation") == ("/d/x", "dev")


def test_every_dataset_form_is_in_the_dataset_flags_help():
  """`evaluate --help` lists every form check_dataset accepts; `finetune --help` every form
  fine-tuning accepts (all but BEIR's, which has no answers) and says BEIR's is refused."""
  from realm_tf.launch import evaluate, finetune  # pylint: disable=g-import-not-at-top
  forms = [*datasets.DATASETS, *datasets.ALIASES, *(c.split(" ")[0] for c in datasets.FILE_CHOICES)]
  for form in forms:
    assert datasets.check_dataset(form.split("<")[0] + "x" if "<" in form else form)
    assert form in evaluate.HELP["dataset"], form
    if not form.startswith(datasets.BEIR_PREFIX):
      assert form in finetune.HELP["dataset"], form
  assert "not beir:" in finetune.HELP["dataset"]


def test_official_nq_open_answer_key(tmp_path):
  path = _write(tmp_path / "NQ-open.dev.jsonl", [
      json.dumps({"question": "who sings does he love me with reba", "answer": ["Linda Davis"]}),
      json.dumps({"question": "q", "answer": []})])
  examples = datasets.load_examples(f"jsonl:{path}", "test")
  assert [(e.question, e.answers) for e in examples] == [
      ("who sings does he love me with reba", ("Linda Davis",))]
  with pytest.raises(datasets.DatasetError, match=f"{path}:2: missing or empty \"answers\""):
    datasets.load_examples(f"jsonl:{path}", "test", strict=True)


DPR_QA = [
    "who sings does he love me with reba\t['Linda Davis']",
    "who said \"hi\"\t\"['He said \"\"hi\"\"', 'Bob']\"",  # a cell a csv writer quoted
    "no tab here",
    "bad literal\t['x'",
    "code\t__import__('os').system('true')",
    "empty\t[]",
    "numbers\t[1, 2]",
    "",
    "last\t['z']",
]


def test_dpr_qa_csv(tmp_path, caplog):
  raw = ("\n".join(DPR_QA) + "\n").encode("utf-8")
  path = tmp_path / "nq-test.qa.csv.gz"
  path.write_bytes(gzip.compress(raw))
  with caplog.at_level(py_logging.WARNING):
    examples = datasets.load_examples(f"dpr_qa:{path}", "test")
  assert [(e.qid, e.question, e.answers) for e in examples] == [
      ("nq-test.qa.csv.gz:1", "who sings does he love me with reba", ("Linda Davis",)),
      ("nq-test.qa.csv.gz:2", 'who said "hi"', ('He said "hi"', "Bob")),
      ("nq-test.qa.csv.gz:9", "last", ("z",))]
  for line, problem in ((3, "no tab between question and answers"),
                        (4, "not a Python list literal"), (5, "not a Python list literal"),
                        (6, 'missing or empty "answers"'), (7, '"answers" must be a list of')):
    assert any(m.startswith(f"{path}:{line}: ") and problem in m for m in caplog.messages), line
  with pytest.raises(datasets.DatasetError, match=f"^{path}:3: no tab between"):
    datasets.load_examples(f"dpr_qa:{path}", "test", strict=True)
  assert len(datasets.load_examples(f"dpr_qa:{path}", "test", limit=2)) == 2


def test_dpr_qa_rows_read_as_dpr_reads_them_quoted_lines_bom_and_crlf(tmp_path, caplog):
  """DPR reads *.qa.csv with csv.reader(delimiter='\\t'): a quoted question may span lines. A
  file saved with a byte order mark and CRLF line ends reads the same; ids and errors name the
  line each row starts on."""
  out = io.StringIO()
  writer = csv.writer(out, delimiter="\t", lineterminator="\n")
  writer.writerows([["who wrote hamlet", "['Shakespeare']"],
                    ["a question\nover two lines", "['Two']"],
                    ["bad row after it", "['x'"],
                    ["last one", "['z']"]])
  text = out.getvalue()
  for name, data in (("plain.qa.csv", text.encode()),
                     ("windows.qa.csv", b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())):
    path = tmp_path / name
    path.write_bytes(data)
    caplog.clear()
    with caplog.at_level(py_logging.WARNING):
      examples = datasets.load_examples(f"dpr_qa:{path}", "test")
    assert [(e.qid, e.question, e.answers) for e in examples] == [
        (f"{name}:1", "who wrote hamlet", ("Shakespeare",)),
        (f"{name}:2", "a question\nover two lines", ("Two",)),
        (f"{name}:5", "last one", ("z",))], name
    assert [m for m in caplog.messages if m.startswith(str(path))] == [
        f"{path}:4: answers \"['x'\" are not a Python list literal (SyntaxError); line skipped."]


def test_jsonl_and_beir_queries_with_a_byte_order_mark_and_crlf(tmp_path):
  jsonl = tmp_path / "qs.jsonl"
  jsonl.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\r\n")
  assert [e.question for e in datasets.load_examples(f"jsonl:{jsonl}", "test", strict=True)] \
      == [GOOD["question"]]
  folder = tmp_path / "beir"
  (folder / "qrels").mkdir(parents=True)
  (folder / "queries.jsonl").write_bytes(
      b"\xef\xbb\xbf" + json.dumps({"_id": "q1", "text": "first"}).encode() + b"\r\n")
  (folder / "qrels" / "test.tsv").write_bytes(
      b"\xef\xbb\xbfquery-id\tcorpus-id\tscore\r\nq1\td1\t1\r\n")
  examples = datasets.load_examples(f"beir:{folder}", "test", strict=True)
  assert [(e.qid, e.question, e.relevant_doc_ids) for e in examples] == [("q1", "first", ("d1",))]


def _beir_folder(root):
  """A BEIR dataset folder: queries.jsonl, qrels/test.tsv (with bad rows), qrels/dev.tsv."""
  (root / "qrels").mkdir(parents=True)
  _write(root / "queries.jsonl", [
      json.dumps({"_id": "q1", "text": "What is a prion?", "metadata": {}}),
      json.dumps({"_id": 2, "text": "Who found insulin?"}),
      json.dumps({"_id": "q3", "text": "Never judged"}),
      json.dumps({"_id": "q4"}),
      "{broken"])
  _write(root / "qrels" / "test.tsv", [
      "query-id\tcorpus-id\tscore", "2\td9\t1", "q1\td1\t2", "q1\td2\t0", "q1\td3\t1",
      "q1\td4", "q9\td1\t1", "2\td8\tx"])
  _write(root / "qrels" / "dev.tsv", ["query-id\tcorpus-id\tscore", "q3\td5\t1"])
  return root


def test_beir_queries_with_their_qrels(tmp_path, caplog):
  folder = _beir_folder(tmp_path / "scifact")
  with caplog.at_level(py_logging.WARNING):
    examples = datasets.load_examples(f"beir:{folder}", "test")
  # The qrels' queries in the qrels' order; relevant = score > 0, with their grades.
  assert [(e.qid, e.question, e.answers, e.relevant_doc_ids, e.relevance) for e in examples] == [
      ("2", "Who found insulin?", (), ("d9",), (1,)),
      ("q1", "What is a prion?", (), ("d1", "d3"), (2, 1))]
  queries, qrels = folder / "queries.jsonl", folder / "qrels" / "test.tsv"
  for where, problem in ((f"{queries}:4", 'expected a BEIR query: "_id" (a string or an'),
                         (f"{queries}:5", "not valid JSON"),
                         (f"{qrels}:6", "expected 3 tab-separated cells"),
                         (f"{qrels}:7", "query-id 'q9' is not in"),
                         (f"{qrels}:8", "score 'x' is not an integer")):
    assert f"{where}: {problem}" in caplog.text, where
  # The split: named in the spec, else the stage's; validation is BEIR's dev.
  for spec, split in ((f"beir:{folder}:dev", "test"), (f"beir:{folder}", "validation")):
    assert [e.qid for e in datasets.load_examples(spec, split)] == ["q3"]
  with pytest.raises(datasets.DatasetError,
                     match=r"no qrels for split 'train' .*\['dev', 'test'\]"):
    datasets.load_examples(f"beir:{folder}", "train")
  with pytest.raises(datasets.DatasetError, match=f"^{queries}:4: expected a BEIR query"):
    datasets.load_examples(f"beir:{folder}", "test", strict=True)


def test_question_files_must_exist(tmp_path):
  folder = _beir_folder(tmp_path / "b")
  for spec in (f"beir:{folder}", f"beir:{folder}:test", "squad_open", "wq"):
    datasets.check_question_files(spec)
  with pytest.raises(datasets.DatasetError, match="BEIR questions have no answer strings"):
    datasets.check_question_files(f"beir:{folder}", need_answers=True)
  (folder / "queries.jsonl").unlink()
  for spec, message in ((f"beir:{folder}", f"{folder} has no queries.jsonl"),
                        (f"dpr_qa:{tmp_path}/x.qa.csv", "question file .* does not exist"),
                        (f"jsonl:{tmp_path}/x.jsonl", "question file .* does not exist")):
    with pytest.raises(datasets.DatasetError, match=message):
      datasets.check_question_files(spec, "--dataset")


def test_deeply_nested_json_lines_are_skipped_lines(tmp_path, caplog):
  """json.loads raises RecursionError on deep nesting: a skipped line naming file and line."""
  deep = '{"question": ' + "[" * 100_000 + "]" * 100_000 + "}"
  path = _write(tmp_path / "qs.jsonl", [deep, json.dumps(GOOD)])
  with caplog.at_level(py_logging.WARNING):
    examples = datasets.load_examples(f"jsonl:{path}", "test")
  assert [e.question for e in examples] == [GOOD["question"]]
  assert f"{path}:1: not valid JSON (values nested too deeply to parse)" in caplog.text
  folder = tmp_path / "beir"
  (folder / "qrels").mkdir(parents=True)
  _write(folder / "queries.jsonl", ['{"_id": ' + "[" * 100_000 + "]" * 100_000 + "}",
                                    json.dumps({"_id": "q1", "text": "kept?"})])
  _write(folder / "qrels" / "test.tsv", ["query-id\tcorpus-id\tscore", "q1\td1\t1"])
  assert [e.qid for e in datasets.load_examples(f"beir:{folder}", "test")] == ["q1"]


def test_beir_qrels_rows_are_read_one_line_at_a_time(tmp_path, caplog):
  """A stray quote cannot swallow the rows after it, and a cell over csv's field limit or a
  carriage return inside a row is a skipped line, not a csv.Error traceback."""
  folder = tmp_path / "beir"
  (folder / "qrels").mkdir(parents=True)
  _write(folder / "queries.jsonl", [json.dumps({"_id": f"q{i}", "text": f"question {i}"})
                                    for i in range(4)])
  _write(folder / "qrels" / "test.tsv", [
      "query-id\tcorpus-id\tscore", 'q0\t"d0\t1', "q1\td1\t1", "q2\t" + "d" * 1_100_000 + "\t1",
      "q3\td\r3\t1", "q3\td3\t1"])
  with caplog.at_level(py_logging.WARNING):
    examples = datasets.load_examples(f"beir:{folder}", "test")
  assert [e.qid for e in examples] == ["q1", "q3"]
  qrels = folder / "qrels" / "test.tsv"
  assert f"{qrels}:2: expected 3 tab-separated cells" in caplog.text
  assert f"{qrels}:4: not a tab-separated row (field larger than field limit" in caplog.text
  assert f"{qrels}:5: not a tab-separated row" in caplog.text


@pytest.mark.parametrize("loader,good", [
    (datasets.load_jsonl_questions, json.dumps(GOOD).encode()),
    (datasets.load_dpr_qa_questions, b"who wrote hamlet\t['Shakespeare']")])
def test_a_line_that_is_not_utf8_is_a_named_skip_not_replacement_characters(
    tmp_path, caplog, loader, good):
  bad = good.replace(b"Hamlet", b"Ham\xfflet").replace(b"hamlet", b"ham\xfflet")
  path = tmp_path / "qs.txt"
  path.write_bytes(b"\r\n".join([good, bad, good]) + b"\r\n")
  with caplog.at_level(py_logging.WARNING):
    examples = loader(str(path))
  assert [e.qid for e in examples] == ["qs.txt:1", "qs.txt:3"]
  assert not any("\ufffd" in e.question for e in examples)
  assert f"{path}:2: not UTF-8 (byte 0xff at byte " in caplog.text
  with pytest.raises(datasets.DatasetError, match=f"{path}:2: not UTF-8"):
    loader(str(path), strict=True)
