"""Open-QA question sets: the TFDS benchmarks, SQuAD-open, and your own JSONL files.

`load_examples(dataset, split)` is the one entry point fine-tuning and evaluation use; it returns
`OpenQAExample`s. `--dataset` takes:

  nq_open_orqa, nq_open_orqa/dpr, web_questions_orqa, curated_trec_orqa (short names nq, nq_dpr,
      wq, ct): TFDS builders, built offline from the files shipped in `tfds_builders/<name>/data/`
      unless another `manual_dir` is given (`load_openqa_split`);
  squad_open: the shipped SQuAD v1.1 dev questions, split by article (the default corpus is
      their paragraphs, and each question knows its gold paragraph);
  jsonl:<path>: one question per line, `{"question": str, "answers": [str, ...]}` with optional
      `"answer_regex": bool` (answers are regular expressions), `"id"` and `"doc_id"` (the
      corpus document holding the answer). The official NQ-open files' `"answer"` is read as
      `"answers"`;
  dpr_qa:<path>: DPR's `*.qa.csv`, `question \t ['answer', ...]` (a Python list literal, no
      header), read as DPR reads it (`tfds_builders.openqa_common.dpr_qa_rows`: csv over the
      file, so a quoted question may span lines; `ast.literal_eval`, never `eval`); ids
      `<file name>:<line the row starts on>`;
  beir:<dir>[:<split>]: a BEIR dataset folder, `queries.jsonl` (`{"_id", "text"}`) and
      `qrels/<split>.tsv` (`query-id \t corpus-id \t score` after a header row). The questions
      are the queries the qrels name (BEIR's rule, in the qrels' order), with no answers; their
      `relevant_doc_ids` are the corpus-ids scored > 0 (grades in `relevance`), for
      retrieval-only evaluation. The split is the one named, else the stage's (`--split`; `test`
      for pre-training's --eval_questions; `validation` reads `dev`).
  In the three file formats (`.gz` is read gunzipped; a leading UTF-8 byte order mark and
  `\r\n` line ends are read as plain) a malformed line is logged as `<file>:<line>: <problem>`
  and skipped, or stops the run with that message when `strict`.

`load_openqa_split("web_questions_orqa", "train")` returns a `tf.data.Dataset` of dicts:

  question           tf.string []     the question
  answers            tf.string [n]    gold answers (regular expressions when answers_are_regex)
  answers_are_regex  tf.bool   []     True for CuratedTREC

Splits are ORQA's `train` / `dev` / `test` (`validation` is accepted for `dev`). For NQ, the
default config `nq_open_orqa` (= `nq_open_orqa/orqa`) needs `NQ-open.train.jsonl` in manual_dir
for train/dev; `nq_open_orqa/dpr` builds them from the shipped DPR-style questions instead.
"""
import csv
import gzip
import json
import os
from typing import Dict, Iterator, List, Optional, Tuple

from absl import logging
from etils import epath
import tensorflow as tf

from realm_tf.modeling.openqa_features import OpenQAExample

ALIASES = {
    "nq": "nq_open_orqa",
    "nq_dpr": "nq_open_orqa/dpr",
    "wq": "web_questions_orqa",
    "ct": "curated_trec_orqa",
}
SPLITS = ("train", "dev", "test")
FEATURE_KEYS = ("question", "answers", "answers_are_regex")
TFDS_DATASETS = ("nq_open_orqa", "nq_open_orqa/dpr", "web_questions_orqa", "curated_trec_orqa")
SQUAD_OPEN = "squad_open"
JSONL_PREFIX = "jsonl:"
DPR_QA_PREFIX = "dpr_qa:"
BEIR_PREFIX = "beir:"
# The question files: {kind: prefix}; check_dataset returns the kind.
FILE_PREFIXES = {"jsonl": JSONL_PREFIX, "dpr_qa": DPR_QA_PREFIX, "beir": BEIR_PREFIX}
DATASETS = TFDS_DATASETS + (SQUAD_OPEN,)
FILE_CHOICES = ("jsonl:<path> (your own questions)", "dpr_qa:<path> (DPR's *.qa.csv)",
                "beir:<dir>[:<split>] (BEIR queries.jsonl + qrels/<split>.tsv)")
BEIR_QUERIES = "queries.jsonl"
BEIR_QRELS = "qrels"


class DatasetError(ValueError):
  """An unknown `--dataset`, or a malformed question file (the message names file and line)."""


def resolve_name(name: str) -> str:
  """Maps a short name (nq, nq_dpr, wq, ct) to the TFDS name; checks the builder exists."""
  import tfds_builders  # pylint: disable=g-import-not-at-top  (registers the builders)
  full = ALIASES.get(name, name)
  if full.split("/", 1)[0] not in tfds_builders.BUILDERS:
    raise ValueError(f"Unknown open-QA dataset {name!r}; use one of {sorted(ALIASES)} or "
                     f"{sorted(tfds_builders.BUILDERS)} (NQ configs: /orqa, /dpr).")
  return full


def prepare_openqa_builder(name: str, data_dir: Optional[str] = None,
                           manual_dir: Optional[str] = None):
  """Returns the prepared TFDS builder of an open-QA dataset, building it when needed.

  Without `manual_dir` the files shipped with the project are used, so nothing is downloaded.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import tfds_builders  # pylint: disable=g-import-not-at-top
  full = resolve_name(name)
  if manual_dir is None:
    manual_dir = str(tfds_builders.shipped_data_dir(full))
  elif not epath.Path(manual_dir).exists():
    raise FileNotFoundError(f"manual_dir {manual_dir} for {full} does not exist.")
  builder = tfds.builder(full, data_dir=data_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder


def load_openqa_split(name: str, split: str, data_dir: Optional[str] = None,
                      manual_dir: Optional[str] = None) -> tf.data.Dataset:
  """tf.data of {question, answers, answers_are_regex} for one ORQA split of an open-QA dataset.

  Args:
    name: `nq_open_orqa`, `nq_open_orqa/dpr`, `web_questions_orqa`, `curated_trec_orqa`, or a
      short name (nq, nq_dpr, wq, ct).
    split: `train`, `dev` (or `validation`) or `test`; TFDS slicing (`train[:100]`) works too.
    data_dir: TFDS data directory (default: TFDS's, ~/tensorflow_datasets).
    manual_dir: folder with the source files (default: the copies shipped in the project).

  Raises:
    ValueError: unknown dataset, or a split this build does not have (e.g. NQ `train` without
      NQ-open.train.jsonl); the message lists the splits it has.
  """
  if split.startswith("validation"):
    split = "dev" + split[len("validation"):]
  builder = prepare_openqa_builder(name, data_dir=data_dir, manual_dir=manual_dir)
  base_split = split.split("[", 1)[0]
  if base_split not in builder.info.splits:
    raise ValueError(
        f"{builder.info.full_name} has no split {base_split!r}; it has "
        f"{sorted(builder.info.splits)}. NQ train/dev need NQ-open.train.jsonl in manual_dir "
        "(config orqa) or the DPR-style files (config nq_open_orqa/dpr); a build made without "
        "them is cached in data_dir, so use a fresh data_dir after adding files.")
  logging.info("Loading %s split %s (%d examples).", builder.info.full_name, split,
               builder.info.splits[split].num_examples)
  ds = builder.as_dataset(split=split, shuffle_files=False)
  return ds.map(lambda x: {k: x[k] for k in FEATURE_KEYS},
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


# ---------------------------------------------------------------------------------------------
# Every source as OpenQAExamples.

def check_dataset(name: str) -> str:
  """Returns the kind of `name` (`tfds`, `squad_open`, or a question file's: `jsonl`, `dpr_qa`,
  `beir`); DatasetError listing every valid choice for anything else. Cheap: builds nothing,
  reads nothing."""
  if name == SQUAD_OPEN:
    return SQUAD_OPEN
  for kind, prefix in FILE_PREFIXES.items():
    if name.startswith(prefix):
      if not name[len(prefix):].strip():
        raise DatasetError(f"--dataset={name!r} names no file; use "
                           f"{[c for c in FILE_CHOICES if c.startswith(prefix)][0]}.")
      return kind
  try:
    resolve_name(name)
  except ValueError:
    raise DatasetError(
        f"Unknown --dataset {name!r}; choose one of {', '.join(DATASETS)}, the short names "
        f"{', '.join(sorted(ALIASES))}, or a question file: {', '.join(FILE_CHOICES)}."
    ) from None
  return "tfds"


def beir_location(name: str, split: str = "test") -> Tuple[str, str]:
  """(folder, split) of `beir:<dir>[:<split>]`: the split named, else `split` (`validation` is
  BEIR's `dev`). A last `:` part with a `/` in it is the path's own (`beir:gs://b/scifact`)."""
  rest = name[len(BEIR_PREFIX):]
  folder, _, named = rest.rpartition(":")
  if not folder or "/" in named or not named:
    folder, named = rest, ""
  split = named or split
  return folder.rstrip("/") or folder, "dev" if split.startswith("validation") else split


def check_question_files(name: str, flag: str = "--dataset", need_answers: bool = False) -> None:
  """Refuses (DatasetError) a question-file dataset whose file (or BEIR folder: queries.jsonl and
  qrels/) does not exist, and with `need_answers` (fine-tuning) BEIR's questions, which have no
  answer strings. Checks existence only; other names pass."""
  kind = check_dataset(name)
  if need_answers and kind == "beir":
    raise DatasetError(f"{flag}={name}: BEIR questions have no answer strings, and fine-tuning "
                       "needs them; evaluate them (retrieval only) or fine-tune on questions "
                       "with answers.")
  if kind not in FILE_PREFIXES:
    return
  if kind != "beir":
    path = name[len(FILE_PREFIXES[kind]):]
    if not tf.io.gfile.exists(path):
      raise DatasetError(f"{flag}: question file {path} does not exist.")
    return
  folder, _ = beir_location(name)
  for needed in (BEIR_QUERIES, BEIR_QRELS):
    if not tf.io.gfile.exists(os.path.join(folder, needed)):
      raise DatasetError(f"{flag}={name}: {folder} has no {needed} (a BEIR dataset folder holds "
                         f"{BEIR_QUERIES} and {BEIR_QRELS}/<split>.tsv).")


def dataset_tag(name: str) -> str:
  """A file-name-safe name of a dataset: `jsonl:/x/my_qs.jsonl` → `jsonl_my_qs`,
  `dpr_qa:/x/nq-test.qa.csv` → `dpr_qa_nq-test`, `beir:/x/scifact:dev` → `beir_scifact_dev`,
  `a/b` → `a_b`."""
  for kind, prefix in FILE_PREFIXES.items():
    if name.startswith(prefix):
      if kind == "beir":
        folder, split = beir_location(name, "")
        return "_".join(p for p in ("beir", os.path.basename(folder), split) if p)
      base = os.path.basename(name[len(prefix):].rstrip("/"))
      for ext in (".gz", ".jsonl", ".json") if kind == "jsonl" else (".gz", ".csv", ".qa"):
        base = base[:-len(ext)] if base.endswith(ext) else base
      return f"{kind}_{base}"
  return name.replace("/", "_")


def load_squad_open(split: str, path: Optional[str] = None) -> List[OpenQAExample]:
  """SQuAD-open questions of one split; the split is by article, so no paragraph is shared.

  `train` ≈ 80% of the shipped SQuAD v1.1 dev articles, `dev` (= `test`) the rest. Each example
  carries its gold paragraph's document id (`doc_id`, the corpus builder's `<title>#<index>`).
  """
  from realm_tf.data.squad_open import load_squad_questions  # pylint: disable=g-import-not-at-top
  if split not in ("train", "dev", "test", "validation", "all"):
    raise ValueError(f"squad_open has splits train, dev (= test, validation) and all; got {split!r}.")
  want = "dev" if split in ("test", "validation") else split
  out = []
  for q in load_squad_questions(path, split=want):
    out.append(OpenQAExample(q.qid, q.question, tuple(q.answers), False, q.doc_id))
  return out


def _check_record(record) -> str:
  """"" for a usable question record (a dict), else what is wrong with it. The official NQ-open
  files' "answer" stands for "answers" (it is moved there)."""
  if not isinstance(record, dict):
    return f"expected a JSON object, got {type(record).__name__}"
  question = record.get("question")
  if not isinstance(question, str) or not question.strip():
    return "missing or empty \"question\" (a non-empty string)"
  if "answers" not in record and "answer" in record:
    record["answers"] = record.pop("answer")
  answers = record.get("answers")
  if not isinstance(answers, list) or not answers:
    return "missing or empty \"answers\" (or NQ-open's \"answer\": a non-empty list of strings)"
  if not all(isinstance(a, str) and a.strip() for a in answers):
    return "\"answers\" must be a list of non-empty strings"
  if not isinstance(record.get("answer_regex", False), bool):
    return "\"answer_regex\" must be true or false"
  qid = record.get("id")
  if qid is not None and (isinstance(qid, bool) or not isinstance(qid, (str, int))):
    return "\"id\" must be a string or an integer"
  doc_id = record.get("doc_id")
  if doc_id is not None and not isinstance(doc_id, str):
    return "\"doc_id\" must be a string"
  return ""


def _json_record(line: str) -> Tuple[object, str]:
  """(the JSON value of a line, "") or (None, why it is not valid JSON)."""
  try:
    return json.loads(line), ""
  except json.JSONDecodeError as e:
    return None, f"not valid JSON ({e.msg} at column {e.colno})"
  except RecursionError:
    return None, "not valid JSON (values nested too deeply to parse)"


def _parse_jsonl_line(line: str) -> Tuple[Optional[dict], str]:
  """(record, "") for a well-formed question line, else (None, what is wrong)."""
  record, problem = _json_record(line)
  if problem:
    return None, problem
  problem = _check_record(record)
  return (None, problem) if problem else (record, "")


def _jsonl_records(path: str, problems: "_LineProblems") -> Iterator[tuple]:
  """(line, record or None, problem) for each non-blank line of a JSONL question file."""
  for lineno, line in _text_lines(path, problems):
    if line.strip():
      yield (lineno, *_parse_jsonl_line(line))


def _dpr_qa_records(path: str, problems: "_LineProblems") -> Iterator[tuple]:
  """(line the row starts on, record or None, problem) for each row of a DPR `*.qa.csv`, read
  as DPR reads it (csv over the file: a quoted question may span lines) by the NQ builder's own
  row reader and parser."""
  from tfds_builders import openqa_common  # pylint: disable=g-import-not-at-top
  lines = ((lineno, line + "\n") for lineno, line in _text_lines(path, problems))
  for lineno, cells in openqa_common.dpr_qa_rows(lines):
    if isinstance(cells, ValueError):
      yield lineno, None, str(cells)
      continue
    if not any(cell.strip() for cell in cells):
      continue  # a blank line
    try:
      question, answers = openqa_common.parse_qa_dpr_cells(cells)
    except ValueError as e:
      yield lineno, None, str(e)
      continue
    record = {"question": question, "answers": answers}
    problem = _check_record(record)
    yield (lineno, None, problem) if problem else (lineno, record, "")


def _read_bytes(path: str) -> bytes:
  """The bytes of a question file (`.gz` gunzipped)."""
  if not tf.io.gfile.exists(path):
    raise DatasetError(f"Question file {path} does not exist.")
  with tf.io.gfile.GFile(path, "rb") as f:
    raw = f.read()
  return gzip.decompress(raw) if path.endswith(".gz") else raw


class _LineProblems:
  """Malformed lines of one file: logged as `<path>:<line>: <problem>` and counted, or with
  `strict` the first one is a DatasetError."""

  def __init__(self, path: str, strict: bool):
    self.path, self.strict, self.skipped = path, strict, 0

  def report(self, lineno: int, problem: str) -> None:
    message = f"{self.path}:{lineno}: {problem}"
    if self.strict:
      raise DatasetError(message)
    logging.warning("%s; line skipped.", message)
    self.skipped += 1


def _text_lines(path: str, problems: _LineProblems) -> Iterator[Tuple[int, str]]:
  """(line number, text) of each line of a question file (lines end at `\n`, a `\r` before it
  dropped, and the file's UTF-8 byte order mark too); a line that is not UTF-8 is reported to
  `problems` (skipped, or with `strict` an error) rather than read with replacement characters."""
  for lineno, raw in enumerate(_read_bytes(path).split(b"\n"), start=1):
    if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
      raw = raw[3:]
    try:
      yield lineno, raw.rstrip(b"\r").decode("utf-8")
    except UnicodeDecodeError as e:
      problems.report(lineno, f"not UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start + 1} of "
                      "the line)")


def _load_lines(path: str, records, strict: bool, limit: Optional[int]) -> List[OpenQAExample]:
  """Questions of a one-question-a-row file; `records(path, problems)` yields (line, record or
  None, problem) per row."""
  out, problems = [], _LineProblems(path, strict)
  name = os.path.basename(path)
  for lineno, record, problem in records(path, problems):
    if record is None:
      problems.report(lineno, problem)
      continue
    qid = record.get("id")
    out.append(OpenQAExample(f"{name}:{lineno}" if qid is None else str(qid), record["question"],
                             tuple(record["answers"]), bool(record.get("answer_regex", False)),
                             record.get("doc_id")))
    if limit and len(out) >= limit:
      break
  if not out:
    raise DatasetError(f"{path} holds no usable question ({problems.skipped} malformed lines).")
  logging.info("Loaded %d questions from %s (%d malformed lines skipped).", len(out), path,
               problems.skipped)
  return out


def load_jsonl_questions(path: str, strict: bool = False,
                         limit: Optional[int] = None) -> List[OpenQAExample]:
  """Questions of a JSONL file (format in the module docstring; `.gz` is read gunzipped).

  A malformed line (bad JSON, missing or empty question or answers, answers not a list of
  strings, a wrong type for answer_regex / id / doc_id) is logged as `<path>:<line>: <problem>`
  and skipped; with `strict` it raises DatasetError with that message. Blank lines are ignored.
  Ids default to `<file name>:<line>`.
  """
  return _load_lines(path, _jsonl_records, strict, limit)


def load_dpr_qa_questions(path: str, strict: bool = False,
                          limit: Optional[int] = None) -> List[OpenQAExample]:
  """Questions of DPR's `*.qa.csv` (`question \\t ['answer', ...]`, no header), rows read as
  DPR's csv.reader reads them (a quoted question may span lines); ids `<file name>:<line the row
  starts on>`. Malformed rows (no tab, answers that are not a list literal of non-empty strings)
  are handled as in `load_jsonl_questions`."""
  return _load_lines(path, _dpr_qa_records, strict, limit)


def _beir_qrels(path: str, problems: _LineProblems) -> Dict[str, Tuple[int, Dict[str, int]]]:
  """{query-id: (its first line, {corpus-id: score})} of a BEIR qrels TSV (header row first), in
  file order."""
  qrels: Dict[str, Tuple[int, Dict[str, int]]] = {}
  for lineno, line in _text_lines(path, problems):
    try:  # one row a line: a stray quote cannot swallow the lines after it
      row = next(csv.reader([line], delimiter="\t"), [])
    except csv.Error as e:
      problems.report(lineno, f"not a tab-separated row ({e})")
      continue
    if lineno == 1 or not any(cell.strip() for cell in row):
      continue  # the header row (BEIR skips the first line), blank lines
    if len(row) != 3:
      problems.report(lineno, f"expected 3 tab-separated cells (query-id, corpus-id, score), "
                      f"got {len(row)}")
      continue
    try:
      score = int(row[2])
    except ValueError:
      problems.report(lineno, f"score {row[2]!r} is not an integer")
      continue
    qrels.setdefault(row[0], (lineno, {}))[1][row[1]] = score
  return qrels


def load_beir_questions(name: str, split: str = "test", strict: bool = False,
                        limit: Optional[int] = None) -> List[OpenQAExample]:
  """BEIR's queries of one split (`beir:<dir>[:<split>]`, see the module docstring): the queries
  the split's qrels name, in the qrels' order, with no answers and the qrels' relevant documents.

  A malformed line of either file (bad JSON, no string `_id`/`text`; a qrels row without 3 cells
  or an integer score, or naming a query absent from queries.jsonl) is handled as in
  `load_jsonl_questions`.
  """
  folder, split = beir_location(name, split)
  qrels_path = os.path.join(folder, BEIR_QRELS, f"{split}.tsv")
  if not tf.io.gfile.exists(qrels_path):
    qrels_dir = os.path.join(folder, BEIR_QRELS)
    have = sorted(f[:-4] for f in tf.io.gfile.listdir(qrels_dir) if f.endswith(".tsv")) \
        if tf.io.gfile.isdir(qrels_dir) else []
    raise DatasetError(f"{name}: no qrels for split {split!r} ({qrels_path}); it has {have}.")
  queries_path = os.path.join(folder, BEIR_QUERIES)
  queries, problems = {}, _LineProblems(queries_path, strict)
  for lineno, line in _text_lines(queries_path, problems):
    if not line.strip():
      continue
    record, problem = _json_record(line)
    if problem:
      problems.report(lineno, problem)
      continue
    qid = record.get("_id") if isinstance(record, dict) else None
    text = record.get("text") if isinstance(record, dict) else None
    if isinstance(qid, bool) or not isinstance(qid, (str, int)) or \
        not isinstance(text, str) or not text.strip():
      problems.report(lineno, 'expected a BEIR query: "_id" (a string or an integer) and a '
                      'non-empty string "text"')
      continue
    queries[str(qid)] = text
  qrels_problems = _LineProblems(qrels_path, strict)
  out = []
  for qid, (lineno, judged) in _beir_qrels(qrels_path, qrels_problems).items():
    if qid not in queries:
      qrels_problems.report(lineno, f"query-id {qid!r} is not in {queries_path}")
      continue
    relevant = [(d, g) for d, g in judged.items() if g > 0]
    out.append(OpenQAExample(qid, queries[qid], (), False, None,
                             tuple(d for d, _ in relevant), tuple(g for _, g in relevant)))
    if limit and len(out) >= limit:
      break
  if not out:
    raise DatasetError(f"{name}: no usable question in {queries_path} for {qrels_path}.")
  logging.info("Loaded %d BEIR questions (split %s) from %s (%d malformed lines skipped).",
               len(out), split, folder, problems.skipped + qrels_problems.skipped)
  return out


def load_examples(dataset: str, split: str, data_dir: Optional[str] = None,
                  manual_dir: Optional[str] = None, limit: Optional[int] = None,
                  squad_path: Optional[str] = None, strict: bool = False) -> List[OpenQAExample]:
  """Questions of `dataset`/`split` as OpenQAExamples.

  `dataset` is a TFDS name (DATASETS or a short name; ids `<dataset>/<split>/<index>`),
  `squad_open`, `jsonl:<path>` or `dpr_qa:<path>` (the file is the split, so `split` is not
  used), or `beir:<dir>[:<split>]` (the split named, else `split`); `strict` makes a malformed
  line of a file an error. Raises DatasetError for an unknown name.
  """
  kind = check_dataset(dataset)
  if kind == SQUAD_OPEN:
    out = load_squad_open(split, squad_path)
    return out[:limit] if limit else out
  if kind == "jsonl":
    return load_jsonl_questions(dataset[len(JSONL_PREFIX):], strict=strict, limit=limit)
  if kind == "dpr_qa":
    return load_dpr_qa_questions(dataset[len(DPR_QA_PREFIX):], strict=strict, limit=limit)
  if kind == "beir":
    return load_beir_questions(dataset, split, strict=strict, limit=limit)
  ds = load_openqa_split(dataset, split, data_dir=data_dir, manual_dir=manual_dir)
  if limit:
    ds = ds.take(limit)
  out = []
  for i, ex in enumerate(ds.as_numpy_iterator()):
    question = ex["question"].decode("utf-8", "replace")
    answers = tuple(a.decode("utf-8", "replace") for a in ex["answers"])
    out.append(OpenQAExample(f"{dataset}/{split}/{i}", question, answers,
                             bool(ex["answers_are_regex"])))
  return out
