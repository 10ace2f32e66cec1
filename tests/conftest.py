"""The test run's file order: longest files first (realm_tf/testing/run_order.py says why).

Loaded whenever `tests` is among pytest's arguments, as in `make test`; its hooks then order the
whole run's items, and pytest-xdist hands the files to its workers in that order (its own
reordering by number of tests is turned off).
"""
from realm_tf.testing import run_order


def pytest_configure(config):
  """Turns off pytest-xdist's reordering of files by their number of tests (`--dist loadfile`
  then hands files out in the collection's order, which `pytest_collection_modifyitems` sets)."""
  if hasattr(config.option, "loadscopereorder"):
    config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
  """Puts the collected items in `run_order.longest_first` order (files grouped, longest
  first, the order inside each file kept)."""
  items[:] = run_order.longest_first(items)
