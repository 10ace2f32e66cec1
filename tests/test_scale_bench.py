"""The scale benchmark's pure parts: the a + b*N fit and its extrapolation, the goals computed from
stage results, its process measurement, and the synthetic corpus (deterministic, a prefix at
every size, cut by the real block builder into exactly the blocks it was drawn as)."""
import json
import os
import sys

import numpy as np
import pytest

from benchmarks import fitting, procs, scale_bench, scale_corpus, scale_fit
from realm_tf.launch import config_program


def test_fit_recovers_a_line_and_extrapolates_to_the_paper_corpus():
  fit = fitting.fit_linear([(20_000, 100 + 5 * 20_000), (100_000, 100 + 5 * 100_000),
                              (1_000_000, 100 + 5 * 1_000_000)])
  assert fit["a"] == pytest.approx(100, abs=1e-3)
  assert fit["b"] == pytest.approx(5)
  assert fit["r2"] == pytest.approx(1.0)
  assert fitting.extrapolate(fit) == pytest.approx(100 + 5 * 13_353_718)
  # Least squares, not a line through the ends: (0, 0), (1, 2), (2, 1) → y = 0.5 + 0.5 N.
  fit = fitting.fit_linear([(0, 0), (1, 2), (2, 1)])
  assert (fit["a"], fit["b"]) == (pytest.approx(0.5), pytest.approx(0.5))
  assert fit["r2"] == pytest.approx(0.25)


def test_one_size_gives_a_proportional_fit():
  fit = fitting.fit_linear([(4000, 80.0)])
  assert (fit["a"], fit["b"], fit["kind"]) == (0.0, 0.02, "proportional")
  with pytest.raises(ValueError):
    fitting.fit_linear([])


def test_fit_figures_per_figure_over_the_sizes_that_have_it():
  fits = fitting.fit_figures({1000: {"x": 1e6 + 600e3, "y": 3.0},
                                3000: {"x": 1e6 + 1800e3, "y": None}})
  assert fits["x"]["per_block"] == pytest.approx(600)
  assert fits["x"]["at_paper_scale"] == pytest.approx(1e6 + 600 * 13_353_718)
  assert fits["y"]["kind"] == "proportional" and fits["y"]["per_block"] == pytest.approx(0.003)


def _stages(n, rest_per_block=600.0, build_per_block=700.0, growth=0, times=(10.0, 12.0),
            topk=40e6):
  """Stage results of one size as the stages return them (only the fields the fit reads)."""
  status = lambda hwm: {"VmHWM": hwm, "VmRSS": hwm}  # pylint: disable=unnecessary-lambda-assignment
  return {
      "corpus": {"ok": True, "num_blocks": n, "seconds": 1e-3 * n, "peak_rss": 1e9},
      "lookup_build": {"seconds": 1.0, "peak_rss_above_start": 50e6 + build_per_block * n,
                       "disk_bytes": 2000 * n, "disk_bytes_without_text": 640 * n},
      "lookup_rest": {"first": {"host_bytes_at_rest": 30e6 + rest_per_block * n,
                                "rss_added": 30e6, "anon_added": 20e6,
                                "resident_file_bytes": rest_per_block * n,
                                "mapped_bytes": 640 * n},
                      "second": {"anon_added": 20e6, "rss_added": 30e6}},
      "index": {"seconds": {"build_and_check": 2.0, "publish": 1.0},
                "process_rss": status(1.5e9 + 1100 * n), "bundle_bytes": 600 * n + 90e6,
                "bundle_parts": {"query_embedder": 90e6}, "embedding_bytes": 512 * n,
                "search_ms_per_query_batch100": 0.5},
      "scann_rebuilds": {"rebuilds": 3, "index_bytes": 600 * n, "num_rows": n,
                         "malloc_trim": False,
                         "rss_after_each_build": [2e9, 2e9 + growth, 2e9 + growth],
                         "rss_after_each_load": [2.1e9, 2.1e9, 2.1e9]},
      "pipeline": {"first_batch_seconds_cold": 60.0, "seconds_per_batch": 0.1,
                   "rebuilt_first_batch_seconds": {"0": [times[0], times[0] + 1],
                                                   "10000000": [times[1] + 2, times[1]]},
                   "stream_first_record_seconds": {"0": [0.1], "10000000": [0.11]},
                   "process_rss": status(2e9 + 1200 * n)},
      "dense_recall": {"setup_seconds": 1.0, "setup_rss_added": 10 * n, "topk_seconds": 0.1,
                       "topk_peak_above_embeddings": topk},
      "bm25": {"num_blocks": n, "build_seconds": 1e-5 * n,
               "peak_rss_added_building_bytes_per_block": 800.0,
               "rss_added_after_questions_bytes_per_block": 500.0,
               "index_disk_bytes_per_block": 400.0, "ms_per_question": 5.0},
  }


def _goals(**kw):
  sizes = (100_000, 1_000_000)
  per_size = {n: _stages(n, **kw) for n in sizes}
  base = {"VmHWM": 400e6}
  figures = {n: scale_fit.figures_of(s, base, [0, 10_000_000]) for n, s in per_size.items()}
  fits = fitting.fit_figures(figures)
  goals = scale_fit.goals(fits, figures[sizes[-1]], sizes[-1], per_size[sizes[-1]],
                          {"build_seconds_le_60": True, "bytes_per_block_le_1024": True,
                           "ms_per_question_le_20": True},
                          [(n, 1e9 + 10 * n) for n in (100_000, 200_000, 300_000, 1_000_000)])
  return goals, fits


def test_the_slope_has_its_standard_error():
  fit = fitting.fit_linear([(1.0, 1.0), (2.0, 3.0), (3.0, 2.0), (4.0, 4.0)])
  # b = 0.8; residuals 0.3 0.5 -1.3 -0.1 → SSR 1.8; Sxx 5: se = sqrt(1.8 / 2 / 5).
  assert fit["b"] == pytest.approx(0.8) and fit["b_se"] == pytest.approx((1.8 / 2 / 5) ** 0.5)
  assert "b_se" not in fitting.fit_linear([(1.0, 1.0), (2.0, 3.0)])


def _corpus_goal(points):
  n = max(p[0] for p in points)
  return scale_fit.goals({}, {}, n, {}, None, points)["corpus_build_memory_flat"]


def test_corpus_build_memory_goal_is_the_slope_plus_its_error_over_four_sizes():
  flat = _corpus_goal([(100_000, 957e6), (200_000, 962e6), (300_000, 960e6), (1_000_000, 990e6)])
  assert flat["met"] is True and flat["slope_bytes_per_block"] < 50
  assert flat["sizes"] == [100_000, 200_000, 300_000, 1_000_000]
  # A slope under the limit whose error takes it over misses; so does a steep one.
  noisy = _corpus_goal([(100_000, 900e6), (200_000, 1000e6), (300_000, 900e6),
                        (1_000_000, 940e6)])
  assert noisy["slope_bytes_per_block"] < 50 < noisy["slope_bytes_per_block"] + \
      noisy["slope_standard_error"] and noisy["met"] is False
  steep = _corpus_goal([(n, 8e8 + 80 * n) for n in (100_000, 200_000, 300_000, 1_000_000)])
  assert steep["met"] is False and steep["slope_bytes_per_block"] == pytest.approx(80)
  # Fewer than four sizes: not measured (None), whatever the slope.
  assert _corpus_goal([(100_000, 9e8), (300_000, 9e8), (1_000_000, 9e8)])["met"] is None


def test_bm25_goal_reports_the_host_memory_and_the_raw_build_time():
  from benchmarks import bm25_bench  # pylint: disable=g-import-not-at-top
  result = {"num_blocks": 1_000_000, "build_seconds": 59.0, "ms_per_question": 10.0,
            "peak_rss_added_building_bytes_per_block": 260.0,
            "anon_rss_added_after_questions_bytes_per_block": 75.0,
            "host_bytes_at_rest_after_questions_bytes_per_block": 1117.0}
  assert bm25_bench.goals(result) == {"build_seconds_le_60": True,
                                      "bytes_per_block_le_1024": False,
                                      "ms_per_question_le_20": True}
  assert bm25_bench.goals(dict(result, host_bytes_at_rest_after_questions_bytes_per_block=990.0,
                               build_seconds=62.4))["build_seconds_le_60"] is False
  # A result of an older run without the host figure: that goal is not measured (None).
  older = {k: v for k, v in result.items() if not k.startswith("host_")}
  assert bm25_bench.goals(older)["bytes_per_block_le_1024"] is None


def test_goals_from_figures_that_meet_them():
  goals, fits = _goals()
  assert goals["measured_at_1M"] and goals["measured_at_blocks"] == 1_000_000
  assert goals["lookup_rest_bytes_per_block"]["per_block"] == pytest.approx(600)
  for name in ("lookup_rest_bytes_per_block", "lookup_build_peak_over_rest",
               "lookup_shared_between_processes", "scann_rebuilds", "bm25_at_1M",
               "dense_recall_tiled", "corpus_build_memory_flat",
               "bundle_embeddings_once"):
    assert goals[name]["met"] is True, (name, goals[name])
  # Not measured by the benchmark (no export stage here, tests' goals): None, not False.
  assert goals["export_size"]["met"] is None
  assert goals["lookup_never_a_replica_variable"]["met"] is None
  host = scale_fit.host_at_paper_scale(fits)
  pipeline = 2e9 + 1200 * 13_353_718
  page_cache = 600 * 13_353_718  # the lookup's files, resident once per host
  evaluator = max(800.0, 10.0) * 13_353_718  # BM25's build peak beats recall's set-up + top-k
  assert host["trainer"]["peak_bytes"] == pytest.approx(pipeline + page_cache + evaluator,
                                                        rel=1e-6)
  assert host["trainer"]["met"] is True
  assert host["refresher"]["peak_bytes"] == pytest.approx(1.5e9 + 1100 * 13_353_718, rel=1e-6)


def test_goals_from_figures_that_miss_them():
  goals, _ = _goals(rest_per_block=10_300.0, build_per_block=22_700.0, growth=3e9,
                    times=(10.0, 45.0), topk=4e9)
  for name in ("lookup_rest_bytes_per_block", "lookup_build_peak_over_rest", "scann_rebuilds",
               "dense_recall_tiled"):
    assert goals[name]["met"] is False, (name, goals[name])
  assert goals["scann_rebuilds"]["rss_after_last_build"] == 5e9
  # The pipeline stage's restores no longer decide resume_time_flat: the resume stage does
  # (tests/test_scale_resume.py), and summarize sets it.
  assert "resume_time_flat" not in goals


def _scann(builds, loads, num_rows=1_000_000, index_bytes=580e6, **kw):
  """A `scann_rebuilds` stage result read without malloc_trim (RSS in bytes)."""
  return dict({"rebuilds": len(builds), "num_rows": num_rows, "index_bytes": index_bytes,
               "malloc_trim": False, "rss_after_each_build": builds,
               "rss_after_each_load": loads}, **kw)


def test_scann_rebuilds_goal_allows_a_tenth_of_an_index_judged_without_malloc_trim():
  flat = [2.5e9] * 10
  # Loads that grew by 79% of an index (0.46 GB of 0.58 GB): missed, though under one index.
  grew = scale_fit.scann_rebuilds_goal(_scann(flat, [3.18e9] * 2 + [3.64e9] * 8))
  assert grew["met"] is False
  assert grew["growth_loads_share_of_index"] == pytest.approx(0.46e9 / 580e6)
  assert grew["allowance_bytes"] == pytest.approx(58e6)
  # Builds alone over a tenth: missed too; both within a tenth (57 MB): met.
  assert scale_fit.scann_rebuilds_goal(_scann(flat[:9] + [2.56e9], flat))["met"] is False
  ok = scale_fit.scann_rebuilds_goal(_scann(flat[:9] + [2.557e9], [3.18e9] * 9 + [3.237e9]))
  assert ok["met"] is True and ok["rss_measured_without_malloc_trim"] is True
  # Flat after malloc_trim does not rescue growth measured without it; the trimmed run is
  # reported beside the goal.
  trimmed = {"malloc_trim": True, "rss_after_each_build": flat, "rss_after_each_load": flat}
  judged = scale_fit.scann_rebuilds_goal(_scann(flat, [3.18e9] + [3.3e9] * 9,
                                                after_malloc_trim=trimmed))
  assert judged["met"] is False and judged["after_malloc_trim"]["growth_loads"] == 0
  # Not measured (None, not met): below 1M blocks, or a result read after malloc_trim (older
  # results, which do not say `malloc_trim` false).
  assert scale_fit.scann_rebuilds_goal(_scann(flat, flat, num_rows=20_000))["met"] is None
  older = {k: v for k, v in _scann(flat, flat).items() if k != "malloc_trim"}
  assert scale_fit.scann_rebuilds_goal(older)["met"] is None


def test_summarize_writes_fits_goals_and_the_host_sums():
  config = scale_bench.ScaleBenchConfig(sizes=[100_000, 1_000_000])
  sizes = {n: _stages(n) for n in config.sizes}
  sizes[1_000_000]["export"] = {"failed": "no export benchmark"}
  payload = scale_bench.summarize(config, {"VmHWM": 400e6}, sizes,
                                  {"annotation": {1000: {"num_blocks": 1000, "seconds": 20.0,
                                                         "peak_rss": 1.2e9}},
                                   "embedding": {"blocks_per_second": 20.0}})
  json.dumps(payload)  # serialisable as it is
  assert payload["failed_stages"] == {"1000000/export": "no export benchmark"}
  assert payload["fits"]["annotation.seconds"]["at_paper_scale"] == pytest.approx(
      0.02 * 13_353_718)
  assert payload["embedding_at_paper_scale"]["hours_to_embed_paper_corpus_this_machine"] == \
      pytest.approx(13_353_718 / 20 / 3600)
  assert set(payload["host_at_paper_scale"]) == {"trainer", "refresher"}
  assert payload["goals"]["lookup_rest_bytes_per_block"]["met"] is True
  assert payload["goals"]["figures_from_smaller_sizes"] == {}


def _head_commit():
  import subprocess  # pylint: disable=g-import-not-at-top
  return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
                        ).stdout.strip()


def test_every_stage_result_records_its_provenance(tmp_path):
  import time  # pylint: disable=g-import-not-at-top
  bench = scale_bench.Bench(scale_bench.ScaleBenchConfig(work_dir=str(tmp_path),
                                                         stages=["trainer"]))
  result = bench.cached(None, "x", lambda: time.sleep(0.3) or {"v": 1}, required=True)
  prov = result["provenance"]
  assert result["v"] == 1 and prov["commit"] == _head_commit()
  assert isinstance(prov["dirty"], bool)
  assert time.mktime(time.strptime(prov["time_utc"], "%Y-%m-%dT%H:%M:%SZ")) > 0
  assert set(prov["load_average_1m"]) == {"before", "after"}
  assert all(v >= 0 for v in prov["load_average_1m"].values())
  assert 0.3 <= prov["wall_seconds"] < 30
  # Kept with the result, and read back with it.
  with open(tmp_path / "stages" / "x.json") as f:
    assert json.load(f)["provenance"] == prov
  assert bench.cached(None, "x", lambda: {"v": 2})["provenance"] == prov

  def fails():
    raise RuntimeError("boom")

  failed = bench.cached(None, "y", fails, required=True)
  assert failed["failed"] == "boom" and failed["provenance"]["commit"] == prov["commit"]
  # The trainer stage is one of the benchmark's stages.
  assert "trainer" in scale_bench.SAMPLE_STAGES and bench.want("trainer")


def _stamped(stages, time_utc):
  return {k: dict(v, provenance={"commit": "c0ffee", "dirty": False, "time_utc": time_utc,
                                 "load_average_1m": {"before": 1.0, "after": 2.0},
                                 "wall_seconds": 3.0}) for k, v in stages.items()}


def _trainer_sample(inline=15e9, async_=5e9, n0=16):
  return {"num_blocks": n0, "paper_refresh": "async",
          "modes": {"inline": {"peak_rss": inline}, "async": {"peak_rss": async_}},
          "provenance": {"commit": "c0ffee", "time_utc": "2026-11-27T20:00:00Z"}}


def test_summarize_names_the_stage_results_behind_fits_goals_and_host_sums():
  config = scale_bench.ScaleBenchConfig(sizes=[100_000, 1_000_000])
  sizes = {n: _stamped(_stages(n), f"2026-11-27T0{i}:00:00Z")
           for i, n in enumerate(config.sizes)}
  payload = scale_bench.summarize(config, {"VmHWM": 400e6}, sizes,
                                  {"annotation": {}, "embedding": None,
                                   "trainer": _trainer_sample()})
  json.dumps(payload)
  assert payload["provenance"]["1000000/index"]["time_utc"] == "2026-11-27T01:00:00Z"
  assert payload["provenance"]["sample/trainer"]["commit"] == "c0ffee"
  assert payload["fits"]["index.peak_rss"]["sources"] == [
      {"stage": "index", "commit": "c0ffee", "dirty": False, "blocks": n,
       "time_utc": f"2026-11-27T0{i}:00:00Z"} for i, n in enumerate(config.sizes)]
  assert payload["fits"]["lookup.mapped_bytes"]["sources"][0]["stage"] == "lookup_rest"
  assert payload["goals"]["figures_from"]["bm25.build_seconds"] == {
      "stage": "bm25", "commit": "c0ffee", "dirty": False, "blocks": 1_000_000,
      "time_utc": "2026-11-27T01:00:00Z"}
  host = payload["host_at_paper_scale"]
  assert host["refresher"]["sources"]["index.peak_rss"][1]["blocks"] == 1_000_000
  n, n0 = 13_353_718, 16
  pipeline_growth, index_growth = 1200 * (n - n0), 1100 * (n - n0)
  evaluator, cache, refresher = 800.0 * n, 600.0 * n, 1.5e9 + 1100 * n
  p = host["pretrain_process"]
  assert p["measured_at_blocks"] == n0 and p["paper_flagfile_refresh"] == "async"
  assert p["inline"]["process_peak_bytes"] == pytest.approx(
      15e9 + pipeline_growth + evaluator + index_growth, rel=1e-6)
  assert p["inline"]["host_peak_bytes"] == pytest.approx(
      15e9 + pipeline_growth + evaluator + index_growth + cache, rel=1e-6)
  assert p["async"]["training_peak_bytes"] == pytest.approx(5e9 + pipeline_growth + evaluator,
                                                            rel=1e-6)
  # Async, the job's process still builds the first index itself when none is live.
  assert p["async"]["first_index_build"] == pytest.approx(refresher, rel=1e-6)
  assert p["async"]["process_peak_bytes"] == pytest.approx(
      max(5e9 + pipeline_growth + evaluator, refresher), rel=1e-6)
  assert p["async"]["host_peak_bytes_with_refresher_beside"] == pytest.approx(
      p["async"]["host_peak_bytes"] + refresher, rel=1e-6)
  # Inline 56.4 GB + 8.0 GB of page cache misses 64 GB; async 31.7 GB + 8.0 GB fits.
  assert p["inline"]["met"] is False and p["async"]["met"] is True
  # Without the trainer stage: no process figures, the other sums as before.
  payload = scale_bench.summarize(config, {"VmHWM": 400e6}, sizes,
                                  {"annotation": {}, "embedding": None})
  assert "pretrain_process" not in payload["host_at_paper_scale"]


def test_the_first_index_built_in_the_job_can_be_its_peak():
  # A refresher larger than training: the job's process peaks building the first index.
  fits = {"pipeline.peak_rss": {"a": 1e9, "b": 0.0}, "index.peak_rss": {"a": 40e9, "b": 0.0}}
  p = scale_fit.pretrain_process_peaks(fits, _trainer_sample(inline=12e9, async_=5e9), 1e9, 2e9)
  assert p["async"]["training_peak_bytes"] == pytest.approx(6e9)
  assert p["async"]["process_peak_bytes"] == pytest.approx(40e9)
  assert p["async"]["host_peak_bytes"] == pytest.approx(42e9)
  assert p["inline"]["process_peak_bytes"] == pytest.approx(40e9)  # no index growth, 13e9 < 40e9


def test_the_trainer_stage_runs_the_main_job_at_the_paper_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  from benchmarks import scale_trainer  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import pretrain  # pylint: disable=g-import-not-at-top
  cmd = scale_trainer.pretrain_command("/tmp/w", "/tmp/c", "/tmp/a", "inline")
  assert cmd[1:3] == ["-m", "realm_tf.launch.pretrain"]
  fv = flags.FlagValues()
  pretrain.define_flags(fv)
  fv(["pretrain", *cmd[3:]])
  config = pretrain.config_from_flags(fv)
  # The paper's shapes and models; only what the CPU forces differs (each with its reason).
  assert (config.retriever_preset, config.reader_preset) == ("base", "base")
  assert (config.block_length, config.query_length, config.projection_size) == (288, 96, 128)
  assert config.num_candidates == 8 and fv.mixed_precision == "bfloat16"
  assert config.retriever_init is None and config.reader_init is None
  assert (config.batch_size, config.num_train_steps, config.refresh) == (1, 1, "inline")
  assert config.checkpoint_every == 1 and config.refresh_every_steps == 1
  assert scale_trainer.paper_refresh_mode() == "async"
  fv(["pretrain", *scale_trainer.pretrain_command("/tmp/w", "/tmp/c", "/tmp/a", "async")[3:]])
  assert pretrain.config_from_flags(fv).refresh == "async"
  with pytest.raises(ValueError):
    scale_trainer.pretrain_command("/tmp/w", "/tmp/c", "/tmp/a", "none")


def test_a_failed_mode_keeps_its_peak_and_exit_status(tmp_path):
  from benchmarks import scale_trainer  # pylint: disable=g-import-not-at-top
  # The real job, refused before any work: its corpus's manifest is not JSON.
  corpus = tmp_path / "corpus"
  corpus.mkdir()
  (corpus / "manifest.json").write_text("{")
  work = tmp_path / "w"
  r = scale_trainer.measure_mode(str(work), str(corpus), str(tmp_path / "annotations"), "async")
  assert r["rc"] != 0 and r["failed"].startswith(f"exit {r['rc']}")
  assert r["peak_rss"] > 100e6 and r["refresh"] == "async"
  assert "--refresh=async" in r["command"] and not work.exists()


def test_the_checkpoint_is_read_where_the_trainer_writes_it(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from benchmarks import scale_trainer  # pylint: disable=g-import-not-at-top
  ckpt = tf.train.Checkpoint(v=tf.Variable(tf.zeros([1000])))
  tf.train.CheckpointManager(ckpt, str(tmp_path / "checkpoints"), 1).save(checkpoint_number=3)
  r = scale_trainer.checkpoint_bytes(str(tmp_path))
  assert r["name"] == "ckpt-3" and 4000 <= r["bytes"] < 20000
  assert scale_trainer.checkpoint_bytes(str(tmp_path / "none")) == {}


def test_a_goal_whose_stage_failed_at_the_largest_size_reads_a_smaller_one():
  config = scale_bench.ScaleBenchConfig(sizes=[100_000, 1_000_000])
  sizes = {n: _stages(n) for n in config.sizes}
  sizes[1_000_000]["bm25"] = {"failed": "out of memory"}
  payload = scale_bench.summarize(config, {"VmHWM": 400e6}, sizes,
                                  {"annotation": {}, "embedding": None},
                                  lambda r: {"build_seconds_le_60": True})
  goal = payload["goals"]["bm25_at_1M"]
  assert goal["at_blocks"] == 100_000 and goal["met"] is False  # not measured at 1M
  assert payload["goals"]["figures_from_smaller_sizes"]["bm25.build_seconds"] == 100_000
  assert payload["goals"]["lookup_rest_bytes_per_block"]["met"] is True


def test_the_config_comes_from_the_command_line():
  parse = lambda *a: config_program.parse(  # pylint: disable=unnecessary-lambda-assignment
      scale_bench.ScaleBenchConfig, scale_bench.HELP, ["prog", *a])
  assert parse() == scale_bench.ScaleBenchConfig()
  assert parse("--sizes=2000,8000", "--rerun=index", "--work_dir=/tmp/s") == \
      scale_bench.ScaleBenchConfig(sizes=[2000, 8000], rerun=["index"], work_dir="/tmp/s")


def test_a_process_is_measured_by_the_kernel():
  p = procs.run_process([sys.executable, "-c",
                          "x = bytearray(300_000_000); x[::4096] = b'1' * len(x[::4096]); "
                          "print('RESULT {\"n\": 1}')"])
  assert p["rc"] == 0 and p["peak_rss"] >= 300e6
  assert procs.marked_json(p["stdout"], "RESULT ") == {"n": 1}
  assert procs.run_process([sys.executable, "-c", "raise SystemExit(3)"])["rc"] == 3


def test_mapped_file_pages_are_counted_per_file(tmp_path):
  path = str(tmp_path / "data.bin")
  np.arange(1 << 20, dtype=np.int64).tofile(path)  # 8 MiB
  data = np.memmap(path, np.int64, "r")
  assert int(data.sum()) == (1 << 20) * ((1 << 20) - 1) // 2
  pages = procs.mapped_file_memory(str(tmp_path))
  assert 7 << 20 <= pages["Rss"] <= 9 << 20
  assert pages["Anonymous"] == 0
  assert procs.mapped_file_memory(str(tmp_path / "other"))["Rss"] == 0
  status = procs.process_memory()
  assert status["VmHWM"] >= status["VmRSS"] > 0


def _tiny_text():
  return {"sentences": [f"Sentence {i}." for i in range(40)],
          "sentence_pieces": [5 + (7 * i) % 60 for i in range(40)],
          "titles": ["A", "B c"], "title_pieces": [1, 2]}


def test_synthetic_documents_are_deterministic_and_a_prefix_at_every_size():
  text = _tiny_text()
  docs = list(scale_corpus.synthetic_documents(0, 6, text, seed=3, blocks_per_document=4))
  assert docs == list(scale_corpus.synthetic_documents(0, 6, text, seed=3,
                                                       blocks_per_document=4))
  assert docs[2:] == list(scale_corpus.synthetic_documents(2, 6, text, seed=3,
                                                           blocks_per_document=4))
  assert docs != list(scale_corpus.synthetic_documents(0, 6, text, seed=4,
                                                       blocks_per_document=4))
  assert [d["id"] for d in docs[:2]] == ["synthetic-000000000", "synthetic-000000001"]
  assert scale_corpus.documents_for(1_000_000, 8) == 125_000
  assert scale_corpus.documents_for(1001, 8) == 126


def test_sentence_groups_fill_blocks_and_pack_back_greedily():
  text = _tiny_text()
  pieces = np.asarray(text["sentence_pieces"])
  for i in range(20):
    title, groups = scale_corpus.document_groups(i, 0, pieces, np.asarray(text["title_pieces"]), 5)
    budget = 288 - 3 - text["title_pieces"][title]
    sizes = [int(pieces[g].sum()) for g in groups]
    assert len(groups) == 5 and max(sizes) <= budget
    assert min(sizes) >= budget - 60  # within a sentence of full
    for prev, nxt in zip(groups, groups[1:]):  # greedy packing would not pull it back
      assert pieces[nxt[0]] > budget - pieces[prev].sum()


def test_the_block_builder_cuts_shipped_sentences_into_the_drawn_blocks(tmp_path):
  from realm_tf.data import blocking  # pylint: disable=g-import-not-at-top
  cache = str(tmp_path / "text.json")
  text = scale_corpus.shipped_text(cache, max_documents=40)
  assert os.path.exists(cache) and scale_corpus.shipped_text(cache) == text
  assert len(text["sentences"]) > 100
  docs = list(scale_corpus.synthetic_documents(0, 12, text, blocks_per_document=3))
  blocks = blocking.Blocker().split_batch([(d["title"], d["text"]) for d in docs])
  assert [len(b) for b in blocks] == [3] * 12
  lengths = [blocking.packed_length(b) for bs in blocks for b in bs]
  assert max(lengths) <= 288 and np.mean(lengths) >= 270
