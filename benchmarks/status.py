r"""Which benchmark results still measure the code as it is now.

    python -m benchmarks.status        # or: make bench-status

Lists every result under benchmarks/results/ with the commit it was measured at, when, whether
the checkout was dirty, and its status:

  current         no path the benchmark measures changed in a commit after the result's commit;
  stale           one did (`git log <commit>..HEAD -- <paths>`, `*_test.py` files left out): the
                  figures may no longer be the code's; the commits are counted and the newest named
                  (`*.md` files are left out too);
  no commit       the result records none;
  unknown commit  the commit it records is not in this checkout's history.

The paths are the producing benchmark's `MEASURES` (a module-level tuple of files and folders)
plus its own file. The producing benchmark is the `python -m benchmarks.<name>` of the result's
command, else the module named like the result (`<name>.py`, `<name>_bench.py`, or the one whose
name the result's starts with). A result made of parts measured at different times (the fault
matrix's rows, the scale benchmark's stage results) is as old as its oldest part: its commit is
the one furthest behind HEAD among every commit it records, in any of the shapes results have
used (`environment.git.commit`, a top-level `git_commit`, a `provenance` stamp or map of them,
each row's `commit`), and it is dirty if any part was. The settings are a `StatusConfig`;
`run(config)` prints the table and returns its rows.
"""
import ast
import dataclasses
import glob
import json
import os
import subprocess
from typing import Dict, List, Optional, Sequence, Tuple

from absl import app

from realm_tf.config_base import ConfigBase

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Left out of the paths a benchmark measures: tests and documentation change no measured code.
EXCLUDE = (":(exclude,glob)**/*_test.py", ":(exclude,glob)**/*.md")


class StatusError(app.UsageError):
  """A result file that cannot be read as a JSON object (the message names the file): a user
  error, one line."""


@dataclasses.dataclass
class StatusConfig(ConfigBase):
  """Where the checkout and its results are (empty: this checkout, its benchmarks/results)."""
  repo: str = ""
  results_dir: str = ""


HELP = {
    "repo": "The git checkout whose benchmarks and history are read (empty: this one).",
    "results_dir": "Result JSONs to list (empty: <repo>/benchmarks/results).",
}


def _git(repo: str, *args: str) -> Optional[str]:
  """`git <args>`'s stdout in `repo`, or None when git fails (an unknown commit, not a repo)."""
  try:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                          cwd=repo).stdout
  except (OSError, subprocess.CalledProcessError):
    return None


def recorded_parts(result: Dict) -> List[Dict]:
  """Every {"commit", "dirty", "time_utc"} a result records, in each shape results have used:
  `environment.git` (time: `environment.time_utc`), a top-level `git_commit` string, a top-level
  `provenance` (one stamp, or a map of stamps: the scale benchmark's stage results) and each of
  `rows`' own `commit`. A part whose commit is missing or "unknown" is left out."""
  env = result.get("environment") or {}
  when = env.get("time_utc")
  parts = []
  git = env.get("git")
  if isinstance(git, dict):
    parts.append({"commit": git.get("commit"), "dirty": git.get("dirty"),
                  "time_utc": git.get("started_utc") or when})
  if isinstance(result.get("git_commit"), str):
    parts.append({"commit": result["git_commit"], "dirty": None, "time_utc": when})
  prov = result.get("provenance")
  stamps = [prov] if isinstance(prov, dict) and "commit" in prov else (
      list(prov.values()) if isinstance(prov, dict) else [])
  rows = result.get("rows") if isinstance(result.get("rows"), list) else []
  for stamp in stamps + rows:
    if isinstance(stamp, dict) and "commit" in stamp:
      parts.append({"commit": stamp.get("commit"), "dirty": stamp.get("dirty"),
                    "time_utc": stamp.get("time_utc") or when})
  return [p for p in parts if isinstance(p["commit"], str) and p["commit"]
          and p["commit"] != "unknown"]


def declared_paths(module_path: str) -> Optional[Tuple[str, ...]]:
  """The module's `MEASURES` tuple, read from its source without importing it (None: it has
  none)."""
  with open(module_path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), filename=module_path)
  for node in tree.body:
    if (isinstance(node, ast.Assign) and len(node.targets) == 1
        and getattr(node.targets[0], "id", None) == "MEASURES"):
      return tuple(ast.literal_eval(node.value))
  return None


def producing_module(repo: str, name: str, result: Dict) -> Optional[str]:
  """The path (relative to `repo`) of the benchmark module that wrote result `name`: the
  `-m benchmarks.<module>` of its command, else `<name>.py`, `<name>_bench.py`, or the module
  whose name (less `_bench`) the result's name starts with; only a module declaring `MEASURES`
  counts. None when there is no such module."""
  bench = os.path.join(repo, "benchmarks")
  candidates = []
  words = str((result.get("environment") or {}).get("command") or "").split()
  if "-m" in words[:-1]:
    module = words[words.index("-m") + 1]
    if module.startswith("benchmarks.") and module.count(".") == 1:
      candidates.append(module.split(".", 1)[1])
  candidates += [name, f"{name}_bench"]
  stems = sorted((os.path.basename(p)[:-3] for p in glob.glob(os.path.join(bench, "*.py"))),
                 key=len, reverse=True)
  candidates += [s for s in stems if name.startswith(s[:-len("_bench")] if
                                                      s.endswith("_bench") else s)]
  for stem in candidates:
    path = os.path.join(bench, f"{stem}.py")
    if os.path.exists(path) and declared_paths(path) is not None:
      return os.path.relpath(path, repo)
  return None


def _behind(repo: str, commit: str) -> Optional[int]:
  """Commits from `commit` to HEAD (None: `commit` is not in this history)."""
  if _git(repo, "cat-file", "-e", f"{commit}^{{commit}}") is None:
    return None
  count = _git(repo, "rev-list", "--count", f"{commit}..HEAD")
  return None if count is None else int(count.strip())


def result_status(repo: str, name: str, result: Dict) -> Dict:
  """One result's line: {"result", "commit" (its oldest part's), "time_utc" (that part's),
  "dirty" (True if any part was; None if none says), "commits_recorded" (distinct), "module",
  "paths", "status" (current / stale / no commit / unknown commit / no MEASURES),
  "changed_since" (short hashes of the commits to its paths after its commit, newest first)}."""
  parts = recorded_parts(result)
  module = producing_module(repo, name, result)
  paths = (declared_paths(os.path.join(repo, module)) + (module,)) if module else ()
  dirty = [p["dirty"] for p in parts if p["dirty"] is not None]
  line = {"result": name, "commit": None, "time_utc": (result.get("environment") or {}).get(
      "time_utc"), "dirty": any(dirty) if dirty else None,
          "commits_recorded": len({p["commit"] for p in parts}), "module": module,
          "paths": list(paths), "changed_since": []}
  if not parts:
    return dict(line, status="no commit")
  behind = {c: _behind(repo, c) for c in {p["commit"] for p in parts}}
  unknown = sorted(c for c, n in behind.items() if n is None)
  oldest = unknown[0] if unknown else max(behind, key=lambda c: behind[c])
  times = [p["time_utc"] for p in parts if p["commit"] == oldest and p["time_utc"]]
  line.update(commit=oldest, time_utc=min(times) if times else line["time_utc"])
  if unknown:
    return dict(line, status="unknown commit")
  if not module:
    return dict(line, status="no MEASURES")
  log = _git(repo, "log", "--format=%h", f"{oldest}..HEAD", "--", *paths, *EXCLUDE)
  changed = (log or "").split()
  return dict(line, status="stale" if changed else "current", changed_since=changed)


def statuses(repo: str, results_dir: Optional[str] = None) -> List[Dict]:
  """`result_status` of every `*.json` in `results_dir` (default <repo>/benchmarks/results),
  by name. StatusError names a file that is not JSON."""
  results_dir = results_dir or os.path.join(repo, "benchmarks", "results")
  out = []
  for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
    try:
      with open(path, encoding="utf-8") as f:
        result = json.load(f)
    except (OSError, ValueError) as e:
      raise StatusError(f"{path}: not a readable JSON result ({e})") from e
    if not isinstance(result, dict):
      raise StatusError(f"{path}: not a JSON object")
    out.append(result_status(repo, os.path.basename(path)[:-len(".json")], result))
  return out


def table(lines: Sequence[Dict]) -> str:
  """The status lines as a fixed-width table, one result a row."""
  def dirty(v):
    return "?" if v is None else ("yes" if v else "no")

  def status(line):
    text = line["status"]
    if line["changed_since"]:
      n = len(line["changed_since"])
      text += f" ({n} commit{'s' * (n != 1)} to its paths since; newest {line['changed_since'][0]})"
    if line["commits_recorded"] > 1:
      text += f"; parts from {line['commits_recorded']} commits, the oldest shown"
    return text

  rows = [("result", "commit", "measured (UTC)", "dirty", "status")] + [
      (f"{x['result']}.json", (x["commit"] or "-")[:9], x["time_utc"] or "-", dirty(x["dirty"]),
       status(x)) for x in lines]
  widths = [max(len(r[i]) for r in rows) for i in range(4)]
  return "\n".join("  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4]
                   for r in rows)


def run(config: StatusConfig) -> List[Dict]:
  """Prints the table of `statuses` for the checkout and results `config` names; returns them."""
  lines = statuses(config.repo or REPO, config.results_dir or None)
  print(table(lines))
  return lines


if __name__ == "__main__":
  from realm_tf.launch import config_program  # pylint: disable=g-import-not-at-top
  config_program.main(StatusConfig, HELP, run)
