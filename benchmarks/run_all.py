r"""Runs the benchmarks one after another (what `make bench` calls), each in its own process.

Each benchmark writes its JSON to benchmarks/results/; this runner only sequences them, so that no
two share the cores, and reports which failed.

  python -m benchmarks.run_all                        # the speed benchmarks (≈ 30 min)
  python -m benchmarks.run_all --quality              # also the learning / answer-quality ones
  python -m benchmarks.run_all --only=mips_bench,serving_bench
"""
import subprocess
import sys
import time

from absl import app, flags, logging

SPEED = ("mips_bench", "embedding_bench", "masking_bench", "annotation_bench",
         "input_pipeline_bench", "train_step_bench", "serving_bench", "serving_variants_bench")
# Learning and answer quality: each takes from half an hour to an hour on 2 CPU cores.
QUALITY = ("openqa_quality", "realm_vs_ict_bench")


def define_flags():
  """The runner's flags."""
  flags.DEFINE_bool("quality", False, f"Also run {', '.join(QUALITY)}.")
  flags.DEFINE_list("only", None, "Run just these benchmark modules (names under benchmarks/).")


def run_all(names) -> int:
  """Runs `python -m benchmarks.<name>` for each name in turn; returns how many failed."""
  failed = []
  for i, name in enumerate(names, 1):
    logging.info("[bench] %d/%d %s", i, len(names), name)
    t0 = time.time()
    rc = subprocess.call([sys.executable, "-m", f"benchmarks.{name}"])
    logging.info("[bench] %s: exit %d after %.0f s", name, rc, time.time() - t0)
    if rc:
      failed.append(name)
  print(f"{len(names) - len(failed)}/{len(names)} benchmarks finished; results in "
        f"benchmarks/results/" + (f"; failed: {', '.join(failed)}" if failed else ""))
  return len(failed)


def main(argv):
  del argv
  fv = flags.FLAGS
  names = fv.only or list(SPEED) + (list(QUALITY) if fv.quality else [])
  unknown = [n for n in names if n not in SPEED + QUALITY]
  if unknown:
    raise app.UsageError(f"unknown benchmark(s) {unknown}; choose from {SPEED + QUALITY}")
  sys.exit(1 if run_all(names) else 0)


if __name__ == "__main__":
  define_flags()
  app.run(main)
