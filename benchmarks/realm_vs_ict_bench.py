r"""The paper's claim in miniature: does REALM pre-training beat ICT alone, from the same start?

    python -m benchmarks.realm_vs_ict_bench          # the defaults: ≈ 41 min on 2 idle CPU cores
    python -m benchmarks.realm_vs_ict_bench --articles=4 --seeds=0,1 --steps=2 \
        --reader_warmup_steps=2 --refresh_every_steps=1 --heldout_queries=8 --eval_questions=64 \
        --conditions=realm_salient,realm_frozen_retriever,ict_continued \
        --work_dir=/tmp/bench_smoke --output_name=realm_vs_ict_smoke      # smoke test, 4.6 min
    python -m benchmarks.realm_vs_ict_bench \
        --flagfile=benchmarks/configs/realm_vs_ict_tiny_ict.flags   # the former start, ≈ 57 min

One shared start, the main job's own stages (`pretrain_job.run` with 0 REALM steps: the
retriever's start with its index bundle v1, and the reader warm-up), then for every seed `--steps`
more optimizer steps of each condition (`CONDITIONS`): REALM with salient-span, random-span or
random-token masking, REALM with the retriever frozen, REALM with the paper's marginal retriever
objective, and ICT alone continued from the shared retriever. Equal budget = equal optimizer steps,
each from the same weights with a fresh optimizer at its method's learning rate. Every condition
and seed is measured by one held-out evaluator configuration at the start, at every refresh and at
the end: zero-shot recall@5/@20 of the subset's SQuAD-open dev questions (BM25 beside it) and
held-out retrieval utility with salient-span masking; per condition, means and 95% t-intervals
over seeds, and `goals` compares the intervals. The JSON states every definition (`budget`,
`measurement`, `goal_definitions`).

Corpus: the first --articles articles of the shipped SQuAD v1.1 dev set (the default 8 hold 3
SQuAD-open dev articles; fewer than 4 hold none and are refused). Writes
benchmarks/results/<--output_name>.json; re-running with the same --work_dir skips (or resumes)
every finished stage. Settings: `RealmVsIctConfig`; `run(config)` does the work.
"""
import dataclasses
import gc
import json
import math
import os
import shutil
import time
from typing import Dict, List, Optional

from absl import app, logging

from benchmarks import common
from realm_tf.config_base import ConfigBase

CONDITIONS = ("realm_salient", "realm_random_span", "realm_random_uniform",
              "realm_frozen_retriever", "realm_marginal_objective", "ict_continued")
METRICS = ("question_recall@5", "question_recall@20", "heldout_retrieval_utility",
           "heldout_null_posterior", "heldout_mlm_accuracy", "heldout_null_mlm_accuracy",
           "question_hub_share@5", "bm25_question_recall@5", "bm25_question_recall@20")


MEASURES = ("realm_tf/", "launch/configs/")


@dataclasses.dataclass
class RealmVsIctConfig(ConfigBase):
  """One run's corpus subset, shared start, budget and model sizes, seeds and conditions,
  held-out evaluation sizes, work dir and result name."""
  work_dir: str = "runs/realm_vs_ict"
  articles: int = 8
  seeds: List[str] = dataclasses.field(default_factory=lambda: ["0", "1", "2"])
  steps: int = 40
  # Per-condition step counts ("name:steps") that replace --steps, for an equal wall-clock budget.
  condition_steps: List[str] = dataclasses.field(default_factory=list)
  # The wall-clock budget per run the condition steps were chosen for (0: equal steps).
  budget_seconds: float = 0.0
  # The shared start is the main job's (2026-11-26): all-MiniLM-L6-v2 as both retriever towers
  # in its own geometry, no ICT (`ict_steps=0`: the start is the initial towers as they are), so
  # `ict_continued` is ICT from MiniLM at `ict_learning_rate`. The former start (a tiny retriever
  # trained by ICT from random weights) is benchmarks/configs/realm_vs_ict_tiny_ict.flags.
  ict_steps: int = 0
  ict_batch_size: int = 64
  ict_learning_rate: float = 2e-5
  reader_warmup_steps: int = 100
  # The shared reader: its encoder, warm start (empty: random weights) and MLM warm-up.
  reader_preset: str = "minilm"
  reader_init: Optional[str] = "minilm"
  reader_warmup_batch_size: int = 16
  reader_warmup_learning_rate: float = 5e-4
  reader_warmup_distractor_rate: float = 0.5
  batch_size: int = 4
  num_candidates: int = 4
  learning_rate: float = 1e-5
  retriever_preset: str = "minilm"
  retriever_init: Optional[str] = "minilm"
  retriever_lr_multiplier: float = 1.0
  retriever_objective: str = "helpful"
  null_bias_learning_rate: float = 0.3
  refresh_every_steps: int = 20
  heldout_queries: int = 64
  eval_questions: int = 1000
  conditions: List[str] = dataclasses.field(default_factory=lambda: list(CONDITIONS))
  block_length: int = 128
  query_length: int = 32
  output_name: str = "realm_vs_ict"
  allow_dirty: bool = False


HELP = {
    "allow_dirty": common.ALLOW_DIRTY_HELP,
    "work_dir": "Where the shared start and every run go.",
    "articles": "First SQuAD v1.1 dev articles forming the corpus.",
    "seeds": "Seeds of the conditions (data order, masking, model initialisation, dropout).",
    "steps": "Optimizer steps of every condition after the shared start.",
    "condition_steps": "Steps of named conditions instead of --steps (name:steps,...), chosen "
                       "from a timed run so that every condition gets --budget_seconds.",
    "budget_seconds": "Wall seconds of training per run the condition steps aim at; the result "
                      "records each run's seconds against it (0: equal steps).",
    "ict_steps": "Shared ICT warm-start steps.",
    "ict_batch_size": "ICT batch size (shared warm start and ict_continued).",
    "ict_learning_rate": "ICT peak learning rate (both ICT stages).",
    "reader_warmup_steps": "Shared reader MLM warm-up steps.",
    "reader_preset": "The shared reader's encoder.",
    "reader_init": "The reader's warm start (empty: random weights, then the MLM warm-up).",
    "reader_warmup_batch_size": "Shared reader warm-up batch size.",
    "reader_warmup_learning_rate": "Shared reader warm-up peak learning rate.",
    "reader_warmup_distractor_rate": "Share of warm-up queries reading a block that does not "
                                     "hold their span.",
    "batch_size": "REALM batch size (masked queries).",
    "num_candidates": "REALM candidates per query (null + retrieved).",
    "learning_rate": "REALM peak learning rate (the main job's).",
    "retriever_preset": "The shared start's retriever encoder.",
    "retriever_init": "The retriever's warm start before the shared ICT steps (empty: random "
                      "weights).",
    "retriever_lr_multiplier": "REALM's retriever rate / the reader's.",
    "retriever_objective": "REALM's retriever objective outside realm_marginal_objective "
                           "(retrieved|helpful).",
    "null_bias_learning_rate": "REALM's learned null-document bias rate (0: none).",
    "refresh_every_steps": "REALM inline index refresh (and eval) period.",
    "heldout_queries": "Held-out masked sentences per evaluation.",
    "eval_questions": "SQuAD-open dev questions of the subset (at most).",
    "conditions": "Conditions to run.",
    "block_length": "Block wordpieces.",
    "query_length": "Query wordpieces.",
    "output_name": "Result name: benchmarks/results/<output_name>.json.",
}
# The settings the result records (`settings`), in this order.
SETTINGS = ("articles", "seeds", "steps", "condition_steps", "budget_seconds",
            "retriever_preset", "retriever_init", "ict_steps",
            "ict_batch_size", "ict_learning_rate", "reader_preset", "reader_init",
            "reader_warmup_steps", "reader_warmup_batch_size", "reader_warmup_learning_rate",
            "reader_warmup_distractor_rate", "batch_size", "num_candidates", "learning_rate",
            "refresh_every_steps", "heldout_queries", "eval_questions", "conditions",
            "block_length", "query_length")


def t975(df: int) -> float:
  """The 0.975 quantile of Student's t with `df` degrees of freedom."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  return float(stats.t.ppf(0.975, df))


def interval(values: List[float]) -> Dict:
  """Mean and 95% t-interval over seeds (no interval for one seed)."""
  n = len(values)
  mean = sum(values) / n
  out = {"n": n, "mean": mean, "values": values}
  if n > 1:
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t975(n - 1) * sd / math.sqrt(n)
    out.update(sd=sd, ci95=[mean - half, mean + half])
  else:
    out.update(sd=None, ci95=None)
  return out


def condition_steps(config: RealmVsIctConfig) -> Dict[str, int]:
  """{condition: its optimizer steps}: --steps, or the step count --condition_steps names."""
  out = {name: config.steps for name in config.conditions}
  for item in config.condition_steps:
    name, _, steps = item.partition(":")
    if name not in CONDITIONS or not steps.isdigit():
      raise app.UsageError(f"--condition_steps: {item!r} is not <condition>:<steps> with a "
                           f"condition of {CONDITIONS}.")
    out[name] = int(steps)
  return out


def budget_check(runs: Dict[str, Dict[str, Dict]], budget_seconds: float) -> Dict:
  """Each condition's training seconds per run against the budget: {condition: {"mean_seconds",
  "over_budget": mean / budget}}, and whether every run is within 15% of the budget (None with
  no budget)."""
  out: Dict = {"budget_seconds": budget_seconds}
  within = []
  for name, per_seed in runs.items():
    seconds = [r["train_seconds"] for r in per_seed.values()]
    mean = sum(seconds) / len(seconds)
    out[name] = {"mean_seconds": round(mean, 1),
                 "over_budget": round(mean / budget_seconds, 3) if budget_seconds else None}
    within += [abs(t / budget_seconds - 1) <= 0.15 for t in seconds] if budget_seconds else []
  out["every_run_within_15%"] = all(within) if budget_seconds else None
  return out


def job_config(config: RealmVsIctConfig, shared_dir: str, squad: str):
  """The main job's configuration of the shared start (ICT + reader warm-up, no REALM steps) at
  `config`'s sizes, laid out under `shared_dir`."""
  from realm_tf.stages.pretrain_job import PretrainJobConfig  # pylint: disable=g-import-not-at-top
  return PretrainJobConfig(
      work_dir=shared_dir, inputs=[squad], model_dir=os.path.join(shared_dir, "unused_realm"),
      block_length=config.block_length, query_length=config.query_length,
      ict_steps=config.ict_steps, ict_batch_size=config.ict_batch_size,
      ict_learning_rate=config.ict_learning_rate, reader_warmup_steps=config.reader_warmup_steps,
      reader_preset=config.reader_preset, reader_init=config.reader_init,
      reader_warmup_batch_size=config.reader_warmup_batch_size,
      reader_warmup_learning_rate=config.reader_warmup_learning_rate,
      reader_warmup_distractor_rate=config.reader_warmup_distractor_rate,
      batch_size=config.batch_size, num_train_steps=0, learning_rate=config.learning_rate,
      num_candidates=config.num_candidates, refresh_every_steps=config.refresh_every_steps,
      seed=0, heldout_queries=config.heldout_queries, num_eval_questions=config.eval_questions,
      retriever_preset=config.retriever_preset, retriever_init=config.retriever_init,
      retriever_lr_multiplier=config.retriever_lr_multiplier,
      retriever_objective=config.retriever_objective,
      null_bias_learning_rate=config.null_bias_learning_rate)


def compute_goals(summary: Dict, s0: Dict) -> Dict[str, Optional[bool]]:
  """One boolean per goal (None where a condition was not run or has one seed) from the
  per-condition `summary` (95% intervals over seeds) and the shared start's record `s0`."""

  def ci(name, metric):
    return (summary.get(name, {}).get(metric) or {}).get("ci95")

  def mean(name, metric):
    return (summary.get(name, {}).get(metric) or {}).get("mean")

  def beats(a, b, metric):
    """a's mean above b's and the 95% intervals do not overlap (a.lower > b.upper)."""
    ca, cb = ci(a, metric), ci(b, metric)
    return None if ca is None or cb is None else bool(
        mean(a, metric) > mean(b, metric) and ca[0] > cb[1])

  def at_least(a, b, metric):
    """a ≥ b beyond the intervals: a's lower bound ≥ b's upper bound."""
    ca, cb = ci(a, metric), ci(b, metric)
    return None if ca is None or cb is None else bool(ca[0] >= cb[1])

  def above(a, metric, value):
    """a's whole 95% interval above a fixed value (e.g. the shared start)."""
    ca = ci(a, metric)
    return None if ca is None or value is None else bool(ca[0] > value)

  r5 = "question_recall@5"
  return {
      "realm_beats_ict_continued": beats("realm_salient", "ict_continued", r5),
      "realm_beats_ict_continued_recall@20": beats("realm_salient", "ict_continued",
                                                   "question_recall@20"),
      "salient_ge_random_span": at_least("realm_salient", "realm_random_span", r5),
      "random_span_ge_uniform": at_least("realm_random_span", "realm_random_uniform", r5),
      "salient_ge_random_span_utility": at_least("realm_salient", "realm_random_span",
                                                 "heldout_retrieval_utility"),
      "random_span_ge_uniform_utility": at_least("realm_random_span", "realm_random_uniform",
                                                 "heldout_retrieval_utility"),
      "realm_beats_frozen_retriever": beats("realm_salient", "realm_frozen_retriever", r5),
      "realm_beats_frozen_retriever_utility": beats("realm_salient", "realm_frozen_retriever",
                                                    "heldout_retrieval_utility"),
      "realm_beats_ict_continued_utility": beats("realm_salient", "ict_continued",
                                                 "heldout_retrieval_utility"),
      "realm_objective_ge_marginal": at_least("realm_salient", "realm_marginal_objective",
                                              r5),
      "realm_recall@5_above_start": above("realm_salient", r5, s0.get(r5)),
      "ict_continued_recall@5_above_start": above("ict_continued", r5, s0.get(r5)),
      "realm_utility_above_start": above("realm_salient", "heldout_retrieval_utility",
                                         s0.get("heldout_retrieval_utility")),
      "realm_utility_positive": above("realm_salient", "heldout_retrieval_utility", 0.0),
      "realm_recall@5_above_bm25": above("realm_salient", r5, s0.get("bm25_question_recall@5")),
  }


def copy_index(src: str, dst: str) -> None:
  """Copies the shared bundle(s) into a run's own index dir (once, atomically)."""
  from realm_tf.io import publish  # pylint: disable=g-import-not-at-top
  if os.path.exists(dst):
    return
  with publish.publish_dir(dst) as tmp:
    shutil.copytree(src, tmp, dirs_exist_ok=True)


def run(config: RealmVsIctConfig) -> str:
  """Runs the shared start and every condition x seed of `config`, measures them, and writes
  benchmarks/results/<config.output_name>.json; returns that file's path."""
  provenance = common.Provenance(config.allow_dirty)  # refuses a dirty checkout unless allowed
  logging.set_verbosity(logging.INFO)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realm_tf.data.squad_open import load_squad_questions, split_of  # pylint: disable=g-import-not-at-top
  from realm_tf.evaluation.heldout import HeldOutConfig, HeldOutEvaluator, scalar_figures  # pylint: disable=g-import-not-at-top
  from realm_tf.io import atomic  # pylint: disable=g-import-not-at-top
  from realm_tf.io.work_dir import WorkDir  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import embedder_export  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.refresh import IndexRefresher, RefreshConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import pretrain_job  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import ict_experiment  # pylint: disable=g-import-not-at-top
  from realm_tf.stages.ict_experiment import IctConfig, IctJobConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.stages.realm_experiment import HELDOUT_LOG, PretrainConfig, RealmExperiment  # pylint: disable=g-import-not-at-top

  unknown = [c for c in config.conditions if c not in CONDITIONS]
  if unknown:
    raise app.UsageError(f"Unknown conditions {unknown}; choose from {CONDITIONS}.")
  seeds = [int(s) for s in config.seeds]
  steps_of = condition_steps(config)
  t_start = time.time()
  w = os.path.abspath(config.work_dir)
  os.makedirs(w, exist_ok=True)
  strategy = tf.distribute.get_strategy()

  # -- data: the subset must hold SQuAD-open dev-split articles (the questions measured) --------
  squad = os.path.join(w, "squad-dev-subset.json")
  data = common.squad_subset(squad, config.articles)
  dev_titles = [t for t in data.pop("titles") if split_of(t) == "dev"]
  dev_questions = load_squad_questions(squad, split="dev")
  if not dev_questions:
    raise app.UsageError(f"The first {config.articles} articles hold no SQuAD-open dev-split "
                         "article (the first is the 4th); raise --articles.")
  data.update(dev_articles=dev_titles, dev_questions=len(dev_questions),
              eval_questions=min(config.eval_questions, len(dev_questions)))

  # -- the shared start: corpus, annotations, ICT + bundle v1, reader warm-up (the main job) ----
  job = job_config(config, os.path.join(w, "shared"), squad)
  shared = job.layout()  # <w>/shared/{corpus,annotations,ict,index,reader_warmup}
  t0 = time.time()
  prep = pretrain_job.run(job, strategy)
  timing = {"shared_start_seconds": round(time.time() - t0, 1)}
  data.update(blocks=prep["corpus_blocks"], annotated_records=prep["annotated_records"])
  ict_export = embedder_export.export_path(shared.ict, config.ict_steps)
  retriever_config = pretrain_job.retriever_config(job)
  heldout = HeldOutConfig(fraction=job.heldout_fraction, num_queries=config.heldout_queries,
                          num_questions=config.eval_questions, squad_path=squad)

  def realm_config(**overrides) -> PretrainConfig:
    """The main job's REALM stage over --steps, with a condition's overrides."""
    steps = overrides.pop("num_train_steps", config.steps)
    base = dict(num_train_steps=steps, warmup_steps=steps // 10, masking="salient", seed=0,
                refresh="inline", checkpoint_every=max(config.refresh_every_steps, 1))
    base.update(overrides)
    return dataclasses.replace(pretrain_job.pretrain_config(job), **base)

  def realm_run(run_dir: WorkDir, retriever_init: str,
                start_record: Optional[Dict] = None, **overrides) -> Dict:
    """Runs a REALM experiment in `run_dir` (0 steps: only a measurement) on the shared corpus,
    every held-out figure by the common evaluator; its held-out log, start, end and scalars.
    `start_record` (the shared start's measurement) is recorded as its step 0 instead of
    measuring the same weights again."""
    pretrain = realm_config(**overrides)
    model_dir = run_dir.realm
    refresher = IndexRefresher(RefreshConfig(model_dir=model_dir, corpus_dir=shared.corpus,
                                             index_dir=run_dir.index, min_recall=job.min_recall),
                               strategy=strategy) if pretrain.refresh == "inline" else None
    experiment = RealmExperiment(pretrain, shared.corpus, shared.annotations, run_dir.index,
                                 model_dir, strategy, refresher=refresher)
    # One yardstick for every condition: held-out *salient* masked sentences + dev questions.
    experiment.evaluator = HeldOutEvaluator(
        heldout, shared.annotations, shared.corpus,
        dataclasses.replace(experiment.masking_config, mode="salient"), experiment.tokenizer,
        experiment.lookup, experiment.pipeline_config, with_questions=True)
    log_path = os.path.join(model_dir, HELDOUT_LOG)
    if start_record is not None and not experiment.trainer.manager.latest_checkpoint and \
        not os.path.exists(log_path):
      atomic.write_text(log_path, json.dumps(start_record, sort_keys=True) + "\n")
    t = time.time()
    scalars = experiment.train(retriever_init=retriever_init, reader_init=shared.reader)
    log = [scalar_figures(r) for r in experiment.heldout_log()]  # per-sentence lists left out
    out = {"start": log[0], "end": log[-1], "heldout": log,
           "train": {k: v for k, v in scalars.items() if isinstance(v, (int, float))},
           "train_seconds": round(time.time() - t, 1)}
    del experiment
    gc.collect()
    return out

  # -- the shared start, measured once (also each REALM run's step 0) ---------------------------
  start_dir = WorkDir(os.path.join(w, "start"))  # <w>/start/{index,realm}
  copy_index(shared.index, start_dir.index)
  start = realm_run(start_dir, ict_export, num_train_steps=0, refresh="none")
  timing["start_measurement_seconds"] = start["train_seconds"]

  runs: Dict[str, Dict[str, Dict]] = {}
  for name in config.conditions:
    runs[name] = {}
    for seed in seeds:
      logging.info("=== %s, seed %d ===", name, seed)
      # <w>/<name>/seed<s>/{index,realm,ict}
      run_dir = WorkDir(os.path.join(w, name, f"seed{seed}"))
      t = time.time()
      if name == "ict_continued":
        ict_dir = run_dir.ict
        steps = steps_of[name]
        ict = ict_experiment.run(IctJobConfig(
            IctConfig(retriever=retriever_config, batch_size=config.ict_batch_size,
                      num_train_steps=steps, learning_rate=config.ict_learning_rate,
                      warmup_steps=steps // 10, seed=seed, checkpoint_every=steps,
                      heldout_fraction=job.heldout_fraction),
            corpus_dir=shared.corpus, model_dir=ict_dir, init=ict_export), strategy)
        train_seconds = round(time.time() - t, 1)
        refresher = IndexRefresher(
            RefreshConfig(model_dir=ict_dir, corpus_dir=shared.corpus, index_dir=run_dir.index,
                          min_recall=job.min_recall), strategy=strategy)
        if refresher.live_bundle() is None:
          refresher.refresh(ict["export"])
        result = realm_run(run_dir, ict["export"], num_train_steps=0, refresh="none", seed=seed)
        result["train"] = {k: v for k, v in ict.items() if isinstance(v, (int, float))}
        result["train_seconds"] = train_seconds
        result["start"] = start["start"]
        result["heldout"] = [start["start"], dict(result["end"], ict_steps_after_start=steps)]
      else:
        copy_index(shared.index, run_dir.index)
        overrides = dict(seed=seed, num_train_steps=steps_of[name])
        if name == "realm_frozen_retriever":
          overrides.update(train_retriever=False, refresh="none")
        elif name == "realm_marginal_objective":
          overrides["model"] = dataclasses.replace(pretrain_job.pretrain_config(job).model,
                                                   retriever_objective="marginal")
        else:
          overrides["masking"] = name[len("realm_"):]
        result = realm_run(run_dir, ict_export, start_record=start["start"], **overrides)
      result["seconds"] = round(time.time() - t, 1)
      runs[name][str(seed)] = result
      logging.info("%s seed %d end: %s", name, seed,
                   {k: result["end"].get(k) for k in METRICS[:3]})

  # -- statistics over seeds and the goals ------------------------------------------------------
  summary = {name: {m: interval([r["end"][m] for r in per_seed.values()])
                    for m in METRICS if all(m in r["end"] for r in per_seed.values())}
             for name, per_seed in runs.items()}
  for name, per_seed in runs.items():
    for m in ("question_recall@5", "question_recall@20", "heldout_retrieval_utility"):
      if m in summary[name]:
        summary[name][f"{m}_change_from_start"] = interval(
            [r["end"][m] - r["start"][m] for r in per_seed.values()])

  goals = compute_goals(summary, start["start"])
  goal_definitions = {
      "beats (realm_beats_*)": "mean(A) > mean(B) and the 95% t-intervals over seeds do not "
                               "overlap: lower(A) > upper(B).",
      "ge (*_ge_*)": "A >= B beyond the intervals: lower(A) >= upper(B) (95% t-intervals).",
      "above_start / positive / above_bm25": "the whole 95% interval of A's final value above "
                                             "the shared start's value / 0 / BM25's recall on "
                                             "the same questions.",
      "metric": "question_recall@5 unless the goal names another (*_utility: held-out "
                "retrieval utility); final values (end of run).",
      "realm_objective_ge_marginal": "realm_salient (--retriever_objective) >= "
                                     "realm_marginal_objective (the paper's).",
      "null": "a condition of the goal was not run, or has fewer than 2 seeds.",
  }

  timing["total_seconds"] = round(time.time() - t_start, 1)
  timing["per_condition_mean_seconds"] = {
      name: round(sum(r["seconds"] for r in per_seed.values()) / len(per_seed), 1)
      for name, per_seed in runs.items()}
  timing["per_condition_mean_train_seconds"] = {
      name: round(sum(r["train_seconds"] for r in per_seed.values()) / len(per_seed), 1)
      for name, per_seed in runs.items()}
  return common.write_result(config.output_name, provenance=provenance, payload={
      "settings": {k: getattr(config, k) for k in SETTINGS},
      "job": {k: getattr(job, k) for k in ("retriever_preset", "retriever_pooling",
                                           "reader_init", "reader_warmup_batch_size",
                                           "reader_warmup_learning_rate", "heldout_fraction",
                                           "min_recall", "retrieval_score_scale",
                                           "reader_warmup_evidence", "retriever_objective",
                                           "retriever_lr_multiplier", "null_bias_learning_rate")},
      "budget": {
          "definition": "Equal optimizer steps after the shared start (or, with "
                        "--condition_steps, each condition's own count, chosen so that every "
                        "run trains for --budget_seconds: `wall_clock` compares each run's "
                        "train_seconds, REALM's with its inline refreshes and held-out "
                        "evaluations, ICT's without its one bundle build): every condition runs "
                        "its steps from the same retriever (the shared start's: "
                        "--retriever_init, then --ict_steps of ICT; bundle v1) and the same "
                        "warmed-up reader, with a fresh optimizer and a schedule over its steps "
                        "(10% linear warm-up, linear decay) at its method's learning rate "
                        "(REALM: --learning_rate, ICT: --ict_learning_rate). A REALM step is "
                        "--batch_size "
                        "masked queries x --num_candidates blocks through the reader; an ICT "
                        "step is --ict_batch_size query/block pairs (in-batch negatives) through "
                        "the retriever only; wall seconds per run are in runs.*.train_seconds.",
          "steps_after_shared_start": steps_of,
          "wall_clock": budget_check(runs, config.budget_seconds),
          "shared_start": {"ict_steps": config.ict_steps,
                           "reader_warmup_steps": config.reader_warmup_steps, "seed": 0}},
      "measurement": {
          "question_recall": "SQuAD-open dev-split questions of the subset (article-hash split, "
                             "never trained on) against their gold paragraphs' blocks; exact "
                             "search over the run's final index bundle; BM25 on the same "
                             "questions beside it.",
          "heldout": "Held-out blocks' sentences (heldout_fraction of blocks by id, never "
                     "training queries), masked with SALIENT-span masking and the evaluation "
                     "seed for every condition (the same sentences for all); retrieval utility "
                     "= log p(y|x) - log p(y|null, x) through the run's final bundle and model.",
          "start": "The shared start (shared retriever + bundle v1 + shared warmed-up "
                   "reader) measured once by a REALM experiment of 0 steps; it is every REALM "
                   "run's step-0 record and the start of ict_continued.",
          "ict_continued": "A fresh ICT run warm-started from the shared retriever export (fresh "
                           "optimizer, like every REALM run; its seed sets the data order), a "
                           "bundle built from its export; held-out figures pair that retriever "
                           "and bundle with the shared warmed-up reader (not trained further), "
                           "measured by a REALM experiment of 0 steps, the same code path as the "
                           "start's measurement.",
          "realm_frozen_retriever": "train_retriever=False and refresh='none' (its index "
                                    "cannot change); its question recall therefore equals the "
                                    "start's.",
          "realm_marginal_objective": "realm_salient with the paper's retriever objective "
                                      "(RealmConfig.retriever_objective='marginal'); "
                                      f"realm_salient uses {config.retriever_objective!r}.",
          "interval": "95% t-interval over seeds: mean +- t(0.975, n-1) * sd / sqrt(n).",
      },
      "data": data,
      "shared_start": {"ict": prep.get("ict"), "reader_warmup": prep.get("reader_warmup"),
                       "heldout": start["start"]},
      "summary": summary,
      "goals": goals, "goal_definitions": goal_definitions,
      "runs": runs,
      "timing": timing,
  })


if __name__ == "__main__":
  from realm_tf.launch import config_program  # pylint: disable=g-import-not-at-top
  config_program.main(RealmVsIctConfig, HELP, run)
