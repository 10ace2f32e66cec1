"""The fault matrix: each group module here contributes rows, one per fault, to `fault_bench`.

A group module (kills, damaged files, a full disk, locking, numerical faults, the server under
load, fuzzed input) defines `run(config: FaultConfig) -> List[FaultRow]`; the default test run
calls the same functions with `FaultConfig.fast()`. The other modules are the groups' shared
parts: `outputs` (what a run left on disk, compared with a reference run), `kill_stages` (the
kill group's stage table) and `toy_work_dir`; process groups (start, watch, kill) are
`benchmarks.procs`'.
"""
import dataclasses
import random
import time
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

  @classmethod
  def judged(cls, group: str, fault: str, injected_at: str, tries: int, checked: List[str],
             failures: List[str], seconds: float, reason: Optional[str] = None,
             **figures) -> "FaultRow":
    """The row of tries judged by their failure texts: survived when there are none; `reason`
    is their "; "-join unless given."""
    return cls(group, fault, injected_at, tries, checked, survived=not failures,
               failures=len(failures), reason="; ".join(failures) if reason is None else reason,
               figures=figures, seconds=seconds)

  def to_json(self) -> Dict[str, object]:
    """The row as faults.json stores it."""
    return dataclasses.asdict(self)


class Tries:
  """Collects one row's tries, each a point and named checks (True, or what failed)."""

  def __init__(self, group: str, fault: str):
    self.group, self.fault = group, fault
    self.points: List[str] = []
    self.failures: List[str] = []
    self.start = time.perf_counter()

  def check(self, point: str, checks: Dict[str, object]) -> None:
    """Records a try at `point`; `checks` maps a check's name to True or a failure text."""
    self.points.append(point)
    bad = [f"{k}: {v}" for k, v in checks.items() if v is not True]
    if bad:
      self.failures.append(f"{point}: {'; '.join(bad)}")

  def row(self, injected: str, checked: List[str], **figures) -> FaultRow:
    """The row of these tries (`injected` describes how the points were drawn)."""
    return FaultRow.judged(self.group, self.fault, f"{injected}: {', '.join(self.points)}",
                           len(self.points), checked, self.failures,
                           time.perf_counter() - self.start,
                           reason=" | ".join(self.failures)[:2000], **figures)
