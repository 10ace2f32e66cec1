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
      corpus document holding the answer). A malformed line is logged with its file and line
      number and skipped, or stops the run with that message when `strict`.

`load_openqa_split("web_questions_orqa", "train")` returns a `tf.data.Dataset` of dicts:

  question           tf.string []     the question
  answers            tf.string [n]    gold answers (regular expressions when answers_are_regex)
  answers_are_regex  tf.bool   []     True for CuratedTREC

Splits are ORQA's `train` / `dev` / `test` (`validation` is accepted for `dev`). For NQ, the
default config `nq_open_orqa` (= `nq_open_orqa/orqa`) needs `NQ-open.train.jsonl` in manual_dir
for train/dev; `nq_open_orqa/dpr` builds them from the shipped DPR-style questions instead.
"""
import gzip
import json
import os
from typing import List, Optional, Tuple

from absl import logging
from etils import epath
import tensorflow as tf

from realm_tf.openqa.features import OpenQAExample

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
DATASETS = TFDS_DATASETS + (SQUAD_OPEN,)


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
  """Returns the kind of `name` (`tfds`, `squad_open` or `jsonl`); DatasetError listing the valid
  choices for anything else. Cheap: builds nothing, reads nothing."""
  if name == SQUAD_OPEN:
    return SQUAD_OPEN
  if name.startswith(JSONL_PREFIX):
    if not name[len(JSONL_PREFIX):].strip():
      raise DatasetError(f"--dataset={name!r} names no file; use jsonl:<path>.")
    return "jsonl"
  try:
    resolve_name(name)
  except ValueError:
    raise DatasetError(
        f"Unknown --dataset {name!r}; choose one of {', '.join(DATASETS)}, the short names "
        f"{', '.join(sorted(ALIASES))}, or jsonl:<path> (your own questions).") from None
  return "tfds"


def dataset_tag(name: str) -> str:
  """A file-name-safe name of a dataset: `jsonl:/x/my_qs.jsonl` → `jsonl_my_qs`, `a/b` → `a_b`."""
  if name.startswith(JSONL_PREFIX):
    base = os.path.basename(name[len(JSONL_PREFIX):].rstrip("/"))
    for ext in (".gz", ".jsonl", ".json"):
      base = base[:-len(ext)] if base.endswith(ext) else base
    return "jsonl_" + base
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


def _parse_jsonl_line(line: str) -> Tuple[Optional[dict], str]:
  """(record, "") for a well-formed question line, else (None, what is wrong)."""
  try:
    record = json.loads(line)
  except json.JSONDecodeError as e:
    return None, f"not valid JSON ({e.msg} at column {e.colno})"
  if not isinstance(record, dict):
    return None, f"expected a JSON object, got {type(record).__name__}"
  question = record.get("question")
  if not isinstance(question, str) or not question.strip():
    return None, "missing or empty \"question\" (a non-empty string)"
  answers = record.get("answers")
  if not isinstance(answers, list) or not answers:
    return None, "missing or empty \"answers\" (a non-empty list of strings)"
  if not all(isinstance(a, str) and a.strip() for a in answers):
    return None, "\"answers\" must be a list of non-empty strings"
  if not isinstance(record.get("answer_regex", False), bool):
    return None, "\"answer_regex\" must be true or false"
  qid = record.get("id")
  if qid is not None and (isinstance(qid, bool) or not isinstance(qid, (str, int))):
    return None, "\"id\" must be a string or an integer"
  doc_id = record.get("doc_id")
  if doc_id is not None and not isinstance(doc_id, str):
    return None, "\"doc_id\" must be a string"
  return record, ""


def load_jsonl_questions(path: str, strict: bool = False,
                         limit: Optional[int] = None) -> List[OpenQAExample]:
  """Questions of a JSONL file (format in the module docstring; `.gz` is read gunzipped).

  A malformed line (bad JSON, missing or empty question or answers, answers not a list of
  strings, a wrong type for answer_regex / id / doc_id) is logged as `<path>:<line>: <problem>`
  and skipped; with `strict` it raises DatasetError with that message. Blank lines are ignored.
  Ids default to `<file name>:<line>`.
  """
  if not tf.io.gfile.exists(path):
    raise DatasetError(f"Question file {path} does not exist.")
  with tf.io.gfile.GFile(path, "rb") as f:
    raw = f.read()
  if path.endswith(".gz"):
    raw = gzip.decompress(raw)
  out, skipped = [], 0
  name = os.path.basename(path)
  for lineno, line in enumerate(raw.decode("utf-8", "replace").splitlines(), start=1):
    if not line.strip():
      continue
    record, problem = _parse_jsonl_line(line)
    if record is None:
      message = f"{path}:{lineno}: {problem}"
      if strict:
        raise DatasetError(message)
      logging.warning("%s; line skipped.", message)
      skipped += 1
      continue
    qid = record.get("id")
    out.append(OpenQAExample(f"{name}:{lineno}" if qid is None else str(qid), record["question"],
                             tuple(record["answers"]), bool(record.get("answer_regex", False)),
                             record.get("doc_id")))
    if limit and len(out) >= limit:
      break
  if not out:
    raise DatasetError(f"{path} holds no usable question ({skipped} malformed lines).")
  logging.info("Loaded %d questions from %s (%d malformed lines skipped).", len(out), path,
               skipped)
  return out


def load_examples(dataset: str, split: str, data_dir: Optional[str] = None,
                  manual_dir: Optional[str] = None, limit: Optional[int] = None,
                  squad_path: Optional[str] = None, strict: bool = False) -> List[OpenQAExample]:
  """Questions of `dataset`/`split` as OpenQAExamples.

  `dataset` is a TFDS name (DATASETS or a short name; ids `<dataset>/<split>/<index>`),
  `squad_open`, or `jsonl:<path>` (the file is the split, so `split` is not used; `strict`
  makes a malformed line an error). Raises DatasetError for an unknown name.
  """
  kind = check_dataset(dataset)
  if kind == SQUAD_OPEN:
    out = load_squad_open(split, squad_path)
    return out[:limit] if limit else out
  if kind == "jsonl":
    return load_jsonl_questions(dataset[len(JSONL_PREFIX):], strict=strict, limit=limit)
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
