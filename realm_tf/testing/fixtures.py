"""Pytest fixtures every test file may ask for by name (registered by the root conftest.py)."""
import pytest


@pytest.fixture(scope="session")
def tok():
  """The project's tokenizer (the shipped BERT vocabulary), built once per test process."""
  from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
  return RealmTokenizer()
