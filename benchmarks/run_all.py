r"""Runs the benchmarks one after another (what `make bench` calls), each in its own process so
that no two share the cores, and reports which failed (each writes its own JSON).

  python -m benchmarks.run_all                        # the speed benchmarks (about 15 min on 2 cores)
  python -m benchmarks.run_all --quality              # also the learning / answer-quality ones
  python -m benchmarks.run_all --only=mips_bench,serving_bench
  python -m benchmarks.run_all --only=scale_bench      # hours at its default sizes (to 1M blocks)

Below `-v 1` the benchmarks run with TensorFlow's and gRPC's C++ notices off, as the CLIs do.
Settings: `RunAllConfig`; `run(config)` does the work.
"""
import dataclasses
import subprocess
import sys
import time
from typing import Dict, List, Optional

from absl import app, logging

from realm_tf.config_base import ConfigBase

SPEED = ("mips_bench", "embedding_bench", "host_embedding_bench", "masking_bench",
         "annotation_bench", "input_pipeline_bench", "train_step_bench", "serving_bench",
         "serving_variants_bench")
# Learning and answer quality: each takes from half an hour to an hour on 2 CPU cores.
QUALITY = ("openqa_quality", "realm_vs_ict_bench")
# Wikipedia scale (corpora to 1M blocks, several GB under /tmp): run alone, by name only.
# scale_bench runs the other two at each of its sizes. distributed_bench: 2 processes against 1.
SCALE = ("scale_bench", "bm25_bench", "export_bench", "distributed_bench")


@dataclasses.dataclass
class RunAllConfig(ConfigBase):
  """Which benchmarks the runner runs: the speed ones, plus the quality ones with `quality`, or
  exactly the modules named in `only` (names under benchmarks/; None: that default set)."""
  quality: bool = False
  only: Optional[List[str]] = None
  allow_dirty: bool = False


HELP = {
    "quality": f"Also run {', '.join(QUALITY)}.",
    "only": f"Run just these benchmark modules (names under benchmarks/; {', '.join(SCALE)} runs "
            "only when named here).",
    "allow_dirty": "Run the benchmarks on a checkout whose tracked files differ from its commit "
                   "(each is given --allow_dirty; refused otherwise, before any runs).",
}


def benchmark_names(config: RunAllConfig) -> List[str]:
  """The modules `config` selects, in running order; app.UsageError for a name not a benchmark."""
  names = list(config.only or list(SPEED) + (list(QUALITY) if config.quality else []))
  unknown = [n for n in names if n not in SPEED + QUALITY + SCALE]
  if unknown:
    raise app.UsageError(f"unknown benchmark(s) {unknown}; choose from {SPEED + QUALITY + SCALE}")
  return names


def child_environment(verbosity: int) -> Dict[str, str]:
  """The benchmarks' environment (`procs.env`): below verbosity 1, TensorFlow's and gRPC's C++
  notices off, as the CLIs have them (a value already set is kept)."""
  from benchmarks import procs  # pylint: disable=g-import-not-at-top
  return procs.env(quiet=verbosity < 1)


def run_all(names, verbosity: int = 0, allow_dirty: bool = False) -> int:
  """Runs `python -m benchmarks.<name>` for each name in turn (with --allow_dirty when
  `allow_dirty`); returns how many failed."""
  failed = []
  env = child_environment(verbosity)
  for i, name in enumerate(names, 1):
    logging.info("[bench] %d/%d %s", i, len(names), name)
    t0 = time.time()
    rc = subprocess.call([sys.executable, "-m", f"benchmarks.{name}"]
                         + (["--allow_dirty"] if allow_dirty else []), env=env)
    logging.info("[bench] %s: exit %d after %.0f s", name, rc, time.time() - t0)
    if rc:
      failed.append(name)
  print(f"{len(names) - len(failed)}/{len(names)} benchmarks finished; results in "
        f"benchmarks/results/" + (f"; failed: {', '.join(failed)}" if failed else ""))
  return len(failed)


def run(config: RunAllConfig) -> int:
  """Runs the benchmarks `config` selects, each in its own process at its default settings
  (each writes its own result); returns how many failed. A dirty checkout is refused here,
  before any runs, unless `allow_dirty`."""
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  names = benchmark_names(config)
  common.Provenance(config.allow_dirty)
  return run_all(names, logging.get_verbosity(), config.allow_dirty)


if __name__ == "__main__":
  from realm_tf.launch import config_program  # pylint: disable=g-import-not-at-top
  config_program.main(RunAllConfig, HELP, run, exit_status=lambda failed: 1 if failed else 0)
