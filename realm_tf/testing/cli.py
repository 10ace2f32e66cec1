"""Test helpers for the command-line programs: parse one's flags in-process, run one in a
subprocess, check its one-line error, check that importing one defines no flag."""
import os
import re
import subprocess
import sys
from typing import Dict, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A TensorFlow C++ log line ("2026-01-01 12:00:00.123456: I tensorflow/...") or an absl C++ one
# ("E0000 00:00:1795368052.785271   11619 chttp2_server.cc:1177] ..."); absl's Python lines
# ("I1122 17:20:50.123456 140 ict.py:60] ...") are the program's own and do not match.
TF_CPP_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] "
                         r"|[IWEF]\d{4} [\d:.]+ +\d+ [\w./-]+\.(cc|h|cpp):\d+\])", re.M)


def parsed_flags(program, *argv: str):
  """A fresh FlagValues holding `program`'s flags (`program.define_flags(fv)`, as its
  `__main__` defines them) parsed from the command line `argv`."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  fv = flags.FlagValues()
  program.define_flags(fv)
  fv([program.__name__.rsplit(".", 1)[-1], *argv])
  return fv


def run_cli(module: str, *args: str, env: Optional[Dict[str, str]] = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
  """Runs `python -m <module> <args>` from the repository root (CPU only unless `env` says)."""
  if env is None:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout, check=False)


def assert_import_defines_no_flags(modules, flag_names) -> None:
  """Asserts that importing `modules` in a fresh interpreter defines none of `flag_names`: a CLI
  defines its flags in `define_flags()`, called from `__main__` only."""
  code = ("import importlib; from absl import flags; "
          f"[importlib.import_module(m) for m in {list(modules)!r}]; "
          f"print(sorted(n for n in {list(flag_names)!r} if n in flags.FLAGS))")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                        timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout[-3000:]


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
  """Asserts exit status 2, no traceback, and a last stderr line `error: ...` containing each of
  `needles` (the offending path or name); returns that line."""
  tail = proc.stderr[-3000:]
  assert proc.returncode == 2, f"exit status {proc.returncode}; stderr:\n{tail}"
  assert "Traceback" not in proc.stderr, tail
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: "), tail
  for needle in needles:
    assert needle in last, f"{needle!r} not in {last!r}"
  return last


def run_strategy_scripts(script: str, weights: str, out_dir: str,
                         strategies=("default", "mirrored"), timeout: float = 300) -> Dict:
  """Runs `python -c script <strategy> <weights> <out_dir>/<strategy>` once per strategy, the
  processes side by side (each is mostly TensorFlow's start-up, one core's work), and returns
  {strategy: the JSON its `RESULT <json>` stdout line holds}.

  Multi-replica tests need a fresh process per strategy: logical CPU devices can be set only
  before TensorFlow initialises its runtime.
  """
  import json  # pylint: disable=g-import-not-at-top
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  procs = {name: subprocess.Popen([sys.executable, "-c", script, name, weights,
                                   os.path.join(out_dir, name)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env)
           for name in strategies}
  results = {}
  for name, proc in procs.items():
    stdout, stderr = proc.communicate(timeout=timeout)
    lines = [l for l in stdout.splitlines() if l.startswith("RESULT")]
    assert lines, f"{name}: exit status {proc.returncode}; stderr:\n{stderr[-3000:]}"
    results[name] = json.loads(lines[0][len("RESULT "):])
  return results
