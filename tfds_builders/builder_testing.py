"""Test helpers shared by the open-QA builder tests (not a test module itself)."""
import gzip
import hashlib
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


class ShippedData:
  """One open-QA dataset built from the files shipped in the project (on first use), read back
  as Python dicts. Builder tests make one per module in a module-scoped fixture."""

  def __init__(self, name: str, data_dir: str, manual_dir: Optional[str] = None):
    """name: TFDS name, optionally with config; data_dir: where TFDS writes the build."""
    self.name = name
    self.data_dir = data_dir
    self.manual_dir = manual_dir or str(tfds_builders.shipped_data_dir(name))
    self._builder = None
    self._examples = {}

  @property
  def builder(self) -> tfds.core.DatasetBuilder:
    if self._builder is None:
      builder = tfds.builder(self.name, data_dir=self.data_dir)
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=self.manual_dir))
      self._builder = builder
    return self._builder

  def read_split(self, split: str) -> List[dict]:
    """All examples of a split as Python dicts of str / list of str / bool."""
    if split not in self._examples:
      ds = self.builder.as_dataset(split=split, shuffle_files=False).ragged_batch(1 << 14)
      examples = []
      for batch in ds:  # Whole batches: far faster than iterating examples one by one.
        columns = {k: _decode(v.to_list() if isinstance(v, tf.RaggedTensor) else v.numpy())
                   for k, v in batch.items()}
        examples.extend(dict(zip(columns, row)) for row in zip(*columns.values()))
      self._examples[split] = examples
    return self._examples[split]


def check_split_counts_are_exact(shipped: ShippedData, expected_splits: Dict[str, int]):
  """The build has exactly these splits with exactly these example counts."""
  counts = {name: info.num_examples for name, info in shipped.builder.info.splits.items()}
  assert counts == expected_splits
  for split, expected in expected_splits.items():
    assert len(shipped.read_split(split)) == expected, split


def check_examples_are_well_formed(shipped: ShippedData, expected_splits: Dict[str, int],
                                   answers_are_regex: bool):
  """Every example has a stripped non-empty question, non-blank answers and the builder's
  answers_are_regex flag."""
  assert shipped.builder.info.metadata["answers_are_regex"] == answers_are_regex
  for split in expected_splits:
    examples = shipped.read_split(split)
    assert examples, split
    bad = [ex for ex in examples
           if ex["answers_are_regex"] != answers_are_regex
           or not ex["question"] or ex["question"] != ex["question"].strip()
           or not ex["answers"] or not all(a.strip() for a in ex["answers"])]
    assert not bad, f"{split}: {bad[:3]}"


def check_shipped_files_match_checksums(name: str):
  """Shipped .gz copies decompress to exactly the bytes the pinned URLs are registered with."""
  builder_cls = tfds_builders.BUILDERS[name.split("/")[0]]
  registered = {info.filename: info for info in builder_cls.url_infos.values()}
  shipped = sorted(tfds_builders.shipped_data_dir(name).glob("*.gz"))
  assert shipped
  for path in shipped:
    data = gzip.decompress(path.read_bytes())
    info = registered[path.name[:-len(".gz")]]
    assert len(data) == info.size, path
    assert hashlib.sha256(data).hexdigest() == info.checksum, path
