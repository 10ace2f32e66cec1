r"""MIPS benchmark: QPS at recall@10 >= target against exact search, and exact search's memory.

  python -m benchmarks.mips_bench                 # → benchmarks/results/mips.json
  python -m benchmarks.mips_bench --real          # → benchmarks/results/mips_real.json
  python -m benchmarks.mips_bench --real_index_dir=runs/default/index   # → mips_real.json

On the same vectors and queries (synthetic: 1M x 128 clustered; `--real`: MiniLM embeddings of the
shipped SQuAD dev paragraphs and questions; `--real_index_dir`: a published bundle's embeddings
and its query embedder's): our ScannSearcher (search knobs swept, the fastest setting reaching the
target kept), our tiled exact search, NumPy, FAISS flat, IVF-Flat, IVF-PQ fast-scan + refine and
HNSW-Flat (each swept to the target). Batched QPS is one call over all queries; batch-1 QPS one
call a query at each method's fastest setting (for ScaNN also inside one traced graph, beside the
cost of entering a tf.function, and through ScaNN's own Python API). Ratios come from this one
run. Exact search's peak RSS is measured in a fresh process loading the saved searcher, less the
same over a tiny matrix. Settings: `MipsBenchConfig`; `run(config)` runs it and writes its JSON.
"""
import dataclasses
import json
import os
import sys
import tempfile
import time
from typing import Optional

import numpy as np

from benchmarks import common
from benchmarks import mips_data
from benchmarks import procs
from realm_tf.config_base import ConfigBase


MEASURES = ("realm_tf/retrieval/", "benchmarks/mips_data.py")


@dataclasses.dataclass
class MipsBenchConfig(ConfigBase):
  """The data (synthetic sizes or real embeddings), the recall target, the timing and the JSON."""
  num_points: int = 1_000_000
  dim: int = 128
  num_queries: int = 1000
  num_clusters: int = 1000
  noise: float = 1.5
  exact_timing_queries: int = 200
  target_recall: float = 0.95
  repeats: int = 3
  batch1_queries: int = 300
  hnsw_m: int = 32
  real: bool = False
  real_index_dir: Optional[str] = None
  skip_rss: bool = False
  rss_child: Optional[str] = None
  name: Optional[str] = None
  allow_dirty: bool = False


HELP = {
    "allow_dirty": common.ALLOW_DIRTY_HELP,
    "num_points": "Synthetic database size.",
    "dim": "Embedding size.",
    "num_queries": "Queries (one batch).",
    "num_clusters": "Synthetic clusters.",
    "noise": "Synthetic within-cluster noise (std per dimension; centres have std 1). Large "
             "enough that true neighbours straddle clusters.",
    "exact_timing_queries": "Queries timed for NumPy / FAISS flat (exact methods scale "
                            "linearly; our exact searcher is timed on all queries).",
    "target_recall": "Recall@10 each approximate method must reach.",
    "repeats": "Timed repetitions (best kept).",
    "batch1_queries": "Queries timed one call each (batch 1) at each method's fastest "
                      "configuration at the target recall.",
    "hnsw_m": "FAISS HNSW graph degree M.",
    "real": "Benchmark real MiniLM embeddings of the shipped SQuAD dev set.",
    "real_index_dir": "Use this index bundle's embeddings and query embedder (implies --real).",
    "skip_rss": "Skip the peak-RSS measurement.",
    "rss_child": "(internal) load this exact searcher and search; print RSS.",
    "name": "Result name (default mips / mips_real).",
}


K = 10


def _best_time(fn, repeats, warmup=None):
  """(Best wall time of `repeats` calls of `fn` after one untimed `warmup` (default: `fn`), the
  last call's result)."""
  (warmup or fn)()  # warm-up (tracing, ScaNN resource creation, caches)
  best, out = float("inf"), None
  for _ in range(repeats):
    t = time.perf_counter()
    out = fn()
    best = min(best, time.perf_counter() - t)
  return best, out


def _recall(rows, exact):
  """Recall@K of the result rows against the exact rows."""
  from realm_tf.retrieval import recall_check  # pylint: disable=g-import-not-at-top
  return recall_check.neighbour_recall(np.asarray(rows), exact, K)


def bench_numpy(x, q, exact, config: MipsBenchConfig):
  """NumPy exact search (matmul + argpartition) over the first `exact_timing_queries` queries."""
  q, exact = q[:config.exact_timing_queries], exact[:config.exact_timing_queries]

  def run():
    out = []
    for s in range(0, len(q), 50):
      scores = q[s:s + 50] @ x.T
      part = np.argpartition(-scores, K - 1, axis=1)[:, :K]
      order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1)
      out.append(np.take_along_axis(part, order, 1))
    return np.concatenate(out)
  secs, rows = _best_time(run, min(config.repeats, 2))
  return {"qps": len(q) / secs, "recall_at_10": _recall(rows, exact),
          "queries_timed": len(q)}


def bench_ours_exact(x, q, tile_size):
  """Times our exact searcher once over all queries; its rows are the ground truth."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.brute_force import BruteForceConfig, BruteForceSearcher  # pylint: disable=g-import-not-at-top
  s = BruteForceSearcher(x, BruteForceConfig(tile_size=tile_size))
  qt = tf.constant(q)
  secs, rows = _best_time(lambda: s.search(qt, K)[0].numpy(), 1,
                          warmup=lambda: s.search(qt[:10], K))
  return {"qps": len(q) / secs, "tile_size": tile_size, "queries_timed": len(q)}, s, rows


def _sweep(search, knob, values, set_knob, q, exact, repeats, target):
  """Search-knob sweep (stops at the first value reaching `target`): points and the fastest
  point at the target."""
  points = []
  for v in values:
    set_knob(v)
    secs, rows = _best_time(lambda: search(q), max(1, repeats - 1))
    points.append({knob: v, "qps": len(q) / secs, "recall_at_10": _recall(rows, exact)})
    if points[-1]["recall_at_10"] >= target:
      break
  ok = [p for p in points if p["recall_at_10"] >= target]
  return {"sweep": points, "at_target": max(ok, key=lambda p: p["qps"]) if ok else None}


def batch1_qps(search_one, q, n):
  """Queries per second issuing `n` queries one call each (a serving pattern: no batching)."""
  n = min(n, len(q))
  search_one(q[:1])  # warm-up
  t = time.perf_counter()
  for i in range(n):
    search_one(q[i:i + 1])
  return n / (time.perf_counter() - t)


def bench_faiss(x, q, exact, config: MipsBenchConfig):
  """FAISS on the same vectors: exact IndexFlatIP, then IVF-Flat, IVF-PQ fast-scan + refine and
  HNSW-Flat, each swept to the target recall and timed at batch 1 at its fastest setting there."""
  import faiss  # pylint: disable=g-import-not-at-top
  repeats, target = config.repeats, config.target_recall
  out = {"threads": faiss.omp_get_max_threads()}
  flat = faiss.IndexFlatIP(x.shape[1])
  flat.add(x)
  nt = config.exact_timing_queries
  secs, rows = _best_time(lambda: flat.search(q[:nt], K)[1], min(repeats, 2))
  out["flat_ip"] = {"qps": nt / secs, "recall_at_10": _recall(rows, exact[:nt]),
                    "queries_timed": nt}
  del flat
  n = x.shape[0]
  nlist = max(16, int(round(np.sqrt(n))))
  rng = np.random.default_rng(1)
  train = x[rng.choice(n, min(n, 100 * nlist), replace=False)]

  def sweep(index, knob, values, set_knob):
    return _sweep(lambda qs: index.search(qs, K)[1], knob, values, set_knob, q, exact, repeats,
                  target)

  def at_batch1(index, result, set_knob):
    if result["at_target"]:
      set_knob(result["at_target"])
      result["at_target"]["batch1_qps"] = batch1_qps(lambda qs: index.search(qs, K),
                                                     q, config.batch1_queries)

  t = time.time()
  ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(x.shape[1]), x.shape[1], nlist,
                           faiss.METRIC_INNER_PRODUCT)
  ivf.train(train)
  ivf.add(x)
  out["ivf_flat"] = {"nlist": nlist, "build_seconds": time.time() - t}
  out["ivf_flat"].update(sweep(ivf, "nprobe", [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128,
                                                        256], lambda v: setattr(ivf, "nprobe", v)))
  at_batch1(ivf, out["ivf_flat"], lambda p: setattr(ivf, "nprobe", p["nprobe"]))
  del ivf
  t = time.time()
  base = faiss.index_factory(x.shape[1], f"IVF{nlist},PQ{x.shape[1] // 2}x4fs",
                             faiss.METRIC_INNER_PRODUCT)
  refine = faiss.IndexRefineFlat(base)
  refine.train(train)
  refine.add(x)
  ivf_pq = faiss.extract_index_ivf(base)
  out["ivf_pq_fastscan_refine"] = {"nlist": nlist, "build_seconds": time.time() - t}
  best = None
  for k_factor in (4, 10, 20):
    refine.k_factor = k_factor
    res = sweep(refine, "nprobe", [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128],
                lambda v: setattr(ivf_pq, "nprobe", v))
    for p in res["sweep"]:
      p["k_factor"] = k_factor
    out["ivf_pq_fastscan_refine"].setdefault("sweep", []).extend(res["sweep"])
    if res["at_target"] and (best is None or res["at_target"]["qps"] > best["qps"]):
      best = res["at_target"]
  out["ivf_pq_fastscan_refine"]["at_target"] = best

  def set_refine(p):
    refine.k_factor = p["k_factor"]
    ivf_pq.nprobe = p["nprobe"]
  at_batch1(refine, out["ivf_pq_fastscan_refine"], set_refine)
  del refine, base
  # HNSW: FAISS's strongest CPU index for this size; efSearch is its recall knob.
  t = time.time()
  hnsw = faiss.IndexHNSWFlat(x.shape[1], config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
  hnsw.add(x)
  out["hnsw_flat"] = {"M": config.hnsw_m, "ef_construction": int(hnsw.hnsw.efConstruction),
                      "build_seconds": time.time() - t}
  out["hnsw_flat"].update(sweep(hnsw, "ef_search",
                                [16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024],
                                lambda v: setattr(hnsw.hnsw, "efSearch", v)))
  at_batch1(hnsw, out["hnsw_flat"], lambda p: setattr(hnsw.hnsw, "efSearch", p["ef_search"]))
  return out


def bench_scann(x, q, exact, config: MipsBenchConfig, mode="auto"):
  """Our ScannSearcher in `mode`: its default, a search-knob sweep, and at the fastest setting
  reaching the target batch-1 QPS (from Python and in one graph) and ScaNN's own Python API."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.scann_searcher import ScannConfig, ScannSearcher  # pylint: disable=g-import-not-at-top
  repeats, target = config.repeats, config.target_recall
  t = time.time()
  s = ScannSearcher(x, ScannConfig(mode=mode))
  out = {"build_seconds": time.time() - t, "config": s.info()["config"]}
  qt = tf.constant(q)
  run = lambda: s.search(qt, K)[0].numpy()  # pylint: disable=unnecessary-lambda-assignment
  secs, rows = _best_time(run, repeats)
  out["default"] = {"qps": len(q) / secs, "recall_at_10": _recall(rows, exact)}
  points = []
  if s.config.mode == "tree_ah":
    grid = [(l, r) for l in (5, 10, 15, 20, 30, 40, 60, 80, 120) for r in (20, 40, 80, 150)]
  elif s.config.mode == "ah":
    grid = [(None, r) for r in (20, 40, 80, 150, 300)]
  else:
    grid = []
  for leaves, reorder in grid:
    s.set_search_params(num_leaves_to_search=leaves, reordering_num_neighbors=reorder)
    secs, rows = _best_time(run, max(1, repeats - 1))
    points.append({"leaves_to_search": leaves, "reorder": reorder, "qps": len(q) / secs,
                   "recall_at_10": _recall(rows, exact)})
  ok = [p for p in points if p["recall_at_10"] >= target]
  out["sweep"] = points
  out["at_target"] = (max(ok, key=lambda p: p["qps"]) if ok else
                      (out["default"] if out["default"]["recall_at_10"] >= target else None))
  if out["at_target"]:
    if "reorder" in out["at_target"]:
      s.set_search_params(num_leaves_to_search=out["at_target"]["leaves_to_search"],
                          reordering_num_neighbors=out["at_target"]["reorder"])
    else:
      s.set_search_params()
    out["at_target"]["batch1_qps"] = batch1_qps(lambda qs: s.search(tf.constant(qs), K),
                                                q, config.batch1_queries)
    out["at_target"]["batch1_qps_in_graph"] = batch1_qps_in_graph(s, q, config.batch1_queries)
    out["at_target"]["empty_tf_function_call_ms"] = empty_tf_function_call_ms()
    out["library_at_target"] = bench_scann_library(x, q, exact, s.config, repeats,
                                                    config.batch1_queries)
  return out


def bench_scann_library(x, q, exact, config, repeats, num_batch1_queries):
  """ScaNN's own Python API (`scann_ops_pybind`) with the ScannConfig our searcher reached the
  target with: the library's speed without a TF op's per-call cost, as FAISS's API is timed."""
  from scann import scann_ops_pybind  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.scann_searcher import scann_builder  # pylint: disable=g-import-not-at-top
  t = time.time()
  s = scann_builder(x, config, scann_ops_pybind).set_n_training_threads(
      config.training_threads).build()
  build_s = time.time() - t
  secs, rows = _best_time(lambda: s.search_batched_parallel(q, K)[0], repeats)
  out = {"build_seconds": build_s, "api": "scann.scann_ops_pybind", "qps": len(q) / secs,
         "recall_at_10": _recall(rows, exact)}
  out["batch1_qps"] = batch1_qps(lambda qs: s.search(qs[0], K), q, num_batch1_queries)
  return out


def batch1_qps_in_graph(searcher, q, n):
  """Queries per second of `searcher.search` on one query at a time inside one traced graph (what
  a served model pays per search, without entering a tf.function per query)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  n = min(n, len(q))
  queries = tf.constant(q[:n])

  @tf.function
  def one_at_a_time(queries):
    total = tf.constant(0, tf.int64)
    for i in tf.range(tf.shape(queries)[0]):
      rows, _ = searcher.search(queries[i:i + 1], K)
      total += tf.reduce_sum(tf.cast(rows, tf.int64))
    return total

  return n / _best_time(lambda: one_at_a_time(queries).numpy(), 2)[0]  # its warm-up traces


def empty_tf_function_call_ms(calls: int = 300) -> float:
  """Milliseconds Python spends entering a tf.function that does nothing (each batch-1 call of a
  TF searcher pays it once)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  fn = tf.function(tf.identity)
  x = tf.zeros([1, 128])
  return _best_time(lambda: [fn(x) for _ in range(calls)], 1)[0] / calls * 1e3


def rss_child(path) -> dict:
  """(`--rss_child`, a fresh process.) Loads a saved exact searcher, searches 2 x 100 random
  queries, prints (and returns) its peak RSS in bytes."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.searcher import load_searcher  # pylint: disable=g-import-not-at-top
  s = load_searcher(path)
  q = tf.random.normal([100, 128])
  for _ in range(2):
    s.search(q, K)[0].numpy()
  # VmHWM (this process image's peak); ru_maxrss would carry the parent's across fork + exec.
  out = {"peak_rss_bytes": procs.process_memory()["VmHWM"]}
  print(json.dumps(out))
  return out


def measure_rss(searcher, x_bytes):
  """Peak RSS of a fresh process searching with `searcher` (saved, then loaded by
  `--rss_child`), minus the same over a 1k-row matrix, against the matrix's `x_bytes`."""
  from realm_tf.retrieval.brute_force import BruteForceSearcher  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.searcher import save_searcher  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    save_searcher(searcher, os.path.join(tmp, "big"))
    save_searcher(BruteForceSearcher(np.ones([1000, 128], np.float32)), os.path.join(tmp, "small"))
    peaks = {name: procs.run_child([sys.executable, "-m", "benchmarks.mips_bench",
                                    f"--rss_child={os.path.join(tmp, name)}"],
                                   what="mips_bench --rss_child")["peak_rss_bytes"]
             for name in ("small", "big")}
  extra = peaks["big"] - peaks["small"]
  return {"matrix_bytes": x_bytes, "peak_rss_bytes": peaks["big"],
          "baseline_peak_rss_bytes_1k_rows": peaks["small"], "peak_rss_minus_baseline": extra,
          "ratio_to_matrix": extra / x_bytes, "within_2x": extra <= 2 * x_bytes,
          "how": "fresh process: load the exact-searcher SavedModel, 2 x 100-query searches; "
                 "VmHWM minus the same process over a 1k-row matrix"}


def load_data(config: MipsBenchConfig):
  """(database, queries, data description) the config names: a bundle's embeddings
  (`real_index_dir`), MiniLM embeddings of SQuAD (`real`) or synthetic clustered vectors."""
  if config.real_index_dir:
    x, q, data = mips_data.bundle_embeddings(config.real_index_dir, config.num_queries)
  elif config.real:
    x, q, data = mips_data.squad_embeddings(config.num_queries)
  else:
    x, q = mips_data.synthetic(config.num_points, config.dim, config.num_queries,
                               config.num_clusters, config.noise)
    data = {"kind": "synthetic clustered", "num_clusters": config.num_clusters,
            "noise": config.noise}
  return x, q, data


def run(config: MipsBenchConfig) -> dict:
  """Runs the benchmark `config` describes, writes its JSON (`config.name`, default mips /
  mips_real) and returns the result; with `rss_child`, only that child's measurement."""
  if config.rss_child:
    return rss_child(config.rss_child)
  provenance = common.Provenance(config.allow_dirty)  # refuses a dirty checkout unless allowed
  from realm_tf.retrieval.topk import exact_top_k  # pylint: disable=g-import-not-at-top
  if config.real_index_dir:  # a bundle's embeddings are real ones
    config = dataclasses.replace(config, real=True)
  start = time.time()
  x, q, data = load_data(config)
  data.update({"num_points": int(x.shape[0]), "dim": int(x.shape[1]),
               "num_queries": int(q.shape[0]), "k": K})
  res = {"data": data, "target_recall_at_10": config.target_recall, "query_batch": len(q),
         "note": "QPS = queries / wall time of one batched call over all queries, best of "
                 f"{config.repeats}. The 2-core CPU is shared with other jobs (see load "
                 "average), so absolute numbers are noisy; ratios are from this one run."}
  res["ours_exact"], exact_searcher, exact = bench_ours_exact(x, q, 16384)
  check = exact_top_k(q[:50], x, K)[0]
  res["ours_exact"]["recall_at_10_vs_numpy_50_queries"] = _recall(exact[:50], check)
  res["numpy_exact"] = bench_numpy(x, q, exact, config)
  res["faiss"] = bench_faiss(x, q, exact, config)
  res["scann"] = bench_scann(x, q, exact, config)
  if config.real:
    res["scann_ah_forced"] = bench_scann(x, q, exact, config, "ah")
  scann_at = res["scann"]["at_target"]
  faiss_approx = {name: res["faiss"][name]["at_target"]
                  for name in ("ivf_flat", "ivf_pq_fastscan_refine", "hnsw_flat")
                  if res["faiss"][name]["at_target"]}
  faiss_best = max(list(faiss_approx.values()) + [res["faiss"]["flat_ip"]],
                   key=lambda c: c["qps"])
  faiss_best_b1 = max(faiss_approx.items(), key=lambda kv: kv[1]["batch1_qps"]) \
      if faiss_approx else None
  if scann_at:
    res["ratios"] = {
        "scann_vs_ours_exact": scann_at["qps"] / res["ours_exact"]["qps"],
        "scann_vs_numpy": scann_at["qps"] / res["numpy_exact"]["qps"],
        "scann_vs_faiss_flat_ip": scann_at["qps"] / res["faiss"]["flat_ip"]["qps"],
        "scann_vs_faiss_best_at_target": scann_at["qps"] / faiss_best["qps"],
        "ours_exact_vs_numpy": res["ours_exact"]["qps"] / res["numpy_exact"]["qps"],
    }
    if "hnsw_flat" in faiss_approx:
      res["ratios"]["scann_vs_faiss_hnsw_batched"] = scann_at["qps"] / faiss_approx[
          "hnsw_flat"]["qps"]
      res["ratios"]["scann_vs_faiss_hnsw_batch1"] = scann_at["batch1_qps"] / faiss_approx[
          "hnsw_flat"]["batch1_qps"]
    if faiss_best_b1:
      res["faiss_best_batch1"] = faiss_best_b1[0]
      res["ratios"]["scann_vs_faiss_best_batch1"] = scann_at["batch1_qps"] / faiss_best_b1[1][
          "batch1_qps"]
      res["ratios"]["scann_in_graph_vs_faiss_best_batch1"] = (
          scann_at["batch1_qps_in_graph"] / faiss_best_b1[1]["batch1_qps"])
    library = res["scann"].get("library_at_target")
    if library and faiss_best_b1:
      res["ratios"]["scann_library_vs_faiss_best_batch1"] = (
          library["batch1_qps"] / faiss_best_b1[1]["batch1_qps"])
      res["ratios"]["scann_library_vs_faiss_best_at_target"] = library["qps"] / faiss_best["qps"]
    res["goals"] = {"scann_10x_exact": res["ratios"]["scann_vs_ours_exact"] >= 10,
                    "scann_ahead_of_faiss_best": res["ratios"]["scann_vs_faiss_best_at_target"] > 1,
                    "scann_at_least_faiss_best_batched":
                        res["ratios"]["scann_vs_faiss_best_at_target"] >= 1.0,
                    "scann_at_least_faiss_best_batch1":
                        res["ratios"].get("scann_vs_faiss_best_batch1", 0.0) >= 1.0,
                    "scann_in_graph_at_least_faiss_best_batch1":
                        res["ratios"].get("scann_in_graph_vs_faiss_best_batch1", 0.0) >= 1.0,
                    "scann_library_at_least_faiss_best_batch1":
                        res["ratios"].get("scann_library_vs_faiss_best_batch1", 0.0) >= 1.0,
                    "scann_library_at_least_faiss_best_batched":
                        res["ratios"].get("scann_library_vs_faiss_best_at_target", 0.0) >= 1.0}
  if not config.skip_rss and not config.real:
    res["exact_memory"] = measure_rss(exact_searcher, x.nbytes)
  res["seconds"] = time.time() - start
  common.write_result(config.name or ("mips_real" if config.real else "mips"), res, provenance)
  return res


if __name__ == "__main__":
  from realm_tf.launch import config_program  # pylint: disable=g-import-not-at-top
  config_program.main(MipsBenchConfig, HELP, run)
