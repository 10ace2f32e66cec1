"""Kills: `kill -9` of each long stage's command line (`kill_stages`, at toy size, in a process
group of its own) at seeded points of its own progress, then the same command again
(docs/RELIABILITY.md, "Kills").

One uninterrupted reference run per stage is watched for its progress markers (the moments its
outputs appear). Each kill waits until a seeded marker k of the n that run showed is on disk,
then comes after a seeded delay within the reference's interval to marker k + 1: after the
stage's first output and, but for a run faster than the reference, before its last. Kills are
drawn until `points` have landed in that window (one landing after it is judged all the same; a
run that ended before its kill is recorded, not judged). After each kill nothing published may be
half written (`outputs.half_published`); the re-run must exit 0, resume each killed trainer from
the checkpoint the kill left (its log names it) and end with the reference run's artefacts
(`outputs.compare`: files, step, data position, weights, newest bundle); the temporaries it
leaves beside published names are counted.
"""
import json
import os
import shutil
import time
from typing import Dict, List, Optional, Tuple

from absl import logging

from benchmarks import procs
from benchmarks.faults import FaultConfig, FaultRow, outputs
from benchmarks.faults.kill_stages import NEEDS, REFERENCE_DONE, Stage, stages

GROUP = "kill"
MAX_DRAWS_PER_POINT = 3  # kill times drawn per landed kill wanted, at most
ROWS_LOG = "rows.jsonl"  # in the group's work dir: each row as it is measured

Windows = Dict[str, List[List[float]]]  # series -> its markers [level, seconds after the start]


def _start_companion(stage: Stage, run_dir: str):
  """The stage's companion started in `run_dir` (None: it has none)."""
  return stage.companion and procs.start_group(stage.companion(run_dir),
                                             os.path.join(run_dir, "companion.log"))


def reference_run(stage: Stage, work_dir: str) -> Tuple[str, Dict[str, object]]:
  """The stage's uninterrupted, watched run (once per work dir); returns its dir and record:
  `wall_s` and the progress `timeline` (`procs.run_watched`)."""
  ref_dir = os.path.join(work_dir, stage.name, "ref")
  done = outputs.read_json(os.path.join(ref_dir, REFERENCE_DONE))
  if done is not None and "timeline" in done:
    return ref_dir, done
  shutil.rmtree(ref_dir, ignore_errors=True)
  os.makedirs(ref_dir)
  stage.prepare(ref_dir)
  companion = _start_companion(stage, ref_dir)
  rc, wall, timeline = procs.run_watched(stage.argv(ref_dir), os.path.join(ref_dir, "run.log"),
                                             ref_dir, stage.progress)
  if rc != 0 or procs.wait_group(companion) != 0:
    raise RuntimeError(f"{stage.name}: the uninterrupted run failed (exit status {rc}); see "
                       f"{ref_dir}/*.log")
  done = {"wall_s": wall, "timeline": timeline}
  with open(os.path.join(ref_dir, REFERENCE_DONE), "w", encoding="utf-8") as f:
    json.dump(done, f)
  return ref_dir, done


def kill_windows(reference: Dict[str, object]) -> Windows:
  """Each progress series of the reference run with at least one marker: its markers, [level,
  seconds after the start], followed by the run's end when it has one marker only (the window
  is then from that marker to the end)."""
  windows = {}
  for series, marks in reference["timeline"].items():
    if len(marks) == 1:
      marks = marks + [[None, reference["wall_s"]]]
    if marks:
      windows[series] = marks
  return windows


def plan_kill(windows: Windows, landed: Dict[str, int], rng) -> Dict[str, object]:
  """The next kill: the series with the fewest kills landed in its window so far (the first in
  order on a tie), a marker k drawn from its first n - 1, and a delay drawn in (0, the reference's
  time from marker k to marker k + 1)."""
  series = min(windows, key=lambda name: landed.get(name, 0))
  marks = windows[series]
  k = rng.randrange(len(marks) - 1)
  interval = max(marks[k + 1][1] - marks[k][1], procs.POLL_S)
  n = sum(m[0] is not None for m in marks)  # one marker: its window ends with the run
  return {"series": series, "after_level": marks[k][0], "marker": f"{k + 1} of {n}",
          "delay_s": round(rng.uniform(0.0, interval), 3)}


def in_window(windows: Windows, series: str, level: int, killed: bool) -> bool:
  """Whether a kill that left `series` at `level` came after the reference's first marker of it
  and before its last (with one marker: while the run was still alive)."""
  marks = windows[series]
  last = marks[-1][0]
  return killed and level >= marks[0][0] and (last is None or level < last)


def _checked(stage: Stage) -> List[str]:
  """What a row of `stage` checks after each kill."""
  checked = ["published after the kill: manifests at their shards' sha256, listed checkpoints, "
             "embedder exports, index bundles, serving versions whole",
             "the same command re-run exits 0"]
  if stage.killed_trainers:
    checked.append("the re-run resumed each killed trainer from the checkpoint the kill left "
                   "(its log names it)")
  checked.append("every output file byte-equal to the uninterrupted run's" if stage.deterministic
                 else "final step and data position(s) equal to the uninterrupted run's"
                 + (", exported variables byte-equal" if stage.name == "export" else ""))
  if stage.killed_trainers:
    checked.append("final weights bit-equal to the uninterrupted run's")
  if "index" in stage.outputs:
    checked.append("newest index bundle's " + ("version, step and rows" if
                                                stage.judges_bundle_version else "step and rows")
                   + " equal to the uninterrupted run's")
  return checked


def _kill_once(stage: Stage, run_dir: str, ref_dir: str, plan: Dict[str, object],
               windows: Windows, ref_steps: Dict[str, int]) -> Tuple[Dict[str, object], List[str]]:
  """One planned kill of the stage in a fresh `run_dir`, then the same command to its end and
  the checks. Adds where the kill landed to `plan`; returns the try's figures (`killed` False:
  the run ended before its kill, so nothing was hit and nothing is judged) and its problems."""
  shutil.rmtree(run_dir, ignore_errors=True)
  os.makedirs(run_dir)
  stage.prepare(run_dir)
  companion = _start_companion(stage, run_dir)
  kill = procs.run_and_kill_after(stage.argv(run_dir), os.path.join(run_dir, "run.log"),
                                      run_dir, stage.progress, plan["series"],
                                      plan["after_level"], plan["delay_s"])
  level = stage.progress(run_dir).get(plan["series"], 0)
  plan.update(kill_s=kill and round(kill[1], 2), level_at_kill=level,
              in_window=in_window(windows, plan["series"], level, kill is not None))
  if kill is None:  # a second run of a finished command is another case
    procs.wait_group(companion)
    shutil.rmtree(run_dir, ignore_errors=True)
    return {**plan, "killed": False}, []
  problems = [f"after the kill: {p}" for p in outputs.half_published(run_dir)]
  # Where each trainer stood when killed: a try resumed from a step between its first and last
  # checkpoint is the one that tests an exact mid-run resume (its weights, its dropout streams).
  at_kill = {sub: outputs.checkpoint_step(os.path.join(run_dir, sub))
             for sub in stage.trainer_dirs}
  rerun_log = os.path.join(run_dir, "rerun.log")
  rc, rerun_s = procs.run_group(stage.argv(run_dir), rerun_log)
  if rc != 0:
    problems.append(f"re-run exit status {rc} (see {rerun_log})")
  with open(rerun_log, encoding="utf-8", errors="replace") as f:
    rerun_text = f.read()
  for sub in stage.killed_trainers:
    if at_kill[sub] and not outputs.resumed_from(rerun_text, sub, at_kill[sub]):
      problems.append(f"{sub}: the re-run did not resume from the checkpoint of step "
                      f"{at_kill[sub]} the kill left (no 'Restored .../{sub}/checkpoints/"
                      f"ckpt-{at_kill[sub]}' in {rerun_log})")
  figures: Dict[str, object] = {}
  if procs.wait_group(companion) != 0:
    problems.append(f"the companion (trainer) failed (see {run_dir}/companion.log)")
  else:
    diffs, figures = outputs.compare(stage, run_dir, ref_dir)
    problems += diffs
    problems += [f"after the re-run: {p}" for p in outputs.half_published(run_dir)]
    figures["temporaries_left"] = outputs.temporaries(run_dir)[:5]
  return {**plan, "killed": True, "rerun_s": round(rerun_s, 1),
          "checkpoint_step_at_kill": at_kill,
          "between_checkpoints": {sub: 0 < at_kill[sub] < ref_steps[sub]
                                  for sub in stage.killed_trainers},
          **figures}, problems


def run_stage(stage: Stage, config: FaultConfig, points: int) -> FaultRow:
  """The watched reference run, then kills placed by the stage's own progress (`plan_kill`)
  until `points` have landed between its first output and its last, each followed by the same
  command to its end and the checks."""
  begin = time.perf_counter()
  ref_dir, reference = reference_run(stage, config.work_dir)
  wall = reference["wall_s"]
  windows = kill_windows(reference)
  if not windows:
    raise RuntimeError(f"{stage.name}: the uninterrupted run showed no progress marker "
                       f"({reference['timeline']}); nothing to place a kill by")
  ref_steps = {sub: outputs.checkpoint_step(os.path.join(ref_dir, sub))
               for sub in stage.trainer_dirs}
  rng = config.rng(f"{GROUP}/{stage.name}")
  notes, tries, plans = [], [], []
  landed: Dict[str, int] = {}  # kills landed in their series' window, by series
  # Kills are drawn until `points` have landed in their windows: one that lands after the last
  # marker (a run faster than the reference) is judged but counts for no window, and a run that
  # ended before its kill is recorded, not judged; at most MAX_DRAWS_PER_POINT × points draws.
  while sum(landed.values()) < points and len(plans) < MAX_DRAWS_PER_POINT * points:
    i, plan = len(plans), plan_kill(windows, landed, rng)
    plans.append(plan)
    run_dir = os.path.join(config.work_dir, stage.name, f"kill-{i}")
    figures, problems = _kill_once(stage, run_dir, ref_dir, plan, windows, ref_steps)
    tries.append(figures)
    if not figures["killed"]:
      continue
    landed[plan["series"]] = landed.get(plan["series"], 0) + plan["in_window"]
    if problems:
      notes.append(f"kill {plan['delay_s']} s after {plan['series']} reached "
                   f"{plan['after_level']} (at {plan['kill_s']} s): " + "; ".join(problems))
      logging.warning("%s: kill %d: %s", stage.name, i, problems)
    else:
      shutil.rmtree(run_dir, ignore_errors=True)  # keep the disk small; failures are kept
  judged = [t for t in tries if t["killed"]]
  drawn = "; ".join(f"{p['delay_s']} s after {p['series']} marker {p['marker']} "
                    f"(level {p['after_level']})" for p in plans)
  return FaultRow(
      group=GROUP, fault=f"kill -9 of `{stage.argv('<dir>')[0].split('.')[-1]}` "
      f"({stage.name}), then the same command again",
      injected_at=f"by the stage's own progress (seed {config.seed}): each kill waits until a "
      f"seeded marker k of the n its uninterrupted run showed (series: "
      f"{', '.join(f'{k} {[m[0] for m in v if m[0] is not None]}' for k, v in windows.items())}"
      f"; T = {wall:.1f} s) "
      f"is on disk, then comes after a seeded delay within that run's interval to marker k + 1: "
      f"{drawn}. Drawn until {points} landed after the first marker and before the last "
      f"({sum(landed.values())} did; {len(judged)} killed a live run, "
      f"{len(plans) - len(judged)} found it ended)",
      tries=len(judged), checked=_checked(stage), survived=not notes and bool(judged),
      failures=len(notes),
      reason="; ".join(notes)[:2000] or ("" if judged else "no kill found the run alive"),
      figures={"reference_wall_s": round(wall, 1), "reference_timeline": reference["timeline"],
               "kills_landed": len(judged), "kills_in_window": landed,
               "kills_between_checkpoints": {sub: sum(t["between_checkpoints"][sub]
                                                      for t in judged)
                                             for sub in stage.killed_trainers},
               "reruns_leaving_temporaries": sum(bool(t.get("temporaries_left")) for t in judged),
               "tries": tries},
      seconds=round(time.perf_counter() - begin, 1))


def run(config: FaultConfig, only: Optional[List[str]] = None) -> List[FaultRow]:
  """Every stage's row (or the stages named in `only`, else in `config.kill_stages`, with the
  reference runs they read)."""
  if only is None and config.kill_stages:
    only = list(config.kill_stages)
  os.makedirs(config.work_dir, exist_ok=True)
  rows = []
  all_stages = stages(config.work_dir)
  unknown = set(only or ()) - {stage.name for stage in all_stages}
  if unknown:
    raise ValueError(f"unknown kill stage(s) {', '.join(sorted(unknown))}; known: "
                     f"{', '.join(stage.name for stage in all_stages)}")
  for stage in all_stages:
    if only is not None and stage.name not in only:
      if any(o in NEEDS.get(stage.name, ()) for o in only):
        reference_run(stage, config.work_dir)  # its reference run still feeds the later stages
      continue
    try:
      rows.append(run_stage(stage, config, config.kill_points))
    except (RuntimeError, OSError) as e:  # a stage that cannot run is a row, not a lost group
      logging.exception("kill %s could not run", stage.name)
      rows.append(FaultRow(group=GROUP, fault=f"kill -9 of {stage.name}, then the same command "
                           "again", injected_at="(not reached)", tries=0, checked=[],
                           survived=False, failures=1, reason=f"{type(e).__name__}: {e}"))
    logging.info("kill %s: survived=%s %s", stage.name, rows[-1].survived, rows[-1].reason)
    # Each row as soon as it is measured, so a long run's finished stages are never lost.
    with open(os.path.join(config.work_dir, ROWS_LOG), "a", encoding="utf-8") as f:
      f.write(json.dumps(rows[-1].to_json()) + "\n")
  return rows
