"""The scale benchmark's arithmetic: figures per corpus size, the a + b*N fit, the extrapolation
to the paper's 13,353,718 blocks, and the issue's goals computed from the measured figures.

Pure functions of the stage results (dicts as `scale_stages` and the CLIs' wrappers return
them), so they are tested without running anything. Units: bytes and seconds; KB = 1,000
bytes, GB = 10^9 bytes (a 64 GB host is 64 * 10^9 bytes).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

PAPER_BLOCKS = 13_353_718
HOST_BYTES = 64e9
LOOKUP_REST_BYTES_PER_BLOCK = 750.0
LOOKUP_BUILD_OVER_REST = 1.25
SHARED_ANON_SHARE = 0.05      # a second process may add at most this share of the mapped bytes
RECALL_BYTES_ABOVE = 100e6
RESUME_RATIO = 2.0
EXPORT_OVER_DATA = 1.5
EXPORT_PEAK_OVER_SIZE = 2.0
SERVER_OVER_SIZE = 1.5
EXPORT_CORPUS_COPIES = 1.5    # the corpus text held across the exported models, in copies
CORPUS_SLOPE_BYTES = 50.0     # corpus build: least-squares slope of peak RSS + its SE, B/block
CORPUS_FIT_SIZES = 4          # corpus sizes that slope is fitted over, at least
BUNDLE_OVER_EMBEDDINGS = 1.5  # a bundle (less its embedder) over one copy of its embeddings
ROW_MAP_BYTES = 4.0           # per block: the only lookup data a replica may hold (an int32 map)
SCANN_GROWTH_SHARE = 0.1      # ScaNN rebuilds and loads: RSS over the first, in indexes, at most
SCANN_GOAL_BLOCKS = 1_000_000  # ... measured at this many blocks or more


def fit_linear(points: Sequence[Tuple[float, float]]) -> Dict[str, float]:
  """Least-squares fit y = a + b * N of (N, y) points, with r2 and, from three points on, the
  slope's standard error `b_se` (sqrt(residual variance / (n - 2) / sum (N - mean N)^2)). With
  fewer than two distinct N the fit is proportional (a = 0, b = mean of y / N): a figure measured
  at one size only."""
  n = np.asarray([p[0] for p in points], np.float64)
  y = np.asarray([p[1] for p in points], np.float64)
  if len(n) == 0:
    raise ValueError("fit_linear needs at least one point.")
  if len(np.unique(n)) < 2:
    return {"a": 0.0, "b": float(np.mean(y / n)), "points": len(n), "kind": "proportional"}
  (a, b), *_ = np.linalg.lstsq(np.stack([np.ones_like(n), n], axis=1), y, rcond=None)
  resid = y - (a + b * n)
  total = float(np.sum((y - y.mean()) ** 2))
  r2 = 1.0 - float(np.sum(resid ** 2)) / total if total > 0 else 1.0
  out = {"a": float(a), "b": float(b), "points": len(n), "kind": "a+b*N", "r2": r2}
  if len(n) > 2:
    out["b_se"] = float(np.sqrt(np.sum(resid ** 2) / (len(n) - 2) / np.sum((n - n.mean()) ** 2)))
  return out


def extrapolate(fit: Dict[str, float], num_blocks: float = PAPER_BLOCKS) -> float:
  """The fitted figure at `num_blocks`."""
  return fit["a"] + fit["b"] * num_blocks


def fit_figures(per_size: Dict[int, Dict[str, float]]) -> Dict[str, Dict[str, float]]:
  """{figure: fit + its value at 13.35M blocks} over sizes {num_blocks: {figure: value}}."""
  series: Dict[str, List[Tuple[float, float]]] = {}
  for n, figures in sorted(per_size.items()):
    for name, value in figures.items():
      if value is not None:
        series.setdefault(name, []).append((float(n), float(value)))
  out = {}
  for name, points in sorted(series.items()):
    fit = fit_linear(points)
    out[name] = dict(fit, per_block=fit["b"], at_paper_scale=extrapolate(fit))
  return out


def _get(d: Optional[Dict], *path, default=None):
  for key in path:
    if not isinstance(d, dict) or key not in d:
      return default
    d = d[key]
  return d


def figures_of(stages: Dict[str, Dict], baseline: Dict[str, int], num_blocks: int,
               positions: Sequence[int]) -> Dict[str, float]:
  """The fitted figures of one corpus size from its stage results (absent stages give none)."""
  f = {}

  def put(name, value):
    if value is not None:
      f[name] = value

  c = stages.get("corpus")
  if c and c.get("ok"):
    put("corpus.seconds", c["seconds"])
    put("corpus.peak_rss", c["peak_rss"])
    put("corpus.peak_rss_added", c["peak_rss"] - baseline["VmHWM"])
  b = stages.get("lookup_build")
  if b:
    put("lookup.build_seconds", b["seconds"])
    put("lookup.build_peak_added", b["peak_rss_above_start"])
    put("lookup.disk_bytes", b["disk_bytes"])
    put("lookup.disk_bytes_without_text", b["disk_bytes_without_text"])
  r = stages.get("lookup_rest")
  if r:
    put("lookup.rest_host_bytes", _get(r, "first", "host_bytes_at_rest"))
    put("lookup.rest_rss_added", _get(r, "first", "rss_added"))
    put("lookup.rest_anon_added", _get(r, "first", "anon_added"))
    put("lookup.rest_resident_file_bytes", _get(r, "first", "resident_file_bytes"))
    put("lookup.mapped_bytes", _get(r, "first", "mapped_bytes"))
    put("lookup.second_anon_added", _get(r, "second", "anon_added"))
    put("lookup.second_rss_added", _get(r, "second", "rss_added"))
  i = stages.get("index")
  if i:
    put("index.build_seconds", i["seconds"]["build_and_check"])
    put("index.publish_seconds", i["seconds"]["publish"])
    put("index.peak_rss", i["process_rss"]["VmHWM"])
    put("index.bundle_bytes", i["bundle_bytes"])
    put("index.bundle_bytes_without_embedder",
        i["bundle_bytes"] - i["bundle_parts"].get("query_embedder", 0))
    put("index.embedding_bytes", i["embedding_bytes"])
    put("index.search_ms_per_query", i["search_ms_per_query_batch100"])
  s = stages.get("scann_rebuilds")
  if s:
    put("scann.index_bytes", s["index_bytes"])
    put("scann.rss_first_build", s["rss_after_each_build"][0])
    put("scann.rss_growth_builds", s["rss_after_each_build"][-1] - s["rss_after_each_build"][0])
    put("scann.rss_growth_loads", s["rss_after_each_load"][-1] - s["rss_after_each_load"][0])
  x = stages.get("pipeline")
  if x:
    put("pipeline.cold_first_batch_seconds", x["first_batch_seconds_cold"])
    put("pipeline.seconds_per_batch", x["seconds_per_batch"])
    put("pipeline.peak_rss", x["process_rss"]["VmHWM"])
    for p in positions:
      put(f"pipeline@{p}.rebuilt_first_batch_seconds",
          min(x["rebuilt_first_batch_seconds"].get(str(p)) or [None]))
      put(f"pipeline@{p}.stream_first_record_seconds",
          min(x["stream_first_record_seconds"].get(str(p)) or [None]))
  h = stages.get("heldout_masked")
  if h:
    put("heldout.masked_seconds", h["seconds"])
    put("heldout.masked_peak_rss", h["process_rss"]["VmHWM"])
  d = stages.get("dense_recall")
  if d:
    put("recall.setup_seconds", d["setup_seconds"])
    put("recall.setup_rss_added", d["setup_rss_added"])
    put("recall.topk_seconds", d["topk_seconds"])
    put("recall.topk_peak_above_embeddings", d["topk_peak_above_embeddings"])
    if "replica_variable_bytes" in d:
      put("finetune.replica_bytes_beside_embeddings", sum(
          v for k, v in d["replica_variable_bytes"].items() if "embeddings" not in k))
  m = stages.get("bm25")
  if m:
    put("bm25.build_seconds", m["build_seconds"])
    put("bm25.peak_added", m["peak_rss_added_building_bytes_per_block"] * m["num_blocks"])
    put("bm25.rest_added", m["rss_added_after_questions_bytes_per_block"] * m["num_blocks"])
    if "host_bytes_at_rest_after_questions_bytes_per_block" in m:
      put("bm25.host_at_rest", m["host_bytes_at_rest_after_questions_bytes_per_block"] *
          m["num_blocks"])
    put("bm25.disk_bytes", m["index_disk_bytes_per_block"] * m["num_blocks"])
    put("bm25.ms_per_question", m["ms_per_question"])
  e = stages.get("export")
  if e:
    for key in ("export_bytes", "build_peak_rss", "server_rss", "block_text_bytes",
                "embedding_bytes", "corpus_copies"):
      put(f"export.{key}", e.get(key))
  del num_blocks
  return f


def figure_stages(stages: Dict[str, Dict], baseline: Dict[str, int], num_blocks: int,
                  positions: Sequence[int]) -> Dict[str, str]:
  """{figure: the stage whose result `figures_of` read it from} for one corpus size."""
  out = {}
  for stage, result in stages.items():
    for name in figures_of({stage: result}, baseline, num_blocks, positions):
      out[name] = stage
  return out


def _ratio(x, y):
  return None if x is None or y in (None, 0) else x / y


def _goal(met, **numbers) -> Dict:
  return dict(numbers, met=None if met is None else bool(met))


def scann_rebuilds_goal(s: Dict) -> Dict:
  """The ScaNN rebuilds goal from the `scann_rebuilds` stage's result `s`: at 1M blocks or more,
  the RSS after every build within the first build's plus a tenth of one index's bytes, and the
  RSS after every load within the first load's plus the same. Judged on RSS as measured (no
  malloc_trim by the benchmark); the figures after a trim (`s["after_malloc_trim"]`, a run of
  its own) are reported beside it. Below 1M blocks, or from a stage result that does not say
  it read RSS without a trim (`malloc_trim` false: older results read it after one), it is not
  measured (met None); over the allowance it is missed (met False)."""
  builds, loads = s["rss_after_each_build"], s["rss_after_each_load"]
  index_bytes = s["index_bytes"]
  allowance = SCANN_GROWTH_SHARE * index_bytes
  growth_builds, growth_loads = max(builds) - builds[0], max(loads) - loads[0]
  at_blocks = s.get("num_rows")
  within = growth_builds <= allowance and growth_loads <= allowance
  untrimmed = s.get("malloc_trim") is False
  met = within if untrimmed and (at_blocks or 0) >= SCANN_GOAL_BLOCKS else None
  trimmed = s.get("after_malloc_trim") or {}
  after_trim = {} if not trimmed.get("rss_after_each_build") else {
      "rss_after_first_build": trimmed["rss_after_each_build"][0],
      "rss_after_last_build": trimmed["rss_after_each_build"][-1],
      "growth_builds": max(trimmed["rss_after_each_build"]) - trimmed["rss_after_each_build"][0],
      "rss_after_first_load": trimmed["rss_after_each_load"][0],
      "rss_after_last_load": trimmed["rss_after_each_load"][-1],
      "growth_loads": max(trimmed["rss_after_each_load"]) - trimmed["rss_after_each_load"][0]}
  return _goal(
      met, rebuilds=s["rebuilds"], at_blocks=at_blocks, limit_blocks=SCANN_GOAL_BLOCKS,
      index_bytes=index_bytes, limit_share_of_index=SCANN_GROWTH_SHARE,
      allowance_bytes=allowance, rss_after_first_build=builds[0],
      rss_after_last_build=builds[-1], growth_builds=growth_builds,
      growth_builds_share_of_index=_ratio(growth_builds, index_bytes),
      rss_after_first_load=loads[0], rss_after_last_load=loads[-1], growth_loads=growth_loads,
      growth_loads_share_of_index=_ratio(growth_loads, index_bytes),
      rss_measured_without_malloc_trim=untrimmed,
      after_malloc_trim=after_trim or None,
      # A leak grows with every rebuild; a one-time cost stops after the first few.
      growth_per_rebuild_from_the_third=(
          (builds[-1] - builds[2]) / max(len(builds) - 3, 1) if len(builds) > 3 else None))


def goals(fits: Dict[str, Dict], largest: Dict[str, float], largest_blocks: int,
          smallest: Dict[str, float], stages_largest: Dict[str, Dict],
          positions: Sequence[int], bm25_goals: Optional[Dict] = None,
          corpus_points: Optional[Sequence[Tuple[float, float]]] = None) -> Dict[str, Dict]:
  """Every goal of the issue as {"met": bool or None (not measured here), the numbers it compares}.

  `fits` from fit_figures; `largest`/`smallest` the figures of the largest/smallest size;
  `stages_largest` that size's stage results; `bm25_goals` the BM25 benchmark's own goals of its
  measurement at this size; `corpus_points` the (blocks, corpus build peak RSS) of the corpus
  sizes the build's memory is fitted over (none given: that goal is not measured).
  """
  del smallest  # the corpus goal fits its own sizes (corpus_points)
  at = lambda name: _get(fits, name, "at_paper_scale")  # pylint: disable=unnecessary-lambda-assignment
  per = lambda name: _get(fits, name, "per_block")  # pylint: disable=unnecessary-lambda-assignment
  g = {"measured_at_blocks": largest_blocks, "measured_at_1M": largest_blocks >= 1_000_000}
  rest = per("lookup.rest_host_bytes")
  g["lookup_rest_bytes_per_block"] = _goal(
      None if rest is None else rest <= LOOKUP_REST_BYTES_PER_BLOCK, per_block=rest,
      limit=LOOKUP_REST_BYTES_PER_BLOCK,
      process_rss_added_per_block=per("lookup.rest_rss_added"),
      page_cache_per_block=per("lookup.rest_resident_file_bytes"),
      at_largest_per_block=_ratio(largest.get("lookup.rest_host_bytes"), largest_blocks))
  build, rest_at = at("lookup.build_peak_added"), at("lookup.rest_host_bytes")
  g["lookup_build_peak_over_rest"] = _goal(
      None if build is None or rest_at is None else build <= LOOKUP_BUILD_OVER_REST * rest_at,
      build_peak_at_paper_scale=build, rest_at_paper_scale=rest_at,
      ratio_at_paper_scale=_ratio(build, rest_at),
      ratio_at_largest=_ratio(largest.get("lookup.build_peak_added"),
                              largest.get("lookup.rest_host_bytes")),
      limit=LOOKUP_BUILD_OVER_REST)
  anon, mapped = per("lookup.second_anon_added"), per("lookup.mapped_bytes")
  g["lookup_shared_between_processes"] = _goal(
      None if anon is None or mapped is None else anon <= SHARED_ANON_SHARE * mapped,
      second_process_anon_per_block=anon, mapped_per_block=mapped,
      limit_anon_share=SHARED_ANON_SHARE,
      note="the lookup's files are read through the page cache, one copy per host; a second "
           "process adds only what it allocates itself (anonymous memory)")
  beside = _ratio(largest.get("finetune.replica_bytes_beside_embeddings"), largest_blocks)
  g["lookup_never_a_replica_variable"] = _goal(
      None if beside is None else beside <= ROW_MAP_BYTES,
      replica_bytes_per_block_beside_embeddings=beside, limit=ROW_MAP_BYTES,
      note="open-QA fine-tuning's variables (FrozenIndex.variables): the embeddings, and at most "
           "a 4-byte row map per block; the wordpieces stay in the lookup")
  s = stages_largest.get("scann_rebuilds")
  if s:
    g["scann_rebuilds"] = scann_rebuilds_goal(s)
  if bm25_goals is not None:
    at_blocks = _get(stages_largest, "bm25", "num_blocks", default=largest_blocks)
    g["bm25_at_1M"] = _goal(all(bm25_goals.values()) and at_blocks >= 1_000_000,
                            **bm25_goals, at_blocks=at_blocks,
                            build_seconds=largest.get("bm25.build_seconds"),
                            build_seconds_note="raw wall time of the build, the text generator "
                            "included (no time subtracted)",
                            host_at_rest_per_block=_ratio(largest.get("bm25.host_at_rest"),
                                                          at_blocks),
                            host_at_rest_note="process RSS added after the questions, less the "
                            "index pages it maps, plus the index files' pages in the page cache: "
                            "counted as lookup_rest_bytes_per_block counts the lookup",
                            ms_per_question=largest.get("bm25.ms_per_question"),
                            peak_added_per_block=_ratio(largest.get("bm25.peak_added"),
                                                        at_blocks))
  g["bm25_matches_rank_bm25_on_demo"] = _goal(
      None, note="not measured here: realm_tf/retrieval/bm25_test.py compares the top 20 with "
      "rank_bm25's on the demo corpus for the SQuAD-open dev questions (every 25th by default, "
      "all 2,468 in the slow test)")
  topk = largest.get("recall.topk_peak_above_embeddings")
  g["dense_recall_tiled"] = _goal(
      None if topk is None else topk <= RECALL_BYTES_ABOVE, peak_above_embeddings=topk,
      at_paper_scale=at("recall.topk_peak_above_embeddings"), limit=RECALL_BYTES_ABOVE)
  # resume_time_flat is the `resume` stage's (`resume_goal`): scale_bench.summarize sets it.
  size, data = largest.get("export.export_bytes"), None
  if largest.get("export.block_text_bytes") is not None:
    data = largest["export.block_text_bytes"] + largest.get("export.embedding_bytes", 0)
  e = stages_largest.get("export") or {}
  g["export_size"] = _goal(None if size is None or data is None else
                           size <= EXPORT_OVER_DATA * data, export_bytes=size,
                           text_plus_embedding_bytes=data, limit=EXPORT_OVER_DATA)
  copies = largest.get("export.corpus_copies")
  g["export_one_copy_of_corpus"] = _goal(
      None if copies is None else copies < EXPORT_CORPUS_COPIES, corpus_copies=copies,
      by_model=e.get("corpus_bytes_by_model"), limit=EXPORT_CORPUS_COPIES)
  peak = largest.get("export.build_peak_rss")
  g["export_build_peak"] = _goal(None if peak is None or not size else
                                 peak <= EXPORT_PEAK_OVER_SIZE * size, build_peak_rss=peak,
                                 export_bytes=size, limit=EXPORT_PEAK_OVER_SIZE)
  server = largest.get("export.server_rss")
  g["server_rss"] = _goal(None if server is None or not size else server <= SERVER_OVER_SIZE * size,
                          server_rss=server, export_bytes=size, limit=SERVER_OVER_SIZE)
  c = stages_largest.get("corpus") or {}
  refused = bool(c.get("refused_naming_runner"))
  corpus_points = sorted(corpus_points or [])
  cfit = fit_linear(corpus_points) if corpus_points else {}
  slope, se = cfit.get("b"), cfit.get("b_se")
  g["corpus_build_memory_flat"] = _goal(
      refused or (None if se is None or len(corpus_points) < CORPUS_FIT_SIZES
                  else slope + se < CORPUS_SLOPE_BYTES),
      slope_bytes_per_block=slope, slope_standard_error=se, r2=cfit.get("r2"),
      sizes=[int(n) for n, _ in corpus_points], peak_rss=[v for _, v in corpus_points],
      peak_at_paper_scale=extrapolate(cfit) if cfit else None,
      refused_naming_runner=refused, limit_slope_plus_se=CORPUS_SLOPE_BYTES,
      min_sizes=CORPUS_FIT_SIZES,
      note="least-squares slope of the build process's peak RSS (the kernel's) over the corpus "
           "sizes, plus its standard error, against the limit")
  bundle, emb = largest.get("index.bundle_bytes_without_embedder"), largest.get(
      "index.embedding_bytes")
  g["bundle_embeddings_once"] = _goal(
      None if bundle is None or not emb else bundle <= BUNDLE_OVER_EMBEDDINGS * emb,
      bundle_bytes_without_embedder=bundle, embedding_bytes=emb, limit=BUNDLE_OVER_EMBEDDINGS)
  g["embedder_exports_pruned"] = _goal(
      None, note="not measured here: the trainer's export tests check it")
  return g


def resume_goal(resume: Optional[Dict]) -> Dict:
  """resume_time_flat from the `resume` stage (`benchmarks.scale_resume.measure`): the fastest
  of each position's fresh-process restores, the slowest position's over position 0's (the first
  of `positions`) within RESUME_RATIO both to the first masked batch and to the stream's first
  record, with no record read before any restore's window. Both, since the batch's fixed cost
  (tracing the masking) hides a restore that decompresses a whole large shard first."""
  if not resume or "failed" in resume:
    return _goal(None, note="not measured: the resume stage did not run",
                 failed=(resume or {}).get("failed"))
  positions = [str(p) for p in resume["positions"]]
  best = lambda times: [min(times[p]) if times.get(p) else None for p in positions]  # pylint: disable=unnecessary-lambda-assignment
  batch, record = best(resume["first_batch_seconds"]), best(resume["first_record_seconds"])
  ratio = None if None in batch else max(batch) / batch[0]
  record_ratio = None if None in record else max(record) / record[0]
  read_before = resume.get("records_read_before_window")
  return _goal(None if ratio is None or record_ratio is None else
               ratio <= RESUME_RATIO and record_ratio <= RESUME_RATIO and read_before == 0,
               positions=resume["positions"], first_batch_seconds=batch, ratio=ratio,
               limit=RESUME_RATIO, first_record_seconds=record, record_ratio=record_ratio,
               records_read_before_window=read_before,
               records_skipped_in_window_shard=resume.get("skip_in_shard"),
               num_records=resume.get("num_records"), num_shards=resume.get("num_shards"),
               shuffle_window=resume.get("shuffle_window"))


def host_at_paper_scale(fits: Dict[str, Dict],
                        trainer: Optional[Dict] = None) -> Dict[str, Dict]:
  """The extrapolated peaks of the trainer and of the refresher, each against a 64 GB host.

  Trainer: its input-pipeline process's peak (index searcher + input pipeline + what it maps of
  the lookup), the lookup's pages in the page cache (no process's RSS counts them), and the
  held-out evaluator's largest transient (BM25's build, or question recall's set-up and top-k).
  Refresher: the index process's peak (the merged embeddings, ScaNN's build, publishing).
  With the trainer stage's result (`benchmarks.scale_trainer`), `pretrain_process` adds the
  process a user runs with the paper's flags, per refresh mode (`pretrain_process_peaks`).
  Every part names the stage results it was fitted from (`sources`).
  """
  at = lambda name: _get(fits, name, "at_paper_scale")  # pylint: disable=unnecessary-lambda-assignment
  evaluator = {k: at(k) for k in ("bm25.peak_added", "recall.setup_rss_added",
                                  "recall.topk_peak_above_embeddings") if at(k) is not None}
  transient = max([evaluator.get("bm25.peak_added", 0.0),
                   evaluator.get("recall.setup_rss_added", 0.0) +
                   evaluator.get("recall.topk_peak_above_embeddings", 0.0)])
  sources = lambda parts: {k: _get(fits, k, "sources") for k in parts}  # pylint: disable=unnecessary-lambda-assignment
  out = {}
  pipeline = at("pipeline.peak_rss")
  cache = at("lookup.rest_resident_file_bytes")
  if pipeline is not None:
    parts = dict(evaluator, **{"pipeline.peak_rss": pipeline})
    if cache is not None:
      parts["lookup.rest_resident_file_bytes"] = cache
    total = pipeline + (cache or 0.0) + transient
    out["trainer"] = {"parts": parts, "evaluator_transient": transient, "peak_bytes": total,
                      "limit_bytes": HOST_BYTES, "met": total <= HOST_BYTES,
                      "sources": sources(parts)}
  refresher = at("index.peak_rss")
  if refresher is not None:
    out["refresher"] = {"parts": {"index.peak_rss": refresher}, "peak_bytes": refresher,
                        "limit_bytes": HOST_BYTES, "met": refresher <= HOST_BYTES,
                        "sources": sources(["index.peak_rss"])}
  if trainer and pipeline is not None and refresher is not None:
    out["pretrain_process"] = pretrain_process_peaks(fits, trainer, transient, cache or 0.0)
  return out


def pretrain_process_peaks(fits: Dict[str, Dict], trainer: Dict, evaluator_transient: float,
                           page_cache: float) -> Dict:
  """The main job's process at the paper's flags and 13.35M blocks, per refresh mode, and the
  host it runs on, against 64 GB.

  `trainer` is the trainer stage's result: the kernel's peak RSS of the real process at the
  paper's flags on a sample corpus of N0 blocks, which holds every part that does not grow
  with the corpus (BERT-base towers and reader, Adam state, gradients, a checkpoint write; with
  inline refresh the refresher's own). To it are added what grows from N0 to 13.35M blocks: the
  input side (`pipeline.peak_rss`'s fit at 13.35M less at N0), the held-out evaluator's
  transient, and, inline, the refresher's index (`index.peak_rss`'s, likewise); the host adds
  the lookup's page cache. Async, the refresher is its own process (`refresh_index`): the host
  holds both where they share it. Either way the job builds the first index in its own process
  when none is live (`first_index_build`: the refresher's peak), before the model is built.
  """
  n0 = float(trainer["num_blocks"])
  growth = lambda name: fits[name]["b"] * (PAPER_BLOCKS - n0)  # pylint: disable=unnecessary-lambda-assignment
  refresher = extrapolate(fits["index.peak_rss"])
  out = {"measured_at_blocks": int(n0), "paper_flagfile_refresh": trainer.get("paper_refresh"),
         "limit_bytes": HOST_BYTES}
  for mode, measured in sorted(trainer["modes"].items()):
    parts = {"measured_peak_rss": float(measured["peak_rss"]),
             "pipeline_growth": growth("pipeline.peak_rss"),
             "evaluator_transient": evaluator_transient}
    if mode == "inline":
      parts["refresher_index_growth"] = growth("index.peak_rss")
    training = sum(parts.values())
    process = max(training, refresher)
    host = process + page_cache
    row = {"parts": parts, "training_peak_bytes": training, "first_index_build": refresher,
           "process_peak_bytes": process, "page_cache_bytes": page_cache,
           "host_peak_bytes": host, "met": host <= HOST_BYTES}
    if mode == "async":
      row["host_peak_bytes_with_refresher_beside"] = host + refresher
      row["met_with_refresher_beside"] = host + refresher <= HOST_BYTES
    out[mode] = row
  return out
