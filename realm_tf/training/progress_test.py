"""Tests of the progress lines: item counts with rate and ETA, rate-limited in time."""
import logging as py_logging

from realm_tf.training.progress import ItemProgress


def test_item_progress_lines_are_rate_limited_and_the_last_is_always_logged(caplog):
  caplog.set_level(py_logging.INFO)
  progress = ItemProgress(100, "embed", "blocks", every_seconds=3600)
  for _ in range(9):
    progress.add(10)
  lines = [r.getMessage() for r in caplog.records if "[embed]" in r.getMessage()]
  assert len(lines) == 1 and lines[0].startswith("[embed] 10/100 blocks")  # then rate-limited
  assert progress.last_line.startswith("[embed] 90/100 blocks ")
  assert "blocks/s ETA" in progress.last_line
  progress.add(10)
  lines = [r.getMessage() for r in caplog.records if "[embed]" in r.getMessage()]
  assert len(lines) == 2 and lines[-1].startswith("[embed] 100/100 blocks")
  assert lines[-1].endswith("ETA 0s")
