"""Tests of `load_openqa_split`: offline TFDS builds into a temporary data_dir."""
import shutil
import tempfile

from etils import epath
import tensorflow as tf

from realm_tf.openqa import datasets
import tfds_builders


def _dummy_dir(name: str) -> str:
  return str(epath.Path(tfds_builders.BUILDERS[name].code_path).parent / "dummy_data")


class LoadOpenQASplitTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.data_dir = tempfile.mkdtemp(prefix="openqa_datasets_test_")
    self.addCleanup(shutil.rmtree, self.data_dir, ignore_errors=True)

  def test_shipped_curated_trec_dev_by_default(self):
    ds = datasets.load_openqa_split("ct", "validation", data_dir=self.data_dir)
    self.assertEqual(set(ds.element_spec), {"question", "answers", "answers_are_regex"})
    self.assertEqual(ds.element_spec["answers"].shape.as_list(), [None])
    examples = list(ds.as_numpy_iterator())
    self.assertLen(examples, 133)
    self.assertTrue(all(ex["answers_are_regex"] for ex in examples))
    self.assertTrue(all(ex["question"] and len(ex["answers"]) for ex in examples))

  def test_batches_of_questions_from_manual_dir(self):
    ds = datasets.load_openqa_split("web_questions_orqa", "train", data_dir=self.data_dir,
                                    manual_dir=_dummy_dir("web_questions_orqa"))
    batch = next(iter(ds.ragged_batch(8)))
    self.assertEqual(batch["question"].shape, [7])
    self.assertFalse(tf.reduce_any(batch["answers_are_regex"]))
    questions = {q.decode() for q in batch["question"].numpy()}
    self.assertIn("what is a stray unicode question?", questions)
    self.assertIn("what is the name of justin bieber brother?", questions)

  def test_nq_dpr_config_and_slicing(self):
    ds = datasets.load_openqa_split("nq_dpr", "test[:2]", data_dir=self.data_dir,
                                    manual_dir=_dummy_dir("nq_open_orqa"))
    self.assertEqual([ex["question"] for ex in ds.as_numpy_iterator()],
                     [b"when was the last time anyone was on the moon",
                      b"who wrote he ain't heavy he's my brother lyrics"])
    dev = datasets.load_openqa_split("nq_open_orqa/dpr", "validation[1:]", data_dir=self.data_dir,
                                     manual_dir=_dummy_dir("nq_open_orqa"))
    self.assertLen(list(dev), 1)  # The dummy dpr source has 2 dev questions.

  def test_missing_split_is_a_clear_error(self):
    manual = epath.Path(self.data_dir) / "manual"
    manual.mkdir()
    (manual / "NQ-open.dev.jsonl").write_bytes(
        (epath.Path(_dummy_dir("nq_open_orqa")) / "NQ-open.dev.jsonl").read_bytes())
    with self.assertRaisesRegex(ValueError, r"has no split 'train'; it has \['test'\]"):
      datasets.load_openqa_split("nq", "train", data_dir=self.data_dir, manual_dir=str(manual))

  def test_bad_names(self):
    with self.assertRaisesRegex(ValueError, "Unknown open-QA dataset 'natural_questions_open'"):
      datasets.load_openqa_split("natural_questions_open", "test", data_dir=self.data_dir)
    with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
      datasets.load_openqa_split("wq", "test", data_dir=self.data_dir,
                                 manual_dir=self.data_dir + "/nope")


if __name__ == "__main__":
  tf.test.main()
