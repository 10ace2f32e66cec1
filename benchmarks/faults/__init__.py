"""The fault matrix: each module here contributes rows, one per fault, to `fault_bench`.

A module is a group of faults (kills, damaged files, a full disk, locking, numerical faults, the
server under load, fuzzed input). It defines `run(config: FaultConfig) -> List[FaultRow]`; the
default test run calls the same functions with `FaultConfig.fast()`.
"""
import dataclasses
import random
from typing import Dict, List, Optional

from realm_tf.config_base import ConfigBase

# The groups `fault_bench` runs, in order: module names under benchmarks/faults/.
GROUPS = ("kill", "damage", "disk_full", "locking", "numerics", "server_load", "fuzz")


@dataclasses.dataclass
class FaultConfig(ConfigBase):
  """How hard to push: seeds, tries per fault, fuzz cases, load duration, and a scratch dir."""
  work_dir: str = "/tmp/faults"
  seed: int = 0
  kill_points: int = 10  # kill -9 points per stage, placed by the stage's own progress (seeded)
  fuzz_cases: int = 1000  # mutated inputs per corpus format, per question format, for gRPC
  fuzz_timeout_s: float = 30.0  # a case that takes longer is a hang
  load_clients: int = 32
  load_seconds: float = 30.0
  groups: List[str] = dataclasses.field(default_factory=lambda: list(GROUPS))
  # The kill group's stages to run (empty: all); the reference runs they read are made too, and
  # the results file keeps the other stages' earlier rows (each with its own commit and date).
  kill_stages: List[str] = dataclasses.field(default_factory=list)
  output_name: str = "faults"  # benchmarks/results/<output_name>.json
  allow_dirty: bool = False  # fault_bench: measure a checkout with uncommitted changes

  @classmethod
  def fast(cls, work_dir: str) -> "FaultConfig":
    """The default test run's subset: few tries of each fault, at toy size."""
    return cls(work_dir=work_dir, kill_points=1, fuzz_cases=50, load_clients=8,
               load_seconds=3.0)

  def rng(self, name: str) -> random.Random:
    """A generator seeded by the config's seed and the row's name (rows do not share draws)."""
    return random.Random(f"{self.seed}:{name}")


@dataclasses.dataclass
class FaultRow:
  """One row of the matrix: the fault, where it was injected, how often, what was checked after,
  and the outcome (`survived` is False where the fault cannot be survived: `reason` says why)."""
  group: str
  fault: str
  injected_at: str  # e.g. "seeded random step in [1, 40] (seed 0): 3, 17, ..."
  tries: int
  checked: List[str]
  survived: bool
  failures: int = 0  # tries whose checks failed
  reason: str = ""  # why a fault cannot be survived, or what a failure was
  figures: Dict[str, object] = dataclasses.field(default_factory=dict)
  seconds: Optional[float] = None

  def to_json(self) -> Dict[str, object]:
    """The row as faults.json stores it."""
    return dataclasses.asdict(self)
