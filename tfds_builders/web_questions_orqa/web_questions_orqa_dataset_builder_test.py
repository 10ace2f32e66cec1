"""Tests of `web_questions_orqa`: TFDS dummy-data test and a build of the shipped real data."""
import tensorflow as tf
import tensorflow_datasets as tfds

from tfds_builders import builder_testing
from tfds_builders.web_questions_orqa import web_questions_orqa_dataset_builder


class WebQuestionsOrqaDummyTest(builder_testing.DatasetBuilderTestCase):
  """dummy_data/ holds 8 real train lines (2 in ORQA's dev) and 4 bad ones (3 skipped, 1 kept)."""
  DATASET_CLASS = web_questions_orqa_dataset_builder.Builder
  SPLITS = {"train": 7, "dev": 2, "test": 4}


class WebQuestionsOrqaShippedTest(builder_testing.ShippedDataTestCase):
  """Builds from the shipped DrQA files; ORQA's published counts must come out exactly."""
  BUILDER = "web_questions_orqa"
  EXPECTED_SPLITS = {"train": 3417, "dev": 361, "test": 2032}
  ANSWERS_ARE_REGEX = False

  def test_known_example(self):
    examples = self.read_split("test")
    # Examples keep the order of the source file.
    self.assertEqual(examples[0]["question"], "what does jamaican people speak?")
    self.assertEqual(examples[-1]["question"], "when was father chris riley born?")
    by_question = {e["question"]: e["answers"] for e in examples}
    self.assertEqual(by_question["where was the palace of knossos located?"], ["Crete", "Greece"])
    # Unicode answers survive (JSON escapes decoded, NFC as in the file).
    train = {e["question"]: e["answers"] for e in self.read_split("train") + self.read_split("dev")}
    self.assertEqual(train["what character did natalie portman play in star wars?"],
                     ["Padm\u00e9 Amidala"])


if __name__ == "__main__":
  tfds.testing.test_main()
