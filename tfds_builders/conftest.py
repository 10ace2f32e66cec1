"""Shared fixture of the builder tests: each shipped dataset is built once per session."""
import pytest

from tfds_builders import builder_testing


@pytest.fixture(scope="session")
def shipped_data(tmp_path_factory):
  """`shipped_data(name)`: the ShippedData of TFDS builder `name`, built on first use."""
  built = {}

  def get(name: str) -> builder_testing.ShippedData:
    if name not in built:
      built[name] = builder_testing.ShippedData(name, str(tmp_path_factory.mktemp("openqa_tfds")))
    return built[name]
  return get
