"""Tests of `web_questions_orqa`: TFDS dummy-data test and a build of the shipped real data."""
import pytest

from tfds_builders import builder_testing
from tfds_builders.web_questions_orqa import web_questions_orqa_dataset_builder


class WebQuestionsOrqaDummyTest(builder_testing.DatasetBuilderTestCase):
  """dummy_data/ holds 8 real train lines (2 in ORQA's dev) and 4 bad ones (3 skipped, 1 kept)."""
  DATASET_CLASS = web_questions_orqa_dataset_builder.Builder
  SPLITS = {"train": 7, "dev": 2, "test": 4}


# Builds from the shipped DrQA files; ORQA's published counts must come out exactly.
BUILDER = "web_questions_orqa"
EXPECTED_SPLITS = {"train": 3417, "dev": 361, "test": 2032}
ANSWERS_ARE_REGEX = False


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
  return builder_testing.ShippedData(BUILDER, str(tmp_path_factory.mktemp("openqa_tfds")))


def test_split_counts_are_exact(shipped):
  builder_testing.check_split_counts_are_exact(shipped, EXPECTED_SPLITS)


def test_examples_are_well_formed(shipped):
  builder_testing.check_examples_are_well_formed(shipped, EXPECTED_SPLITS, ANSWERS_ARE_REGEX)


def test_shipped_files_match_checksums():
  builder_testing.check_shipped_files_match_checksums(BUILDER)


def test_known_example(shipped):
  examples = shipped.read_split("test")
  # Examples keep the order of the source file.
  assert examples[0]["question"] == "what does jamaican people speak?"
  assert examples[-1]["question"] == "when was father chris riley born?"
  by_question = {e["question"]: e["answers"] for e in examples}
  assert by_question["where was the palace of knossos located?"] == ["Crete", "Greece"]
  # Unicode answers survive (JSON escapes decoded, NFC as in the file).
  train = {e["question"]: e["answers"]
           for e in shipped.read_split("train") + shipped.read_split("dev")}
  assert train["what character did natalie portman play in star wars?"] == ["Padm\u00e9 Amidala"]
