"""Tests of the progress lines: item counts with rate and ETA, rate-limited in time."""
from realm_tf.utils import progress as progress_lib


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


def test_progress_line_shows_the_chosen_scalars_and_tensorboard_gets_all(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  reporter = progress_lib.ProgressReporter(10, 4, log_every=5, summary_dir=str(tmp_path), name="ft",
                                       line_keys=("loss", "reader_loss"))
  reporter.start(0)
  reporter.update(5, {"loss": 1.5, "reader_loss": 0.25, "retriever_loss": 1.25})
  assert "loss=1.5 reader_loss=0.25 ETA" in reporter.last_line
  assert "retriever_loss" not in reporter.last_line
  tags = set()
  for path in tf.io.gfile.glob(str(tmp_path / "events*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(v.tag for v in event.summary.value)
  assert {"ft/loss", "ft/reader_loss", "ft/retriever_loss"} <= tags
  full = progress_lib.ProgressReporter(10, 4, log_every=5)
  full.start(0)
  full.update(5, {"loss": 1.5, "retriever_loss": 1.25})
  assert "retriever_loss=1.25" in full.last_line


def test_item_progress_without_a_known_total_counts_and_gives_a_rate(monkeypatch):
  lines = []
  monkeypatch.setattr(progress_lib.logging, "info", lambda msg, *a: lines.append(msg % a if a
                                                                                else msg))
  progress = progress_lib.ItemProgress(None, "annotate", "passages", every_seconds=0.0)
  progress.add(7)
  assert lines and lines[-1].startswith("[annotate] 7 passages ")
  assert lines[-1].endswith("passages/s") and "ETA" not in lines[-1]
