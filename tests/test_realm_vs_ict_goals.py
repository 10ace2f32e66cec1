"""The paper's-claim benchmark judges its goals by 95% intervals over seeds: a goal holds only
when the intervals separate, is None when a condition is missing, and the committed results'
goals are what `compute_goals` gives for their own figures."""

import json
import os

import pytest

from benchmarks import realm_vs_ict_bench as bench

RESULTS = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "results")


def _summary(**values):
  """A summary of conditions -> {metric: interval over seeds}."""
  return {name: {metric: bench.interval(v) for metric, v in metrics.items()}
          for name, metrics in values.items()}


def test_interval_is_the_t_interval():
  out = bench.interval([1.0, 2.0, 3.0])
  assert out["mean"] == 2.0 and out["sd"] == 1.0
  half = 4.302652729911275 / 3 ** 0.5  # t(0.975, 2) * sd / sqrt(n)
  assert abs(out["ci95"][0] - (2.0 - half)) < 1e-3 and abs(out["ci95"][1] - (2.0 + half)) < 1e-3
  assert bench.interval([5.0])["ci95"] is None


def test_beats_needs_separate_intervals():
  u = "heldout_retrieval_utility"
  start = {"question_recall@5": 0.5, u: 0.1, "bm25_question_recall@5": 0.9}
  separate = _summary(realm_salient={u: [0.12, 0.121, 0.122]},
                      realm_frozen_retriever={u: [0.097, 0.098, 0.096]},
                      ict_continued={u: [0.05, 0.15, 0.12]})
  goals = bench.compute_goals(separate, start)
  assert goals["realm_beats_frozen_retriever_utility"] is True
  assert goals["realm_beats_ict_continued_utility"] is False  # lower mean, overlapping interval
  assert goals["realm_utility_above_start"] is True and goals["realm_utility_positive"] is True
  assert goals["realm_beats_frozen_retriever"] is None  # no recall measured
  assert goals["salient_ge_random_span"] is None  # condition not run
  one_seed = _summary(realm_salient={u: [0.2]}, realm_frozen_retriever={u: [0.1]})
  assert bench.compute_goals(one_seed, start)["realm_beats_frozen_retriever_utility"] is None


def test_committed_goals_follow_from_committed_figures():
  with open(os.path.join(RESULTS, "realm_vs_ict.json")) as f:
    result = json.load(f)
  assert result["goals"] == bench.compute_goals(result["summary"],
                                                result["shared_start"]["heldout"])


@pytest.mark.slow  # about 2 minutes: the benchmark end to end at a toy size, one seed
def test_the_benchmark_runs_end_to_end_at_a_toy_size(tmp_path, monkeypatch):
  """The whole benchmark (shared start, two REALM conditions and ICT continued) runs and writes
  its result: it broke once when a stage attribute it reads was renamed, and no --help check
  saw it. The frozen retriever's question recall must equal the start's (its index cannot
  change), and each run records the steps it was given."""
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(common, "RESULTS_DIR", str(tmp_path / "results"))
  config = bench.RealmVsIctConfig(
      work_dir=str(tmp_path / "work"), articles=4, seeds=["0"], steps=2, reader_warmup_steps=2,
      refresh_every_steps=1, heldout_queries=8, eval_questions=64,
      conditions=["realm_salient", "realm_frozen_retriever", "ict_continued"],
      output_name="smoke", allow_dirty=True)
  with open(bench.run(config)) as f:
    result = json.load(f)
  start = result["shared_start"]["heldout"]
  assert sorted(result["runs"]) == sorted(config.conditions)
  for name in config.conditions:
    end = result["runs"][name]["0"]["end"]
    assert 0.0 <= end["question_recall@5"] <= end["question_recall@20"] <= 1.0, name
  frozen = result["runs"]["realm_frozen_retriever"]["0"]
  assert frozen["end"]["question_recall@5"] == start["question_recall@5"]
  assert frozen["end"]["step"] == 2 and result["runs"]["realm_salient"]["0"]["end"]["step"] == 2
