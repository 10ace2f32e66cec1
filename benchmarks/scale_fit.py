"""The scale benchmark's arithmetic: the figures of each corpus size (fitted and extrapolated to
13,353,718 blocks by `benchmarks.fitting`) and the issue's goals computed from them.

Pure functions of the stage results (dicts as `scale_stages` and the CLIs' wrappers return them),
tested without running anything. Units: bytes and seconds; KB = 1,000 bytes, GB = 10^9 bytes.
"""
from typing import Dict, Optional, Sequence, Tuple

from benchmarks.fitting import PAPER_BLOCKS, extrapolate, fit_linear

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


def _get(d: Optional[Dict], *path, default=None):
  for key in path:
    if not isinstance(d, dict) or key not in d:
      return default
    d = d[key]
  return d


def _stage_figures(stage: str, r: Dict, baseline: Dict[str, int],
                   positions: Sequence[int]) -> Dict[str, Optional[float]]:
  """The fitted figures one stage result gives."""
  if stage == "corpus":
    return {"corpus.seconds": r["seconds"], "corpus.peak_rss": r["peak_rss"],
            "corpus.peak_rss_added": r["peak_rss"] - baseline["VmHWM"]} if r.get("ok") else {}
  if stage == "lookup_build":
    return {"lookup.build_seconds": r["seconds"], "lookup.build_peak_added":
            r["peak_rss_above_start"], "lookup.disk_bytes": r["disk_bytes"],
            "lookup.disk_bytes_without_text": r["disk_bytes_without_text"]}
  if stage == "lookup_rest":
    first = lambda key: _get(r, "first", key)  # pylint: disable=unnecessary-lambda-assignment
    return {"lookup.rest_host_bytes": first("host_bytes_at_rest"),
            "lookup.rest_rss_added": first("rss_added"),
            "lookup.rest_anon_added": first("anon_added"),
            "lookup.rest_resident_file_bytes": first("resident_file_bytes"),
            "lookup.mapped_bytes": first("mapped_bytes"),
            "lookup.second_anon_added": _get(r, "second", "anon_added"),
            "lookup.second_rss_added": _get(r, "second", "rss_added")}
  if stage == "index":
    return {"index.build_seconds": r["seconds"]["build_and_check"],
            "index.publish_seconds": r["seconds"]["publish"],
            "index.peak_rss": r["process_rss"]["VmHWM"], "index.bundle_bytes": r["bundle_bytes"],
            "index.bundle_bytes_without_embedder":
                r["bundle_bytes"] - r["bundle_parts"].get("query_embedder", 0),
            "index.embedding_bytes": r["embedding_bytes"],
            "index.search_ms_per_query": r["search_ms_per_query_batch100"]}
  if stage == "scann_rebuilds":
    builds, loads = r["rss_after_each_build"], r["rss_after_each_load"]
    return {"scann.index_bytes": r["index_bytes"], "scann.rss_first_build": builds[0],
            "scann.rss_growth_builds": builds[-1] - builds[0],
            "scann.rss_growth_loads": loads[-1] - loads[0]}
  if stage == "pipeline":
    out = {"pipeline.cold_first_batch_seconds": r["first_batch_seconds_cold"],
           "pipeline.seconds_per_batch": r["seconds_per_batch"],
           "pipeline.peak_rss": r["process_rss"]["VmHWM"]}
    for p in positions:
      out[f"pipeline@{p}.rebuilt_first_batch_seconds"] = min(
          r["rebuilt_first_batch_seconds"].get(str(p)) or [None])
      out[f"pipeline@{p}.stream_first_record_seconds"] = min(
          r["stream_first_record_seconds"].get(str(p)) or [None])
    return out
  if stage == "heldout_masked":
    return {"heldout.masked_seconds": r["seconds"],
            "heldout.masked_peak_rss": r["process_rss"]["VmHWM"]}
  if stage == "dense_recall":
    return {"recall.setup_seconds": r["setup_seconds"], "recall.setup_rss_added":
            r["setup_rss_added"], "recall.topk_seconds": r["topk_seconds"],
            "recall.topk_peak_above_embeddings": r["topk_peak_above_embeddings"],
            "finetune.replica_bytes_beside_embeddings": sum(
                v for k, v in r["replica_variable_bytes"].items() if "embeddings" not in k)
                if "replica_variable_bytes" in r else None}
  if stage == "bm25":
    n, host = r["num_blocks"], r.get("host_bytes_at_rest_after_questions_bytes_per_block")
    return {"bm25.build_seconds": r["build_seconds"],
            "bm25.peak_added": r["peak_rss_added_building_bytes_per_block"] * n,
            "bm25.rest_added": r["rss_added_after_questions_bytes_per_block"] * n,
            "bm25.host_at_rest": None if host is None else host * n,
            "bm25.disk_bytes": r["index_disk_bytes_per_block"] * n,
            "bm25.ms_per_question": r["ms_per_question"]}
  if stage == "export":
    return {f"export.{k}": r.get(k) for k in ("export_bytes", "build_peak_rss", "server_rss",
                                              "block_text_bytes", "embedding_bytes",
                                              "corpus_copies")}
  return {}


def figure_stages(stages: Dict[str, Dict], baseline: Dict[str, int],
                  positions: Sequence[int]) -> Dict[str, str]:
  """{figure: the stage whose result it is read from} of one corpus size's stage results."""
  return {name: stage for stage, r in stages.items() if r
          for name, value in _stage_figures(stage, r, baseline, positions).items()
          if value is not None}


def figures_of(stages: Dict[str, Dict], baseline: Dict[str, int],
               positions: Sequence[int]) -> Dict[str, float]:
  """The fitted figures of one corpus size from its stage results (absent stages give none)."""
  return {name: value for stage, r in stages.items() if r
          for name, value in _stage_figures(stage, r, baseline, positions).items()
          if value is not None}


def _ratio(x, y):
  return None if x is None or y in (None, 0) else x / y


def _goal(met, **numbers) -> Dict:
  return dict(numbers, met=None if met is None else bool(met))


def _le(x, limit, base=1.0):
  """x <= limit * base; None when x or base is unknown."""
  return None if x is None or base is None else x <= limit * base


def _rss_growth(s: Dict) -> Dict:
  builds, loads = s["rss_after_each_build"], s["rss_after_each_load"]
  return {"rss_after_first_build": builds[0], "rss_after_last_build": builds[-1],
          "growth_builds": max(builds) - builds[0], "rss_after_first_load": loads[0],
          "rss_after_last_load": loads[-1], "growth_loads": max(loads) - loads[0]}


def scann_rebuilds_goal(s: Dict) -> Dict:
  """The ScaNN rebuilds goal from the `scann_rebuilds` stage's result `s`: at 1M blocks or more,
  the RSS after every build (and every load) within the first one's plus a tenth of one index's
  bytes, judged on RSS as measured; the figures after malloc_trim (`s["after_malloc_trim"]`, a
  run of its own) are reported beside it. Below 1M blocks, or from a result that does not say it
  read RSS without a trim (older results read it after one), met is None."""
  growth, builds, index_bytes = _rss_growth(s), s["rss_after_each_build"], s["index_bytes"]
  allowance = SCANN_GROWTH_SHARE * index_bytes
  at_blocks, untrimmed = s.get("num_rows"), s.get("malloc_trim") is False
  within = growth["growth_builds"] <= allowance and growth["growth_loads"] <= allowance
  trimmed = s.get("after_malloc_trim") or {}
  return _goal(
      within if untrimmed and (at_blocks or 0) >= SCANN_GOAL_BLOCKS else None,
      rebuilds=s["rebuilds"], at_blocks=at_blocks, limit_blocks=SCANN_GOAL_BLOCKS,
      index_bytes=index_bytes, limit_share_of_index=SCANN_GROWTH_SHARE,
      allowance_bytes=allowance, **growth,
      growth_builds_share_of_index=_ratio(growth["growth_builds"], index_bytes),
      growth_loads_share_of_index=_ratio(growth["growth_loads"], index_bytes),
      rss_measured_without_malloc_trim=untrimmed,
      after_malloc_trim=_rss_growth(trimmed) if trimmed.get("rss_after_each_build") else None,
      # A leak grows with every rebuild; a one-time cost stops after the first few.
      growth_per_rebuild_from_the_third=(
          (builds[-1] - builds[2]) / max(len(builds) - 3, 1) if len(builds) > 3 else None))


def goals(fits: Dict[str, Dict], largest: Dict[str, float], largest_blocks: int,
          stages_largest: Dict[str, Dict], bm25_goals: Optional[Dict] = None,
          corpus_points: Optional[Sequence[Tuple[float, float]]] = None) -> Dict[str, Dict]:
  """Every goal of the issue as {"met": bool or None (not measured here), the numbers it compares}
  from the `fits` (`fitting.fit_figures`), the `largest` size's figures and stage results, the
  BM25 benchmark's own goals at that size and the (blocks, corpus build peak RSS) `corpus_points`
  the build's memory is fitted over (none: that goal is not measured)."""
  at = lambda name: _get(fits, name, "at_paper_scale")  # pylint: disable=unnecessary-lambda-assignment
  per = lambda name: _get(fits, name, "per_block")  # pylint: disable=unnecessary-lambda-assignment
  g = {"measured_at_blocks": largest_blocks, "measured_at_1M": largest_blocks >= 1_000_000}
  rest = per("lookup.rest_host_bytes")
  g["lookup_rest_bytes_per_block"] = _goal(
      _le(rest, LOOKUP_REST_BYTES_PER_BLOCK), per_block=rest, limit=LOOKUP_REST_BYTES_PER_BLOCK,
      process_rss_added_per_block=per("lookup.rest_rss_added"),
      page_cache_per_block=per("lookup.rest_resident_file_bytes"),
      at_largest_per_block=_ratio(largest.get("lookup.rest_host_bytes"), largest_blocks))
  build, rest_at = at("lookup.build_peak_added"), at("lookup.rest_host_bytes")
  g["lookup_build_peak_over_rest"] = _goal(
      _le(build, LOOKUP_BUILD_OVER_REST, rest_at), build_peak_at_paper_scale=build, rest_at_paper_scale=rest_at,
      ratio_at_paper_scale=_ratio(build, rest_at),
      ratio_at_largest=_ratio(largest.get("lookup.build_peak_added"),
                              largest.get("lookup.rest_host_bytes")),
      limit=LOOKUP_BUILD_OVER_REST)
  anon, mapped = per("lookup.second_anon_added"), per("lookup.mapped_bytes")
  g["lookup_shared_between_processes"] = _goal(
      _le(anon, SHARED_ANON_SHARE, mapped), second_process_anon_per_block=anon,
      mapped_per_block=mapped, limit_anon_share=SHARED_ANON_SHARE,
      note="the lookup's files are read through the page cache, one copy per host; a second "
           "process adds only what it allocates itself (anonymous memory)")
  beside = _ratio(largest.get("finetune.replica_bytes_beside_embeddings"), largest_blocks)
  g["lookup_never_a_replica_variable"] = _goal(
      _le(beside, ROW_MAP_BYTES), replica_bytes_per_block_beside_embeddings=beside,
      limit=ROW_MAP_BYTES,
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
      _le(topk, RECALL_BYTES_ABOVE), peak_above_embeddings=topk,
      at_paper_scale=at("recall.topk_peak_above_embeddings"), limit=RECALL_BYTES_ABOVE)
  # resume_time_flat is the `resume` stage's (`resume_goal`): scale_bench.summarize sets it.
  size, data = largest.get("export.export_bytes"), None
  if largest.get("export.block_text_bytes") is not None:
    data = largest["export.block_text_bytes"] + largest.get("export.embedding_bytes", 0)
  e = stages_largest.get("export") or {}
  g["export_size"] = _goal(_le(size, EXPORT_OVER_DATA, data), export_bytes=size,
                           text_plus_embedding_bytes=data, limit=EXPORT_OVER_DATA)
  copies = largest.get("export.corpus_copies")
  g["export_one_copy_of_corpus"] = _goal(
      None if copies is None else copies < EXPORT_CORPUS_COPIES, corpus_copies=copies,
      by_model=e.get("corpus_bytes_by_model"), limit=EXPORT_CORPUS_COPIES)
  peak = largest.get("export.build_peak_rss")
  g["export_build_peak"] = _goal(_le(peak, EXPORT_PEAK_OVER_SIZE, size or None),
                                 build_peak_rss=peak, export_bytes=size,
                                 limit=EXPORT_PEAK_OVER_SIZE)
  server = largest.get("export.server_rss")
  g["server_rss"] = _goal(_le(server, SERVER_OVER_SIZE, size or None), server_rss=server,
                          export_bytes=size, limit=SERVER_OVER_SIZE)
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
      _le(bundle, BUNDLE_OVER_EMBEDDINGS, emb or None), bundle_bytes_without_embedder=bundle,
      embedding_bytes=emb, limit=BUNDLE_OVER_EMBEDDINGS)
  g["embedder_exports_pruned"] = _goal(
      None, note="not measured here: the trainer's export tests check it")
  return g


def resume_goal(resume: Optional[Dict]) -> Dict:
  """resume_time_flat from the `resume` stage (`scale_resume.measure`): each position's fastest
  restore, the slowest position's over the first position's within RESUME_RATIO both to the first
  masked batch and to the stream's first record (the batch's fixed cost could hide a restore that
  decompresses a whole shard first), with no record read before any restore's window."""
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
  """The extrapolated peaks of the trainer (its input-pipeline process, the lookup's pages in the
  page cache, the held-out evaluator's largest transient) and of the refresher (the index
  process), each against a 64 GB host, every part naming the stage results it was fitted from;
  with the trainer stage's result, `pretrain_process` (`pretrain_process_peaks`) too."""
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
  """The main job's process at the paper's flags and 13.35M blocks, per refresh mode, and its
  host, against 64 GB: the trainer stage's peak on N0 blocks (every part that does not grow with
  the corpus) plus what grows from N0 to 13.35M (the input side, the evaluator's transient and,
  inline, the refresher's index), the host adding the lookup's page cache; async, the refresher
  is a process beside it. Either way the job builds the first index itself when none is live
  (`first_index_build`: the refresher's peak)."""
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
