"""The paper's-claim benchmark judges its goals by 95% intervals over seeds: a goal holds only
when the intervals separate, is None when a condition is missing, and the committed results'
goals are what `compute_goals` gives for their own figures."""

import json
import os

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
