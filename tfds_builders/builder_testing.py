"""Test helpers shared by the open-QA builder tests (not a test module itself)."""
import gzip
import hashlib
import shutil
import tempfile
from typing import Dict, List, Optional

import tensorflow as tf
import tensorflow_datasets as tfds
# DatasetBuilderTestCase needs `dill` (a dev extra); the builder tests import it from here.
from tensorflow_datasets.testing.dataset_builder_testing import DatasetBuilderTestCase  # pylint: disable=unused-import

import tfds_builders


def _decode(value):
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if hasattr(value, "tolist"):
    return _decode(value.tolist())
  if isinstance(value, list):
    return [_decode(v) for v in value]
  return value


class ShippedDataTestCase(tf.test.TestCase):
  """Builds one open-QA dataset from the files shipped in the project (once per class).

  Subclasses set BUILDER (TFDS name, optionally with config), EXPECTED_SPLITS (exact example
  counts) and ANSWERS_ARE_REGEX; they may override `manual_dir()`.
  """
  BUILDER: Optional[str] = None
  EXPECTED_SPLITS: Dict[str, int] = {}
  ANSWERS_ARE_REGEX = False

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._data_dir = tempfile.mkdtemp(prefix="openqa_tfds_")
    cls._builder = None
    cls._examples = {}

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls._data_dir, ignore_errors=True)
    super().tearDownClass()

  def manual_dir(self) -> str:
    return str(tfds_builders.shipped_data_dir(self.BUILDER))

  @property
  def builder(self) -> tfds.core.DatasetBuilder:
    if self.BUILDER is None:
      self.skipTest("abstract base")
    cls = type(self)
    if cls._builder is None:
      builder = tfds.builder(self.BUILDER, data_dir=cls._data_dir)
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=self.manual_dir()))
      cls._builder = builder
    return cls._builder

  def read_split(self, split: str) -> List[dict]:
    """All examples of a split as Python dicts of str / list of str / bool."""
    cls = type(self)
    if split not in cls._examples:
      ds = self.builder.as_dataset(split=split, shuffle_files=False).ragged_batch(1 << 14)
      examples = []
      for batch in ds:  # Whole batches: far faster than iterating examples one by one.
        columns = {k: _decode(v.to_list() if isinstance(v, tf.RaggedTensor) else v.numpy())
                   for k, v in batch.items()}
        examples.extend(dict(zip(columns, row)) for row in zip(*columns.values()))
      cls._examples[split] = examples
    return cls._examples[split]

  def test_split_counts_are_exact(self):
    counts = {name: info.num_examples for name, info in self.builder.info.splits.items()}
    self.assertEqual(counts, self.EXPECTED_SPLITS)
    for split, expected in self.EXPECTED_SPLITS.items():
      self.assertLen(self.read_split(split), expected)

  def test_examples_are_well_formed(self):
    self.assertEqual(self.builder.info.metadata["answers_are_regex"], self.ANSWERS_ARE_REGEX)
    for split in self.EXPECTED_SPLITS:
      examples = self.read_split(split)
      self.assertNotEmpty(examples)
      bad = [ex for ex in examples
             if ex["answers_are_regex"] != self.ANSWERS_ARE_REGEX
             or not ex["question"] or ex["question"] != ex["question"].strip()
             or not ex["answers"] or not all(a.strip() for a in ex["answers"])]
      self.assertEmpty(bad, f"{split}: {bad[:3]}")

  def test_shipped_files_match_checksums(self):
    """Shipped .gz copies decompress to exactly the bytes the pinned URLs are registered with."""
    if self.BUILDER is None:
      self.skipTest("abstract base")
    builder_cls = tfds_builders.BUILDERS[self.BUILDER.split("/")[0]]
    registered = {info.filename: info for info in builder_cls.url_infos.values()}
    shipped = sorted(tfds_builders.shipped_data_dir(self.BUILDER).glob("*.gz"))
    self.assertNotEmpty(shipped)
    for path in shipped:
      data = gzip.decompress(path.read_bytes())
      info = registered[path.name[:-len(".gz")]]
      self.assertEqual(len(data), info.size, path)
      self.assertEqual(hashlib.sha256(data).hexdigest(), info.checksum, path)
