"""Shared parts of the open-domain QA builders: file readers, ORQA's split rule, bad input.

NaturalQuestions-Open, WebQuestions and CuratedTREC are all lists of (question, answers) pairs.
ORQA (Lee et al., 2019) and REALM (Guu et al., 2020) re-split each original *train* file into
train and dev with a hash of the question, and use the original *test* file (for NQ-open: its
dev file) as test. This module holds what the three builders share so the rule lives in one place:

* `read_qa_jsonl` reads ORQA / DrQA JSON lines (`{"question": ..., "answer": [...]}`).
* `read_qa_dpr` reads DPR-style rows (`question \\t ['answer', ...]`, a Python list literal
  parsed with `ast.literal_eval`, never `eval`) as DPR's csv.reader reads the file (a quoted
  question may span lines); `dpr_qa_rows` and `parse_qa_dpr_cells` are its row reader and row
  parser, which `realm_tf.openqa.datasets` (`--dataset=dpr_qa:<path>`) shares.
* Files may start with a UTF-8 byte order mark (dropped) and end lines in `\\r\\n`.
* `orqa_split` applies ORQA's rule: dev iff
  `tf.strings.to_hash_bucket_fast(question, 100000) % 10 == 0` on the question exactly as written
  in the file (before any clean-up), train otherwise.

Bad input never stops a build. Every record problem has a defined outcome and an absl warning that
names the file and line (the first `MAX_WARNINGS_PER_KIND` of each kind per file individually,
then one summary line with the total):

* unreadable line (bad JSON, no tab, a list literal that does not parse, missing keys, answers
  that are not a list of strings) -> record skipped;
* empty or whitespace-only question -> record skipped;
* empty answer list (or every answer empty after clean-up) -> record skipped;
* a single answer string instead of a list -> treated as a one-answer list;
* bytes that are not UTF-8 -> decoded with U+FFFD replacement characters, record kept;
* stray unicode (format characters such as U+200B zero-width space, U+200E left-to-right mark,
  U+00AD soft hyphen, U+FEFF; control characters) -> removed, record kept, warned about. White
  space of any kind (U+00A0, U+200A, newlines, ...) silently becomes ' ' and runs of it collapse
  (not inside regular expressions, whose spacing is meaningful). Answers that become equal after
  clean-up are kept once (NQ-open has 'Algeria\u200e' beside 'Algeria');
* a regular expression answer that does not compile (one real CuratedTREC train pattern ends in
  a lone backslash) -> kept verbatim, warned about; `realm_tf.openqa.metrics` treats it as
  never matching.
"""
import ast
import csv
import dataclasses
import gzip
import io
import json
import re
import sys
import unicodedata
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from absl import logging
from etils import epath
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

# ORQA's split rule (language/orqa/preprocessing/create_data_splits.py).
ORQA_HASH_BUCKETS = 100000
ORQA_DEV_MODULUS = 10

# How many warnings of one kind are logged one by one for a file before only counting them.
MAX_WARNINGS_PER_KIND = 10

_SPACE_RUN = re.compile(r" {2,}")


@dataclasses.dataclass(frozen=True)
class QAExample:
  """One question with its gold answers, as read from a source file.

  Attributes:
    question: the question after clean-up (what the model sees).
    answers: gold answer strings (or regular expressions for CuratedTREC) after clean-up.
    raw_question: the question exactly as in the file; ORQA's split hashes this string.
    source: `file_name:line` of the record, for warnings and traceability.
  """
  question: str
  answers: Tuple[str, ...]
  raw_question: str
  source: str


class _IssueLog:
  """Logs record problems of one file: the first few of each kind one by one, then a summary."""

  def __init__(self, path: str):
    self.path = path
    self.counts: Dict[str, int] = {}

  def warn(self, line: int, kind: str, message: str):
    count = self.counts.get(kind, 0) + 1
    self.counts[kind] = count
    if count <= MAX_WARNINGS_PER_KIND:
      logging.warning("%s:%d: %s", self.path, line, message)

  def flush(self):
    for kind, count in sorted(self.counts.items()):
      if count > MAX_WARNINGS_PER_KIND:
        logging.warning("%s: %d records in total had the problem %r (only the first %d were "
                        "logged one by one).", self.path, count, kind, MAX_WARNINGS_PER_KIND)


def clean_text(text: str, is_regex: bool = False) -> str:
  """Removes stray unicode from a question or answer; returns the cleaned string.

  Format characters (Unicode category Cf: zero-width space, direction marks, soft hyphen, BOM)
  and control characters other than white space are dropped; any Unicode white space becomes
  ' '. For plain text, runs of white space collapse to one space and the ends are stripped; a
  regular expression keeps its inner spacing and only loses leading/trailing white space.
  """
  if text.isprintable():  # Fast path: no control, format or separator chars besides ' '.
    return (text if is_regex else _SPACE_RUN.sub(" ", text)).strip()
  chars = []
  for ch in text:
    if ch.isspace():
      chars.append(" ")
      continue
    category = unicodedata.category(ch)
    if category in ("Cf", "Cc", "Cs", "Co", "Cn") and ch != "\ufffd":
      continue
    chars.append(ch)
  cleaned = "".join(chars)
  if not is_regex:
    cleaned = _SPACE_RUN.sub(" ", cleaned)
  return cleaned.strip()


def _short(value, limit: int = 80) -> str:
  """repr() of a value for a log line, cut to about `limit` characters."""
  text = repr(value)
  return text if len(text) <= limit else text[:limit] + "..."


def _open_lines(path: epath.PathLike) -> Iterator[Tuple[int, bytes]]:
  """Yields (1-based line number, raw line bytes) of a plain or gzip-compressed file."""
  path = str(path)
  with tf.io.gfile.GFile(path, "rb") as f:
    data = f.read()
  if path.endswith(".gz"):
    data = gzip.GzipFile(fileobj=io.BytesIO(data)).read()
  if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark, as Windows editors write
    data = data[3:]
  for number, line in enumerate(data.splitlines(), start=1):
    yield number, line


def _decode(raw: bytes, line: int, issues: _IssueLog) -> str:
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError:
    issues.warn(line, "invalid utf-8", "bytes that are not UTF-8; decoded with U+FFFD "
                "replacement characters")
    return raw.decode("utf-8", errors="replace")


def _make_example(question, answers, line: int, issues: _IssueLog, source: str,
                  answers_are_regex: bool) -> Optional[QAExample]:
  """Validates and cleans one parsed record; returns None (after a warning) to skip it."""
  if not isinstance(question, str):
    issues.warn(line, "bad question", f"question is {type(question).__name__}, not a string; "
                "record skipped")
    return None
  if isinstance(answers, str):
    issues.warn(line, "answer not a list", "answers is a single string, not a list; read as a "
                "one-answer list")
    answers = [answers]
  if not isinstance(answers, (list, tuple)) or not all(isinstance(a, str) for a in answers):
    issues.warn(line, "bad answers", f"answers must be a list of strings, got {_short(answers)}; "
                "record skipped")
    return None
  cleaned_question = clean_text(question)
  if not cleaned_question:
    issues.warn(line, "empty question", "empty or white-space question; record skipped")
    return None
  if cleaned_question != " ".join(question.split()):
    issues.warn(line, "stray unicode", f"question {_short(question)} holds format/control "
                "characters; removed them")
  cleaned_answers = []
  for answer in answers:
    cleaned = clean_text(answer, is_regex=answers_are_regex)
    if cleaned != (answer.strip() if answers_are_regex else " ".join(answer.split())):
      issues.warn(line, "stray unicode", f"answer {_short(answer)} holds format/control "
                  "characters; removed them")
    if not cleaned:
      issues.warn(line, "empty answer", f"answer {_short(answer)} is empty; dropped")
      continue
    if answers_are_regex:
      try:
        re.compile(cleaned)
      except re.error as e:
        issues.warn(line, "bad regex", f"answer pattern {cleaned!r} does not compile ({e}); kept, "
                    "it never matches")
    if cleaned not in cleaned_answers:  # Clean-up can make two answers equal; keep one.
      cleaned_answers.append(cleaned)
  if not cleaned_answers:
    issues.warn(line, "no answers", "no (non-empty) answers; record skipped")
    return None
  return QAExample(question=cleaned_question, answers=tuple(cleaned_answers),
                   raw_question=question, source=source)


def read_qa_jsonl(path: epath.PathLike, answers_are_regex: bool = False) -> List[QAExample]:
  """Reads ORQA / DrQA JSON lines `{"question": str, "answer": [str, ...]}` (plain or .gz).

  The key `answers` is accepted in place of `answer`; other keys are ignored.
  Blank lines are ignored; every other problem is handled as the module docstring says.
  """
  name = epath.Path(path).name
  issues = _IssueLog(str(path))
  examples = []
  for line, raw in _open_lines(path):
    if not raw.strip():
      continue
    text = _decode(raw, line, issues)
    try:
      record = json.loads(text)
    except (ValueError, RecursionError) as e:
      issues.warn(line, "unreadable", f"not valid JSON ({type(e).__name__}: {e}); record "
                  "skipped")
      continue
    answer_key = "answer" if isinstance(record, dict) and "answer" in record else "answers"
    if not isinstance(record, dict) or "question" not in record or answer_key not in record:
      issues.warn(line, "unreadable", "expected an object with keys 'question' and 'answer' "
                  "(or 'answers'); record skipped")
      continue
    example = _make_example(record["question"], record[answer_key], line, issues,
                            f"{name}:{line}", answers_are_regex)
    if example is not None:
      examples.append(example)
  issues.flush()
  logging.info("Read %d examples from %s.", len(examples), path)
  return examples


def dpr_qa_rows(lines: Iterable[Tuple[int, str]]) -> Iterator[Tuple[int, object]]:
  """(number of the line a row starts on, the row's cells) for each row of DPR-style `lines`,
  (line number, text ending in `\\n`) pairs, as DPR reads its `*.qa.csv`: Python's csv over the
  file, tab-delimited, so a cell that starts with `"` is quoted, may span lines, and `""` inside
  it is one `"` (`realm_tf.io.tsv.rows`: a row that would span lines but is not well-formed, or
  whose answers do not parse, is its first line alone, so a stray quote does not swallow the
  questions after it). A row csv refuses comes as a ValueError in place of its cells. Streams:
  one row in memory at a time."""
  from realm_tf.io import tsv  # pylint: disable=g-import-not-at-top

  def parses(cells) -> bool:
    try:
      parse_qa_dpr_cells(cells)
    except ValueError:
      return False
    return True

  for number, row in tsv.rows(lines, accept=parses):
    yield number, (ValueError(f"not a tab-separated line ({row})")
                   if isinstance(row, csv.Error) else row)


def parse_qa_dpr_line(text: str) -> Tuple[str, object]:
  """(question, answers value) of one DPR-style line `question<TAB>['answer', ...]`, split as
  csv splits one line (see `dpr_qa_rows`, which reads rows spanning lines) and parsed by
  `parse_qa_dpr_cells`. Raises ValueError saying what is wrong."""
  try:
    cells = next(csv.reader([text], delimiter="\t"))
  except csv.Error as e:
    raise ValueError(f"not a tab-separated line ({e})") from None
  return parse_qa_dpr_cells(cells)


def parse_qa_dpr_cells(cells: Sequence[str]) -> Tuple[str, object]:
  """(question, answers value) of one DPR-style row's cells: the last cell is the answers, a
  Python list literal parsed with `ast.literal_eval` (literals only, never code), and the cells
  before it, joined by tabs, the question. The answers value is returned as parsed, for the
  caller to check. Raises ValueError saying what is wrong.
  """
  if len(cells) < 2:
    raise ValueError("no tab between question and answers")
  literal = cells[-1].strip()
  try:
    answers = ast.literal_eval(literal)
  except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
    raise ValueError(f"answers {_short(literal)} are not a Python list literal "
                     f"({type(e).__name__})") from None
  return "\t".join(cells[:-1]), answers


def read_qa_dpr(path: epath.PathLike) -> List[QAExample]:
  """Reads DPR-style rows `question<TAB>['answer', ...]` (plain or .gz) as DPR reads them
  (`dpr_qa_rows`: a quoted question may span lines; `parse_qa_dpr_cells`); a row's line is the
  one it starts on.

  DPR's `*.qa.csv` files and Anserini's `topics.nq.*.txt` hold them.
  """
  name = epath.Path(path).name
  issues = _IssueLog(str(path))
  examples = []
  lines = ((line, _decode(raw, line, issues) + "\n") for line, raw in _open_lines(path))
  for line, cells in dpr_qa_rows(lines):
    try:
      if isinstance(cells, ValueError):
        raise cells
      if not any(cell.strip() for cell in cells):
        continue  # a blank line
      question, answers = parse_qa_dpr_cells(cells)
    except ValueError as e:
      issues.warn(line, "unreadable", f"{e}; record skipped")
      continue
    example = _make_example(question, answers, line, issues, f"{name}:{line}", False)
    if example is not None:
      examples.append(example)
  issues.flush()
  logging.info("Read %d examples from %s.", len(examples), path)
  return examples


def orqa_is_dev(questions: Sequence[str]) -> np.ndarray:
  """ORQA's rule, vectorised: True where `to_hash_bucket_fast(q, 100000) % 10 == 0`."""
  if not questions:
    return np.zeros([0], dtype=bool)
  # UTF-8 bytes, as TF would encode them; 'surrogatepass' keeps a lone surrogate (possible via a
  # JSON escape) from crashing the build.
  encoded = [q.encode("utf-8", "surrogatepass") for q in questions]
  buckets = tf.strings.to_hash_bucket_fast(encoded, ORQA_HASH_BUCKETS).numpy()
  return buckets % ORQA_DEV_MODULUS == 0


def orqa_split(examples: Sequence[QAExample]) -> Dict[str, List[QAExample]]:
  """Splits a train file's examples into ORQA's {'train', 'dev'} by hashing the raw question."""
  is_dev = orqa_is_dev([e.raw_question for e in examples])
  return {
      "train": [e for e, d in zip(examples, is_dev) if not d],
      "dev": [e for e, d in zip(examples, is_dev) if d],
  }


def qa_features() -> tfds.features.FeaturesDict:
  """The features every open-QA builder emits."""
  return tfds.features.FeaturesDict({
      "question": tfds.features.Text(doc="The question (cleaned of stray unicode)."),
      "answers": tfds.features.Sequence(
          tfds.features.Text(), doc="Gold answers; regular expressions when answers_are_regex."),
      "answers_are_regex": tfds.features.Scalar(
          dtype=np.bool_, doc="True when the answers are regular expressions (CuratedTREC)."),
  })


def generate_examples(examples: Iterable[QAExample], answers_are_regex: bool):
  """Yields TFDS (key, example) pairs; the key is the record's `file:line`."""
  for example in examples:
    yield example.source, {
        "question": example.question,
        "answers": list(example.answers),
        "answers_are_regex": answers_are_regex,
    }


def manual_dir_or_none(dl_manager) -> Optional[epath.Path]:
  """The manual directory when it exists and holds files, else None (then sources download)."""
  try:
    manual_dir = dl_manager.manual_dir
  except (AssertionError, ValueError):
    return None
  manual_dir = epath.Path(manual_dir)
  if not manual_dir.exists() or not any(manual_dir.iterdir()):
    return None
  return manual_dir


def find_manual_file(manual_dir: epath.Path, file_name: str) -> Optional[epath.Path]:
  """`manual_dir/file_name`, or its gzip-compressed `file_name.gz`, or None."""
  for candidate in (file_name, file_name + ".gz"):
    path = manual_dir / candidate
    if path.exists():
      return path
  return None


def require_manual_file(manual_dir: epath.Path, file_name: str) -> epath.Path:
  """Like `find_manual_file`, but a missing file is an error naming what was expected."""
  path = find_manual_file(manual_dir, file_name)
  if path is None:
    present = sorted(p.name for p in manual_dir.iterdir())
    raise FileNotFoundError(
        f"Manual directory {manual_dir} lacks {file_name} (or {file_name}.gz); it holds "
        f"{present}.")
  return path


def shipped_data_dir(builder_dir: epath.PathLike) -> epath.Path:
  """The `data/` folder of a builder package: the public files shipped with the project."""
  return epath.Path(builder_dir) / "data"


class OpenQABuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the open-QA builders; only fixes how TFDS finds the builder's folder.

  TFDS 4.9.10's `DatasetBuilder.code_path` touches the `importlib_resources` backport (declared
  only for Python < 3.9, so absent here) for builders outside `tensorflow_datasets`; this returns
  the module's file directly. TFDS finds `checksums.tsv`, `README.md`, `CITATIONS.bib`,
  `TAGS.txt` and `dummy_data/` next to it.
  """

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(sys.modules[cls.__module__].__file__)


class OrqaTrainTestBuilder(OpenQABuilder, skip_registration=True):
  """Base of builders whose source is one train file and one test file of JSON lines.

  Splits: `train` and `dev` = ORQA's hash split of the train file, `test` = the test file.
  Sources: the files in `manual_dir` when it exists and holds files (offline; `.gz` copies are
  accepted too), otherwise the pinned public URLs, verified against `checksums.tsv`.
  Subclasses set the class constants below.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "ORQA train/dev/test splits; question, answers, answers_are_regex."}
  TRAIN_FILE: str = ""
  TEST_FILE: str = ""
  TRAIN_URL: str = ""
  TEST_URL: str = ""
  ANSWERS_ARE_REGEX: bool = False
  HOMEPAGE: str = ""

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=qa_features(),
        # Keep the source files' order (ORQA's resplit files keep it too).
        disable_shuffling=True,
        homepage=self.HOMEPAGE,
        metadata=tfds.core.MetadataDict(
            answers_are_regex=self.ANSWERS_ARE_REGEX,
            split_rule=("dev = train-file questions with tf.strings.to_hash_bucket_fast("
                        "question, 100000) % 10 == 0; train = the rest; test = test file"),
        ),
    )

  def _source_paths(self, dl_manager) -> Dict[str, epath.Path]:
    manual_dir = manual_dir_or_none(dl_manager)
    if manual_dir is not None:
      logging.info("%s: reading %s and %s from manual_dir %s.", self.name, self.TRAIN_FILE,
                   self.TEST_FILE, manual_dir)
      return {"train": require_manual_file(manual_dir, self.TRAIN_FILE),
              "test": require_manual_file(manual_dir, self.TEST_FILE)}
    logging.info("%s: no manual_dir with files; downloading the pinned sources.", self.name)
    paths = dl_manager.download({"train": self.TRAIN_URL, "test": self.TEST_URL})
    return {k: epath.Path(v) for k, v in paths.items()}

  def _split_generators(self, dl_manager):
    paths = self._source_paths(dl_manager)
    train = read_qa_jsonl(paths["train"], self.ANSWERS_ARE_REGEX)
    test = read_qa_jsonl(paths["test"], self.ANSWERS_ARE_REGEX)
    splits = orqa_split(train)
    return {
        "train": self._generate_examples(splits["train"]),
        "dev": self._generate_examples(splits["dev"]),
        "test": self._generate_examples(test),
    }

  def _generate_examples(self, examples):
    return generate_examples(examples, self.ANSWERS_ARE_REGEX)
