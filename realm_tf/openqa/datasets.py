"""Loads the open-QA benchmarks (NQ-open, WebQuestions, CuratedTREC) as tf.data, offline.

`load_openqa_split("web_questions_orqa", "train")` builds the TFDS dataset (once per data_dir)
from the public files shipped in `tfds_builders/<name>/data/` unless another `manual_dir` is
given, and returns a `tf.data.Dataset` of dicts:

  question           tf.string []     the question
  answers            tf.string [n]    gold answers (regular expressions when answers_are_regex)
  answers_are_regex  tf.bool   []     True for CuratedTREC

Splits are ORQA's `train` / `dev` / `test` (`validation` is accepted for `dev`). For NQ, the
default config `nq_open_orqa` (= `nq_open_orqa/orqa`) needs `NQ-open.train.jsonl` in manual_dir
for train/dev; `nq_open_orqa/dpr` builds them from the shipped DPR-style questions instead.
Short names: nq, nq_dpr, wq, ct.
"""
from typing import Optional

from absl import logging
from etils import epath
import tensorflow as tf
import tensorflow_datasets as tfds

ALIASES = {
    "nq": "nq_open_orqa",
    "nq_dpr": "nq_open_orqa/dpr",
    "wq": "web_questions_orqa",
    "ct": "curated_trec_orqa",
}
SPLITS = ("train", "dev", "test")
FEATURE_KEYS = ("question", "answers", "answers_are_regex")


def resolve_name(name: str) -> str:
  """Maps a short name (nq, nq_dpr, wq, ct) to the TFDS name; checks the builder exists."""
  import tfds_builders  # pylint: disable=g-import-not-at-top  (registers the builders)
  full = ALIASES.get(name, name)
  if full.split("/", 1)[0] not in tfds_builders.BUILDERS:
    raise ValueError(f"Unknown open-QA dataset {name!r}; use one of {sorted(ALIASES)} or "
                     f"{sorted(tfds_builders.BUILDERS)} (NQ configs: /orqa, /dpr).")
  return full


def prepare_openqa_builder(name: str, data_dir: Optional[str] = None,
                           manual_dir: Optional[str] = None) -> tfds.core.DatasetBuilder:
  """Returns the prepared TFDS builder of an open-QA dataset, building it when needed.

  Without `manual_dir` the files shipped with the project are used, so nothing is downloaded.
  """
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
