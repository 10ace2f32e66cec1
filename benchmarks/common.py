"""Shared benchmark plumbing: environment facts and JSON results under benchmarks/results/."""
import json
import os
import platform
import sys
import time

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def environment() -> dict:
  """Facts every result records: command, cores, load, TF version, time, and the commit it ran
  (`git_commit`)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return {
      "command": " ".join([os.path.basename(sys.executable), "-m",
                           __import__("__main__").__spec__.name if getattr(
                               __import__("__main__"), "__spec__", None) else sys.argv[0]]
                          + sys.argv[1:]),
      "cores": os.cpu_count(),
      "load_average_1m": os.getloadavg()[0],
      "tensorflow": tf.__version__,
      "python": platform.python_version(),
      "machine": platform.machine(),
      "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
      "git": git_commit(),
  }


def git_commit() -> dict:
  """The checkout's commit (`git rev-parse HEAD`) and whether its tracked files differ from it
  (`dirty`): which code a measurement ran. {"commit": "unknown", "dirty": None} outside git."""
  import subprocess  # pylint: disable=g-import-not-at-top
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True, cwd=repo).stdout.strip()
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                             capture_output=True, text=True, check=True, cwd=repo).stdout
  except (OSError, subprocess.CalledProcessError):
    return {"commit": "unknown", "dirty": None}
  return {"commit": commit, "dirty": bool(changed.strip())}


def write_result(name: str, payload: dict) -> str:
  """Writes `benchmarks/results/<name>.json` (atomically) with the environment merged in."""
  from realm_tf.io import atomic  # pylint: disable=g-import-not-at-top
  os.makedirs(RESULTS_DIR, exist_ok=True)
  path = os.path.join(RESULTS_DIR, f"{name}.json")
  data = {"benchmark": name, "environment": environment(), **payload}
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
  towers — optionally initialised by `init_towers(retriever)` — through the real refresh path."""
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


def grpc_load(address: str, model_name: str, input_name: str, questions, clients: int,
              duration_s: float, warmup_s: float = 0.0, timeout: float = 60.0) -> dict:
  """A closed loop of `clients` threads, each sending one-question Predict requests back to back
  (after one unmeasured request each, then `warmup_s` unmeasured seconds) for `duration_s`.

  Returns {"latencies": seconds of the requests measured, "errors": failed requests,
  "seconds": duration_s}: the QPS a server sustains is len(latencies) / seconds.
  """
  import threading  # pylint: disable=g-import-not-at-top
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
