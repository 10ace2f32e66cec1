"""TFDS builder `nq_open_orqa`: NaturalQuestions-Open with ORQA's train/dev/test splits.

ORQA and REALM report NQ on the *test* split = the 3,610 questions of `NQ-open.dev.jsonl`; their
train/dev splits (79,168 / 8,757) are ORQA's hash re-split of `NQ-open.train.jsonl` (87,925
questions). Named `*_orqa` because TFDS's catalogue has `natural_questions_open` (which calls the
3,610 questions `validation` and has no dev split).

Configs (they differ only in the source of train/dev; test is always `NQ-open.dev.jsonl`):

* `orqa` (default): train/dev from `NQ-open.train.jsonl` (JSON lines). Offline, when manual_dir
  holds no `NQ-open.train.jsonl`, only the `test` split is built (with a warning).
* `dpr`: train/dev from DPR-style files, `question<TAB>['answer', ...]` (DPR's
  `nq-train.qa.csv` and `nq-dev.qa.csv`, or Anserini's `topics.nq.dev.txt`, which holds the same
  8,757 questions as `nq-dev.qa.csv`; all are NQ-open train questions). The project ships
  `topics.nq.dev.txt`, so offline fine-tuning on NQ works out of the box: train 7,920, dev 837,
  test 3,610 with the shipped files.

Offline: put the files named above (or `.gz` copies) in `manual_dir`; the project ships
`NQ-open.dev.jsonl` and `topics.nq.dev.txt` in `tfds_builders/nq_open_orqa/data/`.
"""
import dataclasses
from typing import Tuple

from absl import logging
from etils import epath
import tensorflow_datasets as tfds

from tfds_builders import openqa_common

# google-research-datasets/natural-questions, nq_open/. Commit a7a113c9 is the one TFDS's own
# `natural_questions_open` pins; NQ-open.dev.jsonl there is byte-identical (sha256 f15567f3...) to
# the copy shipped in data/ (taken at fb26a307). The NQ-open.train.jsonl size and sha256 in
# checksums.tsv are TFDS's registered values for that URL; the file itself is not in this project.
_NQ_BASE_URL = ("https://raw.githubusercontent.com/google-research-datasets/natural-questions/"
                "a7a113c9fdc2d9986d624bd43b8a18d6d5779eaa/nq_open/")
_TRAIN_FILE = "NQ-open.train.jsonl"
_TEST_FILE = "NQ-open.dev.jsonl"
# castorini/anserini, topics-and-qrels: DPR's NQ dev questions (8,757) in DPR's format.
_DPR_DEV_URL = ("https://raw.githubusercontent.com/castorini/anserini/"
                "71f0b9e66660db1cec84d8287daf4300595cff9c/src/main/resources/topics-and-qrels/"
                "topics.nq.dev.txt")
# DPR-style train sources read by the `dpr` config, in this order: DPR's train file, then the
# first present of the (identical) dev question files.
DPR_TRAIN_FILES: Tuple[str, ...] = ("nq-train.qa.csv",)
DPR_DEV_FILES: Tuple[str, ...] = ("nq-dev.qa.csv", "topics.nq.dev.txt")


@dataclasses.dataclass
class NqOpenOrqaConfig(tfds.core.BuilderConfig):
  """Chooses where train/dev come from: `nq_open` (NQ-open.train.jsonl) or `dpr` (DPR files)."""
  train_source: str = "nq_open"


class Builder(openqa_common.OpenQABuilder):
  """NaturalQuestions-Open (Lee et al., 2019) with ORQA's splits."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "ORQA train/dev/test splits; question, answers, answers_are_regex."}
  BUILDER_CONFIGS = [
      NqOpenOrqaConfig(
          name="orqa", train_source="nq_open",
          description="train/dev = ORQA's hash split of NQ-open.train.jsonl; test = "
                      "NQ-open.dev.jsonl."),
      NqOpenOrqaConfig(
          name="dpr", train_source="dpr",
          description="train/dev = ORQA's hash split of DPR-style question<TAB>[answers] files "
                      "(nq-train.qa.csv, nq-dev.qa.csv or topics.nq.dev.txt); test = "
                      "NQ-open.dev.jsonl."),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "orqa"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Optional (offline use). Place in manual_dir (plain or .gz):
    NQ-open.dev.jsonl      always (the test split);
    NQ-open.train.jsonl    for train/dev with config `orqa` (else only `test` is built);
    nq-train.qa.csv, nq-dev.qa.csv or topics.nq.dev.txt
                           DPR-style question<TAB>['answer', ...] files, config `dpr`.
  The project ships NQ-open.dev.jsonl and topics.nq.dev.txt in tfds_builders/nq_open_orqa/data/.
  Without a manual_dir holding files the builder downloads the pinned URLs in checksums.tsv.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=openqa_common.qa_features(),
        # Keep the source files' order (ORQA's resplit files keep it too).
        disable_shuffling=True,
        homepage=("https://github.com/google-research-datasets/natural-questions/tree/master/"
                  "nq_open"),
        metadata=tfds.core.MetadataDict(
            answers_are_regex=False,
            split_rule=("dev = train-source questions with tf.strings.to_hash_bucket_fast("
                        "question, 100000) % 10 == 0; train = the rest; test = NQ-open.dev.jsonl"),
        ),
    )

  def _split_generators(self, dl_manager):
    manual_dir = openqa_common.manual_dir_or_none(dl_manager)
    if manual_dir is not None:
      test_path = openqa_common.require_manual_file(manual_dir, _TEST_FILE)
      train_paths = self._manual_train_paths(manual_dir)
    else:
      logging.info("%s: no manual_dir with files; downloading the pinned sources.", self.name)
      urls = {"test": _NQ_BASE_URL + _TEST_FILE}
      if self.builder_config.train_source == "nq_open":
        urls["train"] = _NQ_BASE_URL + _TRAIN_FILE
      else:
        urls["train"] = _DPR_DEV_URL
      downloaded = dl_manager.download(urls)
      test_path = epath.Path(downloaded["test"])
      train_paths = [epath.Path(downloaded["train"])]

    splits = {"test": self._generate_examples(openqa_common.read_qa_jsonl(test_path))}
    if train_paths:
      train_examples = []
      for path in train_paths:
        if self.builder_config.train_source == "nq_open":
          train_examples.extend(openqa_common.read_qa_jsonl(path))
        else:
          train_examples.extend(openqa_common.read_qa_dpr(path))
      resplit = openqa_common.orqa_split(train_examples)
      splits["train"] = self._generate_examples(resplit["train"])
      splits["dev"] = self._generate_examples(resplit["dev"])
    return splits

  def _manual_train_paths(self, manual_dir: epath.Path):
    """The train-source files present in manual_dir for this config (may be empty for `orqa`)."""
    if self.builder_config.train_source == "nq_open":
      path = openqa_common.find_manual_file(manual_dir, _TRAIN_FILE)
      if path is None:
        logging.warning(
            "%s/%s: manual_dir %s has no %s; building only the `test` split. Add the file (or use "
            "config `dpr` with DPR-style files) for train/dev.", self.name,
            self.builder_config.name, manual_dir, _TRAIN_FILE)
        return []
      return [path]
    paths = [p for p in (openqa_common.find_manual_file(manual_dir, n) for n in DPR_TRAIN_FILES)
             if p is not None]
    dev_files = [p for p in (openqa_common.find_manual_file(manual_dir, n) for n in DPR_DEV_FILES)
                 if p is not None]
    if dev_files:
      paths.append(dev_files[0])
    if not paths:
      raise FileNotFoundError(
          f"{self.name}/dpr: manual_dir {manual_dir} holds none of "
          f"{list(DPR_TRAIN_FILES + DPR_DEV_FILES)} (plain or .gz), the DPR-style train sources.")
    logging.info("%s/dpr: train sources %s.", self.name, [p.name for p in paths])
    return paths

  def _generate_examples(self, examples):
    return openqa_common.generate_examples(examples, answers_are_regex=False)
