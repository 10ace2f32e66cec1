"""Tests of `curated_trec_orqa`: TFDS dummy-data test and a build of the shipped real data."""
import re

import pytest

from tfds_builders import builder_testing
from tfds_builders.curated_trec_orqa import curated_trec_orqa_dataset_builder

_BROKEN_PATTERN_SUFFIX = r"Sievert \(Sv\)\\"[:-1]  # The real pattern ends in one backslash.


class CuratedTrecOrqaDummyTest(builder_testing.DatasetBuilderTestCase):
  """dummy_data/: 8 real train lines, the real non-compiling pattern (kept), an empty question."""
  DATASET_CLASS = curated_trec_orqa_dataset_builder.Builder
  SPLITS = {"train": 7, "dev": 2, "test": 3}


# Builds from the shipped DrQA files; ORQA's published counts must come out exactly.
BUILDER = "curated_trec_orqa"
EXPECTED_SPLITS = {"train": 1353, "dev": 133, "test": 694}
ANSWERS_ARE_REGEX = True


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
  return builder_testing.ShippedData(BUILDER, str(tmp_path_factory.mktemp("openqa_tfds")))


def test_split_counts_are_exact(shipped):
  builder_testing.check_split_counts_are_exact(shipped, EXPECTED_SPLITS)


def test_examples_are_well_formed(shipped):
  builder_testing.check_examples_are_well_formed(shipped, EXPECTED_SPLITS, ANSWERS_ARE_REGEX)


def test_shipped_files_match_checksums():
  builder_testing.check_shipped_files_match_checksums(BUILDER)


def test_answers_are_regexes_and_broken_pattern_is_kept(shipped):
  examples = shipped.read_split("train") + shipped.read_split("dev")
  broken = [e for e in examples if e["question"] == "What is measured in curies?"]
  assert len(broken) == 1
  pattern = broken[0]["answers"][0]
  assert pattern.endswith(_BROKEN_PATTERN_SUFFIX), pattern
  with pytest.raises(re.error):
    re.compile(pattern)
  fashion = [e for e in examples if e["question"] == "When is Fashion week in NYC?"]
  assert fashion[0]["answers"] == ["Sept?(ember)?|Feb(ruary)?"]
  assert all(e["answers_are_regex"] for e in examples)
