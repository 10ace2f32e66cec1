"""Result stamping and writing (and small helpers several benchmarks share).

Every benchmark stamps the code it measures when it starts (`Provenance`: the commit and whether
the checkout's tracked files differ from it, refused when they do unless `--allow_dirty`), and
`write_result` checks the stamp again when it writes benchmarks/results/<name>.json: a result
whose checkout changed while it ran is marked dirty; `stamp_part` does the same for one part of a
result. `python -m benchmarks.status` reads the stamps back against each benchmark's `MEASURES`.
Child processes and memory readings live in `benchmarks.procs`, fits in `benchmarks.fitting`.
"""
import hashlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, Optional, Tuple

from absl import app
from absl import logging

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALLOW_DIRTY_HELP = ("Measure a checkout whose tracked files differ from its commit (refused "
                    "otherwise); the result records dirty: true.")


class DirtyCheckoutError(app.UsageError):
  """A benchmark was started on a checkout with uncommitted changes to tracked files, without
  --allow_dirty: its result could not name the code it measured. A user error (one line)."""


def utc_now() -> str:
  """The current time, UTC, as results record it (2026-11-28T16:09:08Z)."""
  return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def checkout_state(repo: str = REPO) -> Dict[str, object]:
  """The checkout's commit, whether its tracked files differ from it (`dirty`) and a digest of
  that difference per file (`tree`: which files changed between two reads); None outside git."""
  def git(*args):
    return subprocess.run(["git", *args], capture_output=True, check=True, cwd=repo).stdout
  try:
    commit = git("rev-parse", "HEAD").decode().strip()
    changed = git("status", "--porcelain", "--untracked-files=no")
    diff = git("diff", "HEAD", "--binary", "--no-ext-diff", "--no-color")
  except (OSError, subprocess.CalledProcessError):
    return {"commit": "unknown", "dirty": None, "tree": None}
  tree = {}
  for part in (b"\n" + diff).split(b"\ndiff --git ")[1:]:  # one part per file: "a/x b/x\n..."
    name = part.split(b"\n", 1)[0].decode(errors="replace").rsplit(" b/", 1)[-1]
    tree[name] = hashlib.sha256(part).hexdigest()
  return {"commit": commit, "dirty": bool(changed.strip()), "tree": tree}


class Provenance:
  """The code one benchmark run measures, stamped when it starts (first thing in `run`) and
  checked again by each `record`: a dirty checkout is refused (`DirtyCheckoutError`) unless
  `allow_dirty`, and one that changes before a record (HEAD moved, tracked files changed) makes
  that record dirty, with `changed_during_run`: its figures may come from either code."""

  def __init__(self, allow_dirty: bool = False, repo: str = REPO):
    self.repo = repo
    self.allow_dirty = bool(allow_dirty)
    self.start = checkout_state(repo)
    self.started_utc = utc_now()
    if self.start["dirty"] and not self.allow_dirty:
      raise DirtyCheckoutError(
          f"the checkout {repo} has uncommitted changes to tracked files (git status), so the "
          "result could not name the code it measured: commit them, or pass --allow_dirty to "
          "measure it anyway (the result records dirty: true)")
    logging.info("benchmark provenance: commit %s%s", self.start["commit"],
                 " (dirty)" if self.start["dirty"] else "")

  @property
  def commit(self) -> str:
    """The commit the run started at."""
    return str(self.start["commit"])

  def record(self) -> Dict[str, object]:
    """The stamp checked now: {"commit" (at the start), "dirty" (at the start, or changed since),
    "dirty_at_start", "changed_during_run", "allow_dirty", "started_utc", "checked_utc"}, with
    "commit_at_check" / "files_changed_during_run" (the first 50) when they changed."""
    now = checkout_state(self.repo)
    before, after = self.start["tree"] or {}, now["tree"] or {}
    files = sorted(f for f in set(before) | set(after) if before.get(f) != after.get(f))
    changed = now["commit"] != self.start["commit"] or bool(files)
    out = {"commit": self.start["commit"],
           "dirty": None if self.start["dirty"] is None else bool(self.start["dirty"] or changed),
           "dirty_at_start": self.start["dirty"], "changed_during_run": changed,
           "allow_dirty": self.allow_dirty, "started_utc": self.started_utc,
           "checked_utc": utc_now()}
    if now["commit"] != self.start["commit"]:
      out["commit_at_check"] = now["commit"]
    if files:
      out["files_changed_during_run"] = files[:50]
    if changed:
      logging.warning("the checkout changed while the benchmark ran (%s at the start, %s now; "
                      "tracked files changed: %s): its result is marked dirty",
                      self.start["commit"], now["commit"], ", ".join(files[:10]) or "none")
    return out

  def stamp_part(self, fn: Callable[[], Dict]) -> Tuple[object, Dict]:
    """Runs one part of a result, `fn()`: (its result or the RuntimeError it raised, the part's
    stamp: the run's commit, `dirty` and `changed_during_run` as `record` says when it ends, its
    start time UTC, the 1-minute load average before and after it, its wall seconds)."""
    load, when, start = os.getloadavg()[0], utc_now(), time.perf_counter()
    try:
      out = fn()
    except RuntimeError as e:
      out = e
    checked = self.record()
    return out, {"commit": self.commit, "dirty": checked["dirty"], "time_utc": when,
                 "load_average_1m": {"before": load, "after": os.getloadavg()[0]},
                 "changed_during_run": checked["changed_during_run"],
                 "wall_seconds": time.perf_counter() - start}


def program() -> str:
  """The running program's `python -m` module (or script path): what its result's command runs."""
  main = sys.modules.get("__main__")
  spec = getattr(main, "__spec__", None)
  return spec.name if spec is not None else sys.argv[0]


def environment(provenance: Provenance) -> dict:
  """Facts every result records: the command, cores, load, TF version, time, and the code it
  measured (`git`: `provenance.record()`, read now)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return {
      "command": " ".join(["python", "-m", program()] + sys.argv[1:]),
      "cores": os.cpu_count(),
      "load_average_1m": os.getloadavg()[0],
      "tensorflow": tf.__version__,
      "python": platform.python_version(),
      "machine": platform.machine(),
      "time_utc": utc_now(),
      "git": provenance.record(),
  }


def write_result(name: str, payload: dict, provenance: Optional[Provenance]) -> str:
  """Writes `benchmarks/results/<name>.json` (atomically) with the environment merged in, its
  `git` block `provenance` checked now; there is no result without a stamp (None is refused)."""
  if not isinstance(provenance, Provenance):
    raise TypeError(f"write_result({name!r}): no Provenance stamp; create one when the "
                    "benchmark starts (benchmarks.common.Provenance) and pass it here")
  from realm_tf.io import atomic  # pylint: disable=g-import-not-at-top
  os.makedirs(RESULTS_DIR, exist_ok=True)
  path = os.path.join(RESULTS_DIR, f"{name}.json")
  data = {"benchmark": name, "environment": environment(provenance), **payload}
  atomic.write_json(path, data)  # indented, sorted keys
  print(json.dumps(data, indent=2, sort_keys=True))
  return path


def peak_matmul_flops(n: int = 2048, repeats: int = 10) -> float:
  """Measured fp32 matmul FLOP/s of this machine (the MFU denominator), best of `repeats`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  a = tf.random.normal([n, n])
  b = tf.random.normal([n, n])
  f = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
  f(a, b).numpy()
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    f(a, b).numpy()
    best = min(best, time.perf_counter() - t)
  return 2 * n ** 3 / best


def squad_subset(path_out: str, articles: int) -> dict:
  """Writes the first `articles` articles of the shipped SQuAD dev set (a smaller corpus for
  CPU-sized benchmarks) unless `path_out` exists; returns their counts."""
  import gzip  # pylint: disable=g-import-not-at-top
  from realm_tf.data.documents import default_corpus_path  # pylint: disable=g-import-not-at-top
  from realm_tf.io import atomic  # pylint: disable=g-import-not-at-top
  with gzip.open(default_corpus_path(), "rt", encoding="utf-8") as f:
    root = json.load(f)
  data = root["data"][:articles]
  if not os.path.exists(path_out):
    atomic.write_json(path_out, {"version": root.get("version", "1.1"), "data": data},
                      indent=None, sort_keys=False)  # compact: json.dumps' default form
  return {"articles": len(data), "paragraphs": sum(len(a["paragraphs"]) for a in data),
          "questions": sum(len(p["qas"]) for a in data for p in a["paragraphs"]),
          "titles": [a["title"] for a in data]}


def index_of_untrained_towers(model_dir: str, corpus_dir: str, index_dir: str, retriever_config,
                              init_towers=None, strategy=None):
  """Publishes (unless one is live) an index bundle of `corpus_dir` embedded by freshly built
  towers (optionally `init_towers(retriever)`) through the real refresh path."""
  from realm_tf.modeling.retriever import Retriever  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import embedder_export  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.refresh import IndexRefresher, RefreshConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
  refresher = IndexRefresher(RefreshConfig(model_dir=model_dir, corpus_dir=corpus_dir,
                                           index_dir=index_dir, min_recall=0.0), strategy=strategy)
  if refresher.live_bundle() is not None:
    return
  retriever = Retriever(retriever_config)
  retriever.build_towers()
  if init_towers is not None:
    init_towers(retriever)
  refresher.refresh(embedder_export.export_embedder(retriever, model_dir, 0,
                                                    tokenizer=RealmTokenizer()))


def percentile_ms(latencies, q):
  """The q-th percentile of latencies given in seconds, in milliseconds (None when empty)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  return float(np.percentile(np.asarray(latencies) * 1e3, q)) if len(latencies) else None


def latency_ms(latencies) -> Dict[str, Optional[float]]:
  """{"p50_ms", "p99_ms"} of latencies given in seconds."""
  return {"p50_ms": percentile_ms(latencies, 50), "p99_ms": percentile_ms(latencies, 99)}


def grpc_load(address: str, model_name: str, input_name: str, questions, clients: int,
              duration_s: float, warmup_s: float = 0.0, timeout: float = 60.0) -> dict:
  """A closed loop of `clients` threads sending one-question Predict requests back to back for
  `duration_s` (after one unmeasured request each and `warmup_s` unmeasured seconds):
  {"latencies" (seconds), "errors", "seconds"}; QPS = len(latencies) / seconds."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from serving import client as client_lib  # pylint: disable=g-import-not-at-top
  latencies, errors = [], []
  lock = threading.Lock()
  barrier = threading.Barrier(clients)
  window = {}

  def worker(k):
    mine, err = [], 0
    with client_lib.PredictClient(address, model_name, timeout=timeout) as c:
      requests = [c.build_request({input_name: np.array([q.encode()], dtype=object)})
                  for q in questions]
      stub = c._predict  # pylint: disable=protected-access
      stub.Predict(requests[k % len(requests)], timeout=timeout)
      if barrier.wait() == 0:  # one thread sets the window once every client is ready
        window["start"] = time.monotonic() + warmup_s
        window["end"] = window["start"] + duration_s
      barrier.wait()
      i = k
      while True:
        t0 = time.monotonic()
        if t0 >= window["end"]:
          break
        try:
          stub.Predict(requests[i % len(requests)], timeout=timeout)
        except Exception:  # pylint: disable=broad-except
          err += 1
        if t0 >= window["start"]:
          mine.append(time.monotonic() - t0)
        i += 1
    with lock:
      latencies.extend(mine)
      errors.append(err)

  threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  return {"latencies": latencies, "errors": int(sum(errors)), "seconds": duration_s}
