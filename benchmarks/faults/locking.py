"""Two processes on one work dir (`realm_tf.io.work_dir_lock`; docs/RELIABILITY.md, "Two
processes, one work dir"): a second writer while the first is live, and the lock a kill -9 leaves
behind.

With `kill_points` of 1 (the default test run's subset) the first process is a lock holder
(`realm_tf.testing.lock_holder`: the library's real flock in a process of its own) and the second
takes the lock in-process: seconds, not minutes. Otherwise every process is the real `pretrain`
CLI at toy size, started at seeded moments:

* second writer: `kill_points` second runs (two at a time at most, none once the first ended: no
  try) beside a first run long enough to outlive them (FIRST_TRAIN_STEPS); each must exit 2 with
  the one line `error: <work_dir> is in use by pid <first> (...)` (timed when its process exits),
  and the first must finish with its outputs complete and its lock file unchanged;
* stale lock: a chain of runs on one work dir, each killed at a seeded moment while it runs (one
  that ended first is no try and fails the row); each next run must take the lock, and a last
  run, not killed, must finish with its outputs complete.
"""
import json
import os
import signal
import subprocess
import time
from typing import Dict, List, Optional, Tuple

from benchmarks import procs
from benchmarks.faults import FaultConfig, FaultRow
from benchmarks.faults.outputs import read_json
from benchmarks.procs import kill_group, last_line
from realm_tf.io import work_dir_lock
from realm_tf.testing import lock_holder
from realm_tf.testing import toy_jobs

GROUP = "locking"
# The main job's smallest settings, without questions (its steps are set per run).
PRETRAIN_TOY = [*toy_jobs.PRETRAIN_TOY, "--eval_questions=none"]
TRAIN_STEPS = 4
# The second-writer row's first run: long enough (tens of seconds of REALM steps at 0.1 s each)
# that the second writers, started within SECOND_WINDOW_S, are refused while it runs.
FIRST_TRAIN_STEPS = 400
FIRST_EVERY = "100"  # its refresh and checkpoint cadence
DOCS = [("Warsaw", "Warsaw is the capital of Poland. The Vistula flows through Warsaw."),
        ("Paris", "Paris is the capital of France. The Seine flows through Paris."),
        ("Rome", "Rome is the capital of Italy. The Tiber flows through Rome."),
        ("Vienna", "Vienna is the capital of Austria. The Danube flows through Vienna."),
        ("Cairo", "Cairo is the capital of Egypt. The Nile flows through Cairo."),
        ("London", "London is the capital of England. The Thames flows through London.")]
SECOND_WINDOW_S = 30.0  # second writers start within this long after the first took the lock
KILL_WINDOW_S = (1.0, 10.0)  # each chained run is killed this long after it took the lock
START_TIMEOUT_S = 600.0  # a run must take the lock within this long (TF import under load)
RUN_TIMEOUT_S = 1800.0


def _docs(work_dir: str) -> str:
  path = os.path.join(work_dir, "docs.jsonl")
  with open(path, "w", encoding="utf-8") as f:
    for title, text in DOCS:
      f.write(json.dumps({"title": title, "text": text}) + "\n")
  return path


def _pretrain(work: str, docs: str, log: str, steps: int = TRAIN_STEPS,
              every: Optional[str] = None) -> subprocess.Popen:
  """Starts `python -m realm_tf.launch.pretrain` on `work` (its own process group) for `steps`
  REALM steps, refreshing and checkpointing every `every` steps (PRETRAIN_TOY's when None)."""
  cadence = [f"--refresh_every_steps={every}", f"--checkpoint_every={every}"] if every else []
  return procs.start_group(["realm_tf.launch.pretrain", f"--work_dir={work}", f"--inputs={docs}",
                           *PRETRAIN_TOY, f"--num_train_steps={steps}", *cadence], log)


def _holds_lock(work: str, pid: int) -> bool:
  return (work_dir_lock.read_holder(work) or {}).get("pid") == pid


def _wait_for_lock(work: str, proc: subprocess.Popen, timeout: float) -> Optional[float]:
  """Seconds until `proc` holds `work`'s lock (the file names it), or None if it exits first
  or the timeout passes."""
  start = time.monotonic()
  if procs.wait_for(proc, lambda: _holds_lock(work, proc.pid), timeout, 0.2) != "ready":
    return None
  return time.monotonic() - start


def _complete(work: str, steps: int = TRAIN_STEPS) -> List[str]:
  """What is missing from a finished pretrain work dir of `steps` steps (empty: complete)."""
  problems = []
  if not os.path.exists(os.path.join(work, "summary.json")):
    problems.append("no summary.json")
  done = read_json(os.path.join(work, "realm", "TRAINING_DONE"))
  if done is None:
    problems.append("no realm/TRAINING_DONE")
  elif done.get("step") != steps:
    problems.append(f"TRAINING_DONE at step {done.get('step')}, not {steps}")
  if not os.path.exists(os.path.join(work, "realm", "checkpoints", f"ckpt-{steps}.index")):
    problems.append(f"no checkpoint at step {steps}")
  return problems


# -- the default test run's subset: a lock holder process and the library --------------------

def _second_writer_holder(config: FaultConfig) -> Tuple[str, List[str], Dict]:
  rng = config.rng(f"{GROUP}:second_writer")
  delays = [round(rng.uniform(0.0, 2.0), 2) for _ in range(config.kill_points)]
  failures = []
  for i, delay in enumerate(delays):
    work = os.path.join(config.work_dir, f"second-{i}")
    holder = lock_holder.start_holder(work)
    try:
      time.sleep(delay)
      try:
        work_dir_lock.WorkDirLock(work).acquire().release()
        failures.append(f"{delay} s: a second writer took a held lock")
      except work_dir_lock.WorkDirBusyError as e:
        if f"is in use by pid {holder.pid} ({lock_holder.COMMAND}, since " not in str(e):
          failures.append(f"{delay} s: the refusal does not name the holder: {e}")
      if holder.poll() is not None or not _holds_lock(work, holder.pid):
        failures.append(f"{delay} s: the holder died or its lock file was rewritten")
    finally:
      holder.kill()
      holder.wait()
  return f"seeded random moment in [0, 2] s after a lock holder process took the lock " \
         f"(seed {config.seed}): {delays}", failures, {}


def _stale_lock_holder(config: FaultConfig) -> Tuple[str, List[str], Dict]:
  rng = config.rng(f"{GROUP}:stale_lock")
  delays = [round(rng.uniform(0.0, 1.0), 2) for _ in range(config.kill_points)]
  failures = []
  for i, delay in enumerate(delays):
    work = os.path.join(config.work_dir, f"stale-{i}")
    holder = lock_holder.start_holder(work)
    time.sleep(delay)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    try:
      with work_dir_lock.hold(work, command="next-run"):
        if not _holds_lock(work, os.getpid()):
          failures.append(f"{delay} s: the next holder's name is not in the lock file")
    except work_dir_lock.WorkDirBusyError as e:
      failures.append(f"{delay} s: the dead holder's lock blocked the next run: {e}")
  return f"SIGKILL of a lock holder process at a seeded random moment in [0, 1] s after it " \
         f"took the lock (seed {config.seed}): {delays}", failures, {}


# -- the whole matrix: the pretrain CLI ------------------------------------------------------

def _second_writer_cli(config: FaultConfig) -> Tuple[str, List[str], Dict]:
  rng = config.rng(f"{GROUP}:second_writer")
  delays = sorted(round(rng.uniform(0.0, SECOND_WINDOW_S), 1) for _ in range(config.kill_points))
  work = os.path.join(config.work_dir, "second")
  os.makedirs(work)
  docs = _docs(config.work_dir)
  first_log = os.path.join(config.work_dir, "second-first.log")
  first = _pretrain(work, docs, first_log, FIRST_TRAIN_STEPS, FIRST_EVERY)
  failures, refusal_s, started_at = [], [], []
  first_ended = None  # seconds after t0 at which the first run was seen ended
  try:
    if _wait_for_lock(work, first, START_TIMEOUT_S) is None:
      return "", [f"the first run did not take the lock: {last_line(first_log)!r}"], {}
    t0 = time.monotonic()
    running: List[Tuple[float, subprocess.Popen, str, float]] = []

    def poll() -> None:
      """Judges every second writer that has exited, at the moment it is seen exited."""
      nonlocal first_ended
      if first_ended is None and first.poll() is not None:
        first_ended = time.monotonic() - t0
      for entry in [e for e in running if e[1].poll() is not None]:
        running.remove(entry)
        delay, proc, log, began = entry
        refusal_s.append(round(time.monotonic() - began, 1))
        line = last_line(log)
        expected = f"error: {work} is in use by pid {first.pid} ("
        if proc.returncode != 2 or not line.startswith(expected):
          failures.append(f"{delay} s: exit {proc.returncode}, last line {line!r}")

    def wait_until(predicate, timeout: float) -> None:
      deadline = time.monotonic() + timeout
      while not predicate() and time.monotonic() < deadline:
        poll()
        time.sleep(0.05)
      poll()

    for i, delay in enumerate(delays):
      wait_until(lambda: len(running) < 2, START_TIMEOUT_S)
      wait_until(lambda d=delay: time.monotonic() - t0 >= d, SECOND_WINDOW_S + 1)
      if first_ended is not None:
        failures.append(f"{delay} s: the first run had ended ({first_ended:.1f} s) before this "
                        f"second writer could start (no try; FIRST_TRAIN_STEPS too few)")
        continue
      started_at.append(round(time.monotonic() - t0, 1))
      log = os.path.join(config.work_dir, f"second-{i}.log")
      running.append((delay, _pretrain(work, docs, log), log, time.monotonic()))
    wait_until(lambda: not running, START_TIMEOUT_S)
    if running:
      failures.append(f"{len(running)} second writer(s) still running after {START_TIMEOUT_S} s")
    first.wait(timeout=RUN_TIMEOUT_S)
    if first_ended is None:
      first_ended = time.monotonic() - t0
  finally:
    if first.poll() is None:
      kill_group(first)
  if first.returncode != 0:
    failures.append(f"the first run exited {first.returncode}")
  failures += [f"first run: {p}" for p in _complete(work, FIRST_TRAIN_STEPS)]
  if not _holds_lock(work, first.pid):
    failures.append("the lock file no longer names the first run")
  return (f"seeded random moment in [0, {SECOND_WINDOW_S:.0f}] s after the first pretrain "
          f"({FIRST_TRAIN_STEPS} steps) took the lock (seed {config.seed}): {delays}"), failures, \
      {"second_started_s": started_at, "second_refused_after_s": refusal_s,
       "first_ended_s": round(first_ended, 1) if first_ended is not None else None}


def _stale_lock_cli(config: FaultConfig) -> Tuple[str, List[str], Dict]:
  rng = config.rng(f"{GROUP}:stale_lock")
  delays = [round(rng.uniform(*KILL_WINDOW_S), 1) for _ in range(config.kill_points)]
  work = os.path.join(config.work_dir, "stale")
  os.makedirs(work)
  docs = _docs(config.work_dir)
  failures, lock_after_s, finished_before_kill = [], [], 0
  for i, delay in enumerate(delays + [None]):
    log = os.path.join(config.work_dir, f"stale-{i}.log")
    proc = _pretrain(work, docs, log, FIRST_TRAIN_STEPS, FIRST_EVERY)
    try:
      waited = _wait_for_lock(work, proc, START_TIMEOUT_S)
      if waited is None:
        failures.append(f"run {i} did not take the lock after a kill: exit {proc.poll()}, "
                        f"{last_line(log)!r}")
        continue
      lock_after_s.append(round(waited, 1))
      if delay is None:
        proc.wait(timeout=RUN_TIMEOUT_S)
        if proc.returncode != 0:
          failures.append(f"the last run exited {proc.returncode}: {last_line(log)!r}")
        continue
      time.sleep(delay)
      if proc.poll() is not None:  # its lock file is a finished run's: no try of a kill's
        finished_before_kill += 1
        failures.append(f"run {i} had ended before its kill at {delay} s (no try; exit "
                        f"{proc.returncode})")
    finally:
      kill_group(proc)
  failures += [f"last run: {p}" for p in _complete(work, FIRST_TRAIN_STEPS)]
  return (f"SIGKILL of pretrain ({FIRST_TRAIN_STEPS} steps) at a seeded random moment in "
          f"[{KILL_WINDOW_S[0]:.0f}, {KILL_WINDOW_S[1]:.0f}] s after it took the lock "
          f"(seed {config.seed}): {delays}"), failures, \
      {"next_run_took_the_lock_after_s": lock_after_s,
       "runs_finished_before_their_kill": finished_before_kill}


def run(config: FaultConfig) -> List[FaultRow]:
  """The two rows: a second writer while the first is live, and a kill -9's stale lock."""
  cli = config.kill_points > 1
  first = "the pretrain CLI (toy size)" if cli else "a lock holder process"
  rows_spec = [
      ("second writer on a work dir a live process holds",
       _second_writer_cli if cli else _second_writer_holder,
       [f"the second writer is refused ({'exit 2, one line ' if cli else ''}naming the first's "
        f"pid and command)", "the first is still live and its lock file unchanged"] +
       (["the first run finishes (exit 0) with summary.json, TRAINING_DONE and its last "
         "checkpoint"] if cli else [])),
      ("lock file left by a kill -9", _stale_lock_cli if cli else _stale_lock_holder,
       ["the next run takes the lock (not refused by the dead process's file)"] +
       (["the last run, not killed, finishes (exit 0) with summary.json, TRAINING_DONE and its "
         "last checkpoint"] if cli else ["the lock file names the new holder"])),
  ]
  rows = []
  for fault, fn, checked in rows_spec:
    start = time.perf_counter()
    injected_at, failures, figures = fn(config)
    rows.append(FaultRow.judged(GROUP, f"{fault} (first process: {first})", injected_at,
                                config.kill_points, checked, failures,
                                round(time.perf_counter() - start, 1), **figures))
  return rows
