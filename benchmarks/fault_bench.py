r"""The fault matrix: kills placed by each stage's own progress, damaged files, a full disk, two
processes on one work dir, numerical faults, the server under load and change, and fuzzed input.

    python -m benchmarks.fault_bench                       # the whole matrix (tens of minutes)
    python -m benchmarks.fault_bench --groups=damage,fuzz  # some groups

Each group is a module of `benchmarks.faults` whose `run(config)` returns its rows; the default
test run calls the same functions with `FaultConfig.fast()` (tests/faults/). Writes
benchmarks/results/faults.json: every row's fault, where it was injected, tries, what was checked
afterwards and the outcome. docs/RELIABILITY.md explains the rows.
"""
import dataclasses
import importlib
import json
import os
import shutil
import time
from typing import Dict, List, Optional, Tuple

from absl import logging

from benchmarks import common
from benchmarks.faults import GROUPS, FaultConfig


# The code the fault matrix measures (besides its own file): a commit to any of these paths after
# a result's oldest row's commit makes it stale (`python -m benchmarks.status`).
MEASURES = ("benchmarks/faults/", "realm_tf/", "serving/", "launch/")


def run(config: FaultConfig,
        provenance: Optional[common.Provenance] = None) -> Dict[str, object]:
  """Runs each group of the matrix in turn and returns the rows with their totals. Every row
  carries the run's start stamp (`provenance`, taken here when None: its commit, and dirty when
  the checkout was, or changed before its group ended), its group's start time and load."""
  provenance = provenance or common.Provenance(config.allow_dirty)
  rows: List[Dict[str, object]] = []
  errors: Dict[str, str] = {}
  for group in config.groups:
    if group not in GROUPS:
      raise ValueError(f"unknown fault group {group!r}; known: {', '.join(GROUPS)}")
    module = importlib.import_module(f"benchmarks.faults.{group}")
    work_dir = os.path.join(config.work_dir, group)
    shutil.rmtree(work_dir, ignore_errors=True)
    os.makedirs(work_dir)
    started_utc, load_at_start = common.utc_now(), os.getloadavg()[0]
    start = time.perf_counter()
    try:
      group_rows = module.run(dataclasses.replace(config, work_dir=work_dir))
    except Exception as e:  # pylint: disable=broad-except
      # A group that crashes is a finding, kept in the results, not a reason to lose the rest.
      logging.exception("fault group %s crashed", group)
      errors[group] = f"{type(e).__name__}: {e}"
      continue
    seconds = time.perf_counter() - start
    logging.info("fault group %s: %d rows in %.0f s", group, len(group_rows), seconds)
    checked = provenance.record()  # the run's start stamp, checked as the group ends
    stamp = {"commit": checked["commit"], "dirty": checked["dirty"],
             "changed_during_run": checked["changed_during_run"], "time_utc": started_utc,
             "load_average_1m": load_at_start, "load_average_1m_end": os.getloadavg()[0],
             "group_seconds": seconds}
    rows.extend({**r.to_json(), **stamp} for r in group_rows)
  return {"rows": rows, "crashed_groups": errors, **_totals(rows),
          "settings": {"seed": config.seed, "kill_points": config.kill_points,
                       "fuzz_cases": config.fuzz_cases, "load_clients": config.load_clients,
                       "load_seconds": config.load_seconds, "groups": list(config.groups)}}


def _merged(name: str, result: Dict[str, object], groups: List[str],
            partial: Tuple[str, ...] = ()) -> Dict[str, object]:
  """The rows of the groups just run, beside the earlier rows of the other groups in the same
  results file (each row carries its own commit, date and load). A group in `partial` ran only
  some of its rows: its earlier rows of faults not run again are kept."""
  path = os.path.join(common.RESULTS_DIR, f"{name}.json")
  if not os.path.exists(path):
    return result
  with open(path, encoding="utf-8") as f:
    old = json.load(f)  # a damaged results file is an error, not an empty one
  run_again = {(r["group"], r["fault"]) for r in result["rows"]}
  kept = [r for r in old.get("rows", [])
          if r["group"] not in groups
          or (r["group"] in partial and (r["group"], r["fault"]) not in run_again)]
  rows = kept + list(result["rows"])
  crashed = {g: e for g, e in old.get("crashed_groups", {}).items() if g not in groups}
  crashed.update(result["crashed_groups"])
  return {**result, "rows": rows, "crashed_groups": crashed, **_totals(rows)}


def _totals(rows: List[Dict[str, object]]) -> Dict[str, int]:
  """The rows that survived, the rows, and their tries."""
  return {"survived": sum(bool(r["survived"]) for r in rows), "total": len(rows),
          "tries": sum(int(r["tries"]) for r in rows)}


HELP = {
    "work_dir": "Scratch directory (emptied per group).",
    "seed": "Seed of every injection point and mutation.",
    "kill_points": "kill -9 points per stage.",
    "fuzz_cases": "Mutated inputs per corpus format, per question format and for the gRPC decoder.",
    "fuzz_timeout_s": "Seconds after which one fuzz case counts as a hang.",
    "load_clients": "Concurrent gRPC clients in the server-load rows.",
    "load_seconds": "Seconds of load per server run.",
    "groups": f"Fault groups to run, of: {', '.join(GROUPS)}.",
    "kill_stages": "The kill group's stages to run (default: all); the results file keeps the "
                   "other stages' earlier rows.",
    "output_name": "Results file: benchmarks/results/<output_name>.json (rows of other groups "
                   "already there are kept).",
    "allow_dirty": common.ALLOW_DIRTY_HELP,
}


def run_and_write(config: FaultConfig) -> Dict[str, object]:
  """Runs the matrix (`run`), merges its rows into the results file and writes it; a crashed
  group or a row that did not survive is logged as a warning (and stays in the file)."""
  provenance = common.Provenance(config.allow_dirty)  # refuses a dirty checkout unless allowed
  start = time.perf_counter()
  result = run(config, provenance)
  result["seconds"] = time.perf_counter() - start
  result = _merged(config.output_name, result, config.groups,
                   partial=("kill",) if config.kill_stages else ())
  common.write_result(config.output_name, result, provenance)
  if result["crashed_groups"] or result["survived"] != result["total"]:
    logging.warning("%d of %d rows survived; crashed groups: %s", result["survived"],
                    result["total"], ", ".join(result["crashed_groups"]) or "none")
  return result


if __name__ == "__main__":
  from realm_tf.launch import config_program  # pylint: disable=g-import-not-at-top
  config_program.main(FaultConfig, HELP, run_and_write)
