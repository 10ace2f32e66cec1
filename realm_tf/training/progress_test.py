"""Tests of the progress lines: item counts with rate and ETA, rate-limited in time."""
from realm_tf.training import progress as progress_lib


def test_item_progress_lines_are_rate_limited_and_the_last_is_always_logged(monkeypatch):
  lines = []
  monkeypatch.setattr(progress_lib.logging, "info", lambda msg, *a: lines.append(msg % a if a
                                                                                else msg))
  progress = progress_lib.ItemProgress(100, "embed", "blocks", every_seconds=3600)
  for _ in range(9):
    progress.add(10)
  assert len(lines) == 1 and lines[0].startswith("[embed] 10/100 blocks")  # then rate-limited
  assert progress.last_line.startswith("[embed] 90/100 blocks ")
  assert "blocks/s ETA" in progress.last_line
  progress.add(10)
  assert len(lines) == 2 and lines[-1].startswith("[embed] 100/100 blocks")
  assert lines[-1].endswith("ETA 0s")
