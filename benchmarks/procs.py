"""The benchmarks' child processes and memory readings, in one place.

`run_process` runs a command and gives its exit status, wall seconds and peak RSS (the largest
VmHWM of its process tree, sampled); `run_child` reads the JSON a child prints after a marker,
`call` runs a function in a fresh interpreter, `held` keeps a child alive while another runs;
`start_group` and its kin run a command in a process group of its own, watch its progress and
kill the whole group (the fault matrix). Memory comes from /proc (`process_memory` is
`realm_tf.io.memory`'s); `PeakSampler` samples any reading in a thread.
"""
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from realm_tf.io import memory

process_memory = memory.process_memory  # the project's one reader of a process's memory
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = "BENCH_CHILD_RESULT "
# What servers and exporting children run with beside `env(quiet=False)`: no GPU, TF's errors only.
CPU_ONLY = {"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}


def env(quiet: bool = True, **overrides: str) -> Dict[str, str]:
  """A child's environment: this one with the repository on PYTHONPATH, TensorFlow's and gRPC's
  C++ notices off when `quiet` (a value already set is kept), then `overrides`."""
  from realm_tf.utils import command_line  # pylint: disable=g-import-not-at-top
  out = dict(os.environ, PYTHONPATH=os.pathsep.join(
      p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
  if quiet:
    for name, value in command_line.QUIET_ENV.items():
      out.setdefault(name, value)
  return dict(out, **overrides)


def _tree(pid: int) -> List[int]:
  """`pid` and every live descendant of it (from /proc/<pid>/task/*/children)."""
  out, todo = [], [pid]
  while todo:
    p = todo.pop()
    out.append(p)
    try:
      for task in os.listdir(f"/proc/{p}/task"):
        with open(f"/proc/{p}/task/{task}/children", encoding="ascii") as f:
          todo.extend(int(c) for c in f.read().split())
    except OSError:
      pass  # gone meanwhile
  return out


def tree_hwm(pid: int) -> int:
  """The largest VmHWM (peak resident set of the process's own memory since its exec) of `pid`
  and its live descendants; 0 once they are gone."""
  peak = 0
  for p in _tree(pid):
    try:
      peak = max(peak, memory.process_memory(p).get("VmHWM", 0))
    except OSError:
      pass
  return peak


def run_process(cmd: Sequence[str], environ: Optional[Dict[str, str]] = None) -> Dict:
  """Runs `cmd` (environment `environ`, default `env()`), passing its stderr through and keeping
  its stdout: {"rc", "seconds", "peak_rss", "stdout", "stderr_tail"}.

  `peak_rss` is the largest VmHWM of the process or any descendant, sampled from /proc every
  20 ms. Not the kernel's `ru_maxrss`: a child started from this process by vfork (as
  `subprocess` does) is charged at its exec with this process's own peak, so a small child of
  a large benchmark process would read as large."""
  tail: List[str] = []
  start = time.perf_counter()
  proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=environ or env())
  peak = PeakSampler(lambda: tree_hwm(proc.pid), 0.02)

  def tee():
    for line in proc.stderr:
      sys.stderr.write(line)
      tail.append(line)
      del tail[:-40]

  thread = threading.Thread(target=tee, daemon=True)
  thread.start()
  out = proc.stdout.read()
  proc.wait()
  peak.stop()
  thread.join()
  return {"rc": proc.returncode, "seconds": time.perf_counter() - start,
          "peak_rss": peak.peak, "stdout": out, "stderr_tail": "".join(tail)}


def run_checked(cmd: Sequence[str], what: str, environ: Optional[Dict[str, str]] = None) -> Dict:
  """`run_process(cmd)`; RuntimeError naming `what` with its last error lines when it fails."""
  p = run_process(cmd, environ)
  if p["rc"] != 0:
    raise RuntimeError(f"{what} failed (exit {p['rc']}):\n{p['stderr_tail']}")
  return p


def marked_json(stdout: str, marker: str = "") -> Optional[Dict]:
  """The JSON after `marker` on the last line that starts with it (none: the last line), or
  None."""
  lines = [line for line in stdout.splitlines() if line.startswith(marker) and line.strip()]
  return json.loads(lines[-1][len(marker):]) if lines else None


def run_child(cmd: Sequence[str], marker: str = "", what: str = "child", usage: bool = False,
              environ: Optional[Dict[str, str]] = None) -> Dict:
  """The JSON a child prints after `marker` (`marked_json`), with its "wall_seconds" and
  "peak_rss" when `usage`; RuntimeError naming `what` when it fails or prints none."""
  p = run_checked(cmd, what, environ)
  result = marked_json(p["stdout"], marker)
  if result is None:
    raise RuntimeError(f"{what} printed no result:\n{p['stderr_tail']}")
  return dict(result, wall_seconds=p["seconds"], peak_rss=p["peak_rss"]) if usage else result


def run_children(cmds: Sequence[Sequence[str]], what: str = "child") -> List[Dict]:
  """`run_child` of every command at the same time; their results in order."""
  from concurrent import futures  # pylint: disable=g-import-not-at-top
  with futures.ThreadPoolExecutor(len(cmds)) as pool:
    return list(pool.map(lambda cmd: run_child(cmd, what=what), cmds))


def call(module: str, function: str, *args, usage: bool = False,
         environ: Optional[Dict[str, str]] = None) -> Dict:
  """`module.function(*args)` (arguments and result JSON) in a fresh Python process."""
  code = (f"import json, sys; from {module} import {function} as f; "
          f"print({MARKER!r} + json.dumps(f(*json.loads(sys.argv[1]))), flush=True)")
  return run_child([sys.executable, "-c", code, json.dumps(args)], MARKER,
                   f"{module}.{function}", usage, environ)


@contextlib.contextmanager
def held(cmd: Sequence[str], marker: str, what: str = "child"):
  """Starts `cmd` and gives the JSON it prints after `marker`; the child lives (its stdin open)
  until the block ends. RuntimeError when it prints none."""
  proc = subprocess.Popen(list(cmd), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                          env=env())
  try:
    line = next((x for x in proc.stdout if x.startswith(marker)), None)
    if line is None:
      raise RuntimeError(f"{what} printed no result; see its log above.")
    yield json.loads(line[len(marker):])
  finally:
    proc.stdin.close()
    proc.wait()


# ---- process groups: start, watch, kill (the fault matrix) -------------------------------------

GROUP_TIMEOUT_S = 900.0  # a group still running after this long is killed (exit status -9)
POLL_S = 0.01  # how often a watched run's outputs are looked at

# A run dir -> {series: level}: a stage's progress, each series a level that only grows.
Progress = Callable[[str], Dict[str, int]]


def start_group(args: Sequence[str], log: str) -> subprocess.Popen:
  """`python -m <args>` from the repository root in a process group of its own (a kill reaches
  its workers too), CPU only, output to `log`."""
  with open(log, "ab") as out:
    return subprocess.Popen(
        [sys.executable, "-m", *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
        env=env(CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1"),
        start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
  """SIGKILL to the process's whole group (its workers too), then reaps it."""
  try:
    os.killpg(proc.pid, signal.SIGKILL)
  except ProcessLookupError:
    pass
  proc.wait()


def wait_group(proc: Optional[subprocess.Popen], timeout: float = GROUP_TIMEOUT_S) -> int:
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


def run_group(args: Sequence[str], log: str) -> Tuple[int, float]:
  """Runs a command (`start_group`) to its end; returns (exit status, wall seconds)."""
  begin = time.perf_counter()
  return wait_group(start_group(args, log)), time.perf_counter() - begin


def run_watched(args: Sequence[str], log: str, run_dir: str,
                progress: Progress) -> Tuple[int, float, Dict[str, List[List[float]]]]:
  """Runs a command (`start_group`) to its end, reading its progress every POLL_S seconds;
  returns (exit status, wall seconds, timeline): the timeline maps each series to [level,
  seconds after the start] for every level first seen above the one before (levels already
  there at the start are no marker of this run)."""
  last = progress(run_dir)
  timeline: Dict[str, List[List[float]]] = {series: [] for series in last}
  begin = time.perf_counter()
  proc = start_group(args, log)
  rc = None
  while rc is None:
    rc = proc.poll()  # read before the outputs: a run's last outputs are on disk when it ends
    now = time.perf_counter() - begin
    for series, level in progress(run_dir).items():
      if level > last.get(series, 0):
        timeline.setdefault(series, []).append([level, round(now, 3)])
        last[series] = level
    if rc is None and now > GROUP_TIMEOUT_S:
      kill_group(proc)
      rc = -9
    elif rc is None:
      time.sleep(POLL_S)
  return rc, time.perf_counter() - begin, timeline


def run_and_kill_after(args: Sequence[str], log: str, run_dir: str, progress: Progress,
                       series: str, level: int, delay_s: float) -> Optional[Tuple[float, float]]:
  """Starts a command (`start_group`), waits until `series` of its progress reaches `level`, and
  kills its process group `delay_s` seconds later; returns (seconds after the start when the
  level was seen, when the kill came), or None when the run ended first (the kill found
  nothing). A level never reached within GROUP_TIMEOUT_S is killed then, and judged as any other
  kill."""
  begin = time.perf_counter()
  proc = start_group(args, log)
  if wait_for(proc, lambda: progress(run_dir).get(series, 0) >= level, GROUP_TIMEOUT_S,
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


# ---- memory -------------------------------------------------------------------------------------


def reset_peak() -> None:
  """Restarts this process's VmHWM at its current RSS (Linux `clear_refs` 5): a peak over one
  step."""
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")


def mapped_file_memory(prefix: str) -> Dict[str, int]:
  """This process's resident pages of files under `prefix` (/proc/self/smaps), in bytes: Rss,
  Shared_Clean (pages another process maps too), Shared_Dirty, Private_Clean/Dirty, Anonymous."""
  out = dict.fromkeys(("Rss", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty",
                       "Anonymous"), 0)
  inside = False
  with open("/proc/self/smaps") as f:
    for line in f:
      head = line.split(None, 5)
      if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
        inside = len(head) == 6 and head[5].strip().startswith(prefix)
      elif inside and head and head[0].rstrip(":") in out:
        out[head[0].rstrip(":")] += int(head[1]) * 1024
  return out


def resident_file_bytes(path: str) -> int:
  """Bytes of file `path` in the page cache (mincore over a fresh read-only mapping): the host
  memory a memory-mapped file occupies, shared by every process that maps it."""
  import ctypes  # pylint: disable=g-import-not-at-top
  import mmap  # pylint: disable=g-import-not-at-top
  size = os.path.getsize(path)
  if size == 0:
    return 0
  libc = ctypes.CDLL(None, use_errno=True)
  libc.mmap.restype = ctypes.c_void_p
  libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                        ctypes.c_int, ctypes.c_long]
  libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
  libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
  page = mmap.PAGESIZE
  fd = os.open(path, os.O_RDONLY)
  try:
    addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
      raise OSError(ctypes.get_errno(), f"mmap of {path} failed")
    try:
      vec = ctypes.create_string_buffer((size + page - 1) // page)
      if libc.mincore(addr, size, vec) != 0:
        raise OSError(ctypes.get_errno(), f"mincore of {path} failed")
      resident = sum(b & 1 for b in vec.raw)
    finally:
      libc.munmap(addr, size)
  finally:
    os.close(fd)
  return min(resident * page, size)


def children_private_bytes() -> int:
  """Private memory (Private_Clean + Private_Dirty) of this process's children, summed."""
  total = 0
  for task in os.listdir("/proc/self/task"):
    try:
      with open(f"/proc/self/task/{task}/children") as f:
        pids = f.read().split()
      for pid in pids:
        with open(f"/proc/{pid}/smaps_rollup") as f:
          total += sum(int(line.split()[1]) * 1024 for line in f
                       if line.startswith(("Private_Clean:", "Private_Dirty:")))
    except OSError:  # a child that just exited
      continue
  return total


def dir_bytes(path: str) -> int:
  """Bytes of every file under `path`."""
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


class PeakSampler:
  """The largest `read()` seen, sampled every `every` seconds in a thread from its start until
  `stop()` (which reads once more); a context manager too. For a peak no kernel figure gives
  (one kind of memory, or other processes')."""

  def __init__(self, read: Callable[[], int], every: float):
    self.read, self.peak, self._stop = read, 0, threading.Event()
    self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
    self._thread.start()

  def _run(self, every: float) -> None:
    while True:
      self.peak = max(self.peak, self.read())
      if self._stop.wait(every):
        return

  def stop(self) -> int:
    self._stop.set()
    self._thread.join()
    self.peak = max(self.peak, self.read())
    return self.peak

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.stop()
