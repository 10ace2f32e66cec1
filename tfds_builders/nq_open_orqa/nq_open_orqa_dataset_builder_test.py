"""Tests of `nq_open_orqa`: TFDS dummy-data tests of both configs and builds of shipped data."""
import pytest

from tfds_builders import builder_testing
from tfds_builders.nq_open_orqa import nq_open_orqa_dataset_builder


class NqOpenOrqaDummyTest(builder_testing.DatasetBuilderTestCase):
  """Config `orqa`: dummy NQ-open.train.jsonl (7 NQ-open train questions, 2 hash to dev)."""
  DATASET_CLASS = nq_open_orqa_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["orqa"]
  SPLITS = {"train": 5, "dev": 2, "test": 3}


class NqOpenOrqaDprDummyTest(builder_testing.DatasetBuilderTestCase):
  """Config `dpr`: 8 real DPR-style lines + 5 bad ones (no tab, bad literal, empty list, code
  instead of a literal: skipped; invalid UTF-8: kept with U+FFFD)."""
  DATASET_CLASS = nq_open_orqa_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["dpr"]
  SPLITS = {"train": 7, "dev": 2, "test": 3}


BUILDER = "nq_open_orqa"  # shipped-data builds: shipped_data_test.py


def test_stray_unicode_is_removed(shipped_data):
  examples = shipped_data(BUILDER).read_split("test")
  assert examples[0]["question"] == "when was the last time anyone was on the moon"
  assert examples[0]["answers"] == ["14 December 1972 UTC", "December 1972"]
  by_question = {e["question"]: e["answers"] for e in examples}
  # Line 3256: ['Algeria\u200e', 'Algeria', 'Angola\u200e', 'Angola'] -> cleaned, deduplicated.
  assert by_question["african countries that begin with the letter a"] == ["Algeria", "Angola"]
  # Line 478: a zero-width space inside the question is removed.
  assert ("who was the french chef given credit for developing the classic kitchen brigade"
          in by_question)
  assert not any("\u200b" in q for q in by_question)
  # Line 10: '54\xa0Mbit/s' (no-break space) becomes an ordinary space.
  assert by_question["what is the maximum data rate for the 802.11a standard select "
                     "one"] == ["54 Mbit/s"]
