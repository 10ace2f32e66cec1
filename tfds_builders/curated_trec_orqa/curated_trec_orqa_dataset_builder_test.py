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


BUILDER = "curated_trec_orqa"  # shipped-data builds: shipped_data_test.py


def test_answers_are_regexes_and_broken_pattern_is_kept(shipped_data):
  examples = shipped_data(BUILDER).read_split("train") + shipped_data(BUILDER).read_split("dev")
  broken = [e for e in examples if e["question"] == "What is measured in curies?"]
  assert len(broken) == 1
  pattern = broken[0]["answers"][0]
  assert pattern.endswith(_BROKEN_PATTERN_SUFFIX), pattern
  with pytest.raises(re.error):
    re.compile(pattern)
  fashion = [e for e in examples if e["question"] == "When is Fashion week in NYC?"]
  assert fashion[0]["answers"] == ["Sept?(ember)?|Feb(ruary)?"]
  assert all(e["answers_are_regex"] for e in examples)
