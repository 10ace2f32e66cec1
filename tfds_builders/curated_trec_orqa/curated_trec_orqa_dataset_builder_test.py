"""Tests of `curated_trec_orqa`: TFDS dummy-data test and a build of the shipped real data."""
import re

import tensorflow_datasets as tfds

from tfds_builders import builder_testing
from tfds_builders.curated_trec_orqa import curated_trec_orqa_dataset_builder

_BROKEN_PATTERN_SUFFIX = r"Sievert \(Sv\)\\"[:-1]  # The real pattern ends in one backslash.


class CuratedTrecOrqaDummyTest(builder_testing.DatasetBuilderTestCase):
  """dummy_data/: 8 real train lines, the real non-compiling pattern (kept), an empty question."""
  DATASET_CLASS = curated_trec_orqa_dataset_builder.Builder
  SPLITS = {"train": 7, "dev": 2, "test": 3}


class CuratedTrecOrqaShippedTest(builder_testing.ShippedDataTestCase):
  """Builds from the shipped DrQA files; ORQA's published counts must come out exactly."""
  BUILDER = "curated_trec_orqa"
  EXPECTED_SPLITS = {"train": 1353, "dev": 133, "test": 694}
  ANSWERS_ARE_REGEX = True

  def test_answers_are_regexes_and_broken_pattern_is_kept(self):
    examples = self.read_split("train") + self.read_split("dev")
    broken = [e for e in examples if e["question"] == "What is measured in curies?"]
    self.assertLen(broken, 1)
    pattern = broken[0]["answers"][0]
    self.assertTrue(pattern.endswith(_BROKEN_PATTERN_SUFFIX), pattern)
    with self.assertRaises(re.error):
      re.compile(pattern)
    fashion = [e for e in examples if e["question"] == "When is Fashion week in NYC?"]
    self.assertEqual(fashion[0]["answers"], ["Sept?(ember)?|Feb(ruary)?"])
    self.assertTrue(all(e["answers_are_regex"] for e in examples))


if __name__ == "__main__":
  tfds.testing.test_main()
