"""Commands of the fault matrix run as `python -m <module>` from the repository root, each in a
process group of its own (a kill reaches its workers too): start, wait, watch progress, kill."""
import os
import signal
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT_S = 900.0  # a command still running after this long is killed (exit status -9)
POLL_S = 0.01  # how often a watched run's outputs are looked at

# A run dir -> {series: level}: a stage's progress, each series a level that only grows (see
# `kill_stages`).
Progress = Callable[[str], Dict[str, int]]


def start(args: List[str], log: str) -> subprocess.Popen:
  """`python -m <args>` from the repository root in a new process group, output to `log`."""
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
  with open(log, "ab") as out:
    return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
  """SIGKILL to the process's whole group (its workers too), then reaps it."""
  try:
    os.killpg(proc.pid, signal.SIGKILL)
  except ProcessLookupError:
    pass
  proc.wait()


def wait(proc: Optional[subprocess.Popen], timeout: float = TIMEOUT_S) -> int:
  """The exit status of `proc` (0 for None: nothing was started); its group is killed, -9, when
  it runs past `timeout`."""
  if proc is None:
    return 0
  try:
    return proc.wait(timeout=timeout)
  except subprocess.TimeoutExpired:
    kill_group(proc)
    return -9


def wait_for(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float,
             poll_s: float) -> str:
  """Polls until `ready()`: "ready", or "exited" when `proc` ended first, or "timeout"."""
  begin = time.monotonic()
  while not ready():
    if proc.poll() is not None:
      return "exited"
    if time.monotonic() - begin > timeout:
      return "timeout"
    time.sleep(poll_s)
  return "ready"


def run_to_end(args: List[str], log: str) -> Tuple[int, float]:
  """Runs a command to its end; returns (exit status, wall seconds)."""
  begin = time.perf_counter()
  return wait(start(args, log)), time.perf_counter() - begin


def run_watched(args: List[str], log: str, run_dir: str,
                progress: Progress) -> Tuple[int, float, Dict[str, List[List[float]]]]:
  """Runs a command to its end, reading its progress every POLL_S seconds; returns (exit status,
  wall seconds, timeline): the timeline maps each series to [level, seconds after the start] for
  every level first seen above the one before (levels already there at the start are no
  marker of this run)."""
  last = progress(run_dir)
  timeline: Dict[str, List[List[float]]] = {series: [] for series in last}
  begin = time.perf_counter()
  proc = start(args, log)
  rc = None
  while rc is None:
    rc = proc.poll()  # read before the outputs: a run's last outputs are on disk when it ends
    now = time.perf_counter() - begin
    for series, level in progress(run_dir).items():
      if level > last.get(series, 0):
        timeline.setdefault(series, []).append([level, round(now, 3)])
        last[series] = level
    if rc is None and now > TIMEOUT_S:
      kill_group(proc)
      rc = -9
    elif rc is None:
      time.sleep(POLL_S)
  return rc, time.perf_counter() - begin, timeline


def run_and_kill_after(args: List[str], log: str, run_dir: str, progress: Progress,
                       series: str, level: int, delay_s: float) -> Optional[Tuple[float, float]]:
  """Starts a command, waits until `series` of its progress reaches `level`, and kills its
  process group `delay_s` seconds later; returns (seconds after the start when the level was
  seen, when the kill came), or None when the run ended first (the kill found nothing). A level
  never reached within TIMEOUT_S is killed then, and judged as any other kill."""
  begin = time.perf_counter()
  proc = start(args, log)
  if wait_for(proc, lambda: progress(run_dir).get(series, 0) >= level, TIMEOUT_S,
              POLL_S) == "exited":
    return None
  seen = time.perf_counter() - begin
  try:
    proc.wait(timeout=delay_s)
    return None
  except subprocess.TimeoutExpired:
    at = time.perf_counter() - begin
    kill_group(proc)
    return seen, at


def last_line(log: str) -> str:
  """The last non-blank line of a log file (stripped; "" when none)."""
  with open(log, encoding="utf-8", errors="replace") as f:
    lines = [line.strip() for line in f if line.strip()]
  return lines[-1] if lines else ""
