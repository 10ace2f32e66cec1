"""Damaged files (benchmarks/faults/damage.py) at the fast subset's size: one seeded try of each
damage kind against a real toy work dir; every one is refused naming the file, nothing is
published or served from it, and the last good bundle and served version stay."""
from benchmarks.faults import FaultConfig
from benchmarks.faults import damage

FAULTS = ["truncated corpus shard", "checkpoint .data file with a flipped byte",
          "index bundle with a missing or short embeddings file", "manifest that is not JSON",
          "SavedModel version directory without variables/", "half-copied export"]


def test_every_damaged_file_is_refused_naming_it_and_the_good_versions_stay(tmp_path):
  config = FaultConfig.fast(str(tmp_path))
  rows = damage.run(config)
  assert [r.fault for r in rows] == FAULTS
  for row in rows:
    assert row.group == "damage"
    assert row.survived and row.failures == 0, (row.fault, row.injected_at, row.reason)
    assert row.tries == config.kill_points and row.checked and row.injected_at
