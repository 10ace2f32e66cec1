"""The fault matrix's locking group: its default-run subset (a lock holder process, seconds) and,
marked slow, one try of each row with the real pretrain CLI."""
import pytest

from benchmarks.faults import FaultConfig, locking


def _assert_survived(rows, tries):
  assert [r.fault.split(" (")[0] for r in rows] == [
      "second writer on a work dir a live process holds", "lock file left by a kill -9"]
  for row in rows:
    assert row.survived and row.failures == 0 and row.tries == tries, row
    assert row.injected_at and row.checked


def test_second_writer_refused_and_stale_lock_ignored(tmp_path):
  _assert_survived(locking.run(FaultConfig.fast(str(tmp_path))), tries=1)


@pytest.mark.slow
def test_with_the_pretrain_cli(tmp_path):
  config = FaultConfig(work_dir=str(tmp_path), kill_points=2)
  rows = locking.run(config)
  _assert_survived(rows, tries=2)
  assert len(rows[0].figures["second_refused_after_s"]) == 2
