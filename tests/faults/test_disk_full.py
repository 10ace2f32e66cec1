"""A full disk (benchmarks/faults/disk_full.py) at the fast subset's size: an export, a refresh
round and a checkpoint save on a small real tmpfs fail with one line saying the disk is full,
keep the previous version whole, leave no temporary, and succeed once space is freed."""
from benchmarks.faults import FaultConfig
from benchmarks.faults import disk_full
from realm_tf.testing import small_disk


def test_a_full_disk_keeps_the_previous_version_and_the_next_run_succeeds(tmp_path):
  small_disk.skip_unless_mountable(str(tmp_path))
  config = FaultConfig.fast(str(tmp_path))
  rows = disk_full.run(config)
  assert [r.fault for r in rows] == ["disk full during an embedder export",
                                     "disk full during a refresh round",
                                     "disk full during a checkpoint save"]
  for row in rows:
    assert row.survived and row.failures == 0, (row.fault, row.injected_at, row.reason)
    assert row.tries == config.kill_points
  assert not any(line.split()[1] == str(tmp_path / "disk") for line in open("/proc/mounts"))
