"""Tests of `web_questions_orqa`: TFDS dummy-data test and a build of the shipped real data."""
from tfds_builders import builder_testing
from tfds_builders.web_questions_orqa import web_questions_orqa_dataset_builder


class WebQuestionsOrqaDummyTest(builder_testing.DatasetBuilderTestCase):
  """dummy_data/ holds 8 real train lines (2 in ORQA's dev) and 4 bad ones (3 skipped, 1 kept)."""
  DATASET_CLASS = web_questions_orqa_dataset_builder.Builder
  SPLITS = {"train": 7, "dev": 2, "test": 4}


BUILDER = "web_questions_orqa"  # shipped-data builds: shipped_data_test.py


def test_known_example(shipped_data):
  shipped = shipped_data(BUILDER)
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
