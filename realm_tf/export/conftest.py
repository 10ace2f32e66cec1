"""Fixtures shared by the export tests: the tokenizer and a small block table."""
import pytest

from realm_tf.testing import export_models
from realm_tf.text import RealmTokenizer


@pytest.fixture(scope="module")
def tokenizer():
  return RealmTokenizer()


@pytest.fixture(scope="module")
def table():
  return export_models.small_block_table()
