r"""REALM input pipeline rate vs the trainer's consumption rate (the ratio must stay above 2).

  python -m benchmarks.input_pipeline_bench [--presets=tiny,minilm] [--articles=8]

The whole pre-training input pipeline (masking, query embedding with the live bundle's embedder,
ScaNN search, own block dropped, null document prepended, featurized batches), exactly as
`RealmExperiment.make_dataset` builds it, is timed alone, then the train step alone on its batches,
then the two together, for each preset: ratio = pipeline queries/s / train-step queries/s. On an
accelerator the trainer runs there and the pipeline on the host, so the ratio decides whether
training is input-bound. The corpus is the first --articles SQuAD dev articles, the index built by
untrained towers (retrieval quality does not change the cost). Writes
benchmarks/results/input_pipeline.json. Settings: `InputPipelineBenchConfig`; `run(config)`.
"""
import dataclasses
import os
import time
from typing import List

from absl import logging

from benchmarks import common
from realm_tf.config_base import ConfigBase


MEASURES = ("realm_tf/data/", "realm_tf/retrieval/", "realm_tf/modeling/", "realm_tf/text/",
            "realm_tf/training/", "realm_tf/stages/pretrain_job.py",
            "realm_tf/stages/realm_experiment.py")


@dataclasses.dataclass
class InputPipelineBenchConfig(ConfigBase):
  """The corpus and presets built under `work_dir`, and how much is timed at which batch."""
  work_dir: str = "runs/input_pipeline_bench"
  articles: int = 8
  presets: List[str] = dataclasses.field(default_factory=lambda: ["tiny", "minilm"])
  batch_size: int = 4
  num_candidates: int = 8
  pipeline_batches: int = 20
  steps: int = 5
  allow_dirty: bool = False


HELP = {
    "allow_dirty": common.ALLOW_DIRTY_HELP,
    "work_dir": "Corpus, indexes, model dirs.",
    "articles": "SQuAD dev articles whose paragraphs form the corpus.",
    "presets": "Encoder presets.",
    "batch_size": "Queries per batch.",
    "num_candidates": "Null document + retrieved blocks per query.",
    "pipeline_batches": "Batches timed through the pipeline alone.",
    "steps": "Train steps timed (after 2 warm-up steps).",
}


def measure_preset(config: InputPipelineBenchConfig, preset: str, corpus: str,
                   annotations: str) -> dict:
  """Builds `preset`'s index of `corpus` (untrained towers) and a RealmExperiment over it, then
  times the pipeline alone, the train step alone and the two together; returns the rates."""
  from realm_tf.modeling.realm_pretrainer import RealmConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.retriever import RetrieverConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.stages.realm_experiment import (  # pylint: disable=g-import-not-at-top
      PretrainConfig, RealmExperiment)
  d = os.path.join(config.work_dir, preset)
  index_dir = os.path.join(d, "index")
  common.index_of_untrained_towers(os.path.join(d, "model"), corpus, index_dir,
                                   RetrieverConfig(encoder=preset))
  pretrain_config = PretrainConfig(
      model=RealmConfig(retriever_encoder=preset, reader_encoder=preset,
                        num_candidates=config.num_candidates),
      batch_size=config.batch_size, num_train_steps=1000, warmup_steps=0, refresh="none")
  exp = RealmExperiment(pretrain_config, corpus, annotations, index_dir,
                        os.path.join(d, f"realm-{int(time.time())}"))

  # 1. The pipeline alone.
  it = iter(exp.make_dataset(0))
  first = next(it)
  next(it)  # warm-up: tracing, ScaNN searcher creation, first shards opened
  t = time.perf_counter()
  for _ in range(config.pipeline_batches):
    next(it)
  pipeline_qps = config.pipeline_batches * config.batch_size / (time.perf_counter() - t)

  # 2. The train step alone on a ready batch.
  batch = {k: v for k, v in first.items() if k != "data_position"}
  step = exp.trainer._train_step  # pylint: disable=protected-access
  for _ in range(2):
    step(batch)
  t = time.perf_counter()
  for _ in range(config.steps):
    out = step(batch)
  float(out["loss"][0].numpy())
  trainer_qps = config.steps * config.batch_size / (time.perf_counter() - t)

  # 3. End to end: the step consuming the live dataset (both on this machine's cores).
  t = time.perf_counter()
  for _ in range(config.steps):
    b = next(it)
    out = step({k: v for k, v in b.items() if k != "data_position"})
  float(out["loss"][0].numpy())
  e2e_qps = config.steps * config.batch_size / (time.perf_counter() - t)
  return {
      "pipeline_queries_per_second": pipeline_qps,
      "trainer_queries_per_second": trainer_qps,
      "end_to_end_queries_per_second": e2e_qps,
      "pipeline_over_trainer": pipeline_qps / trainer_qps,
      "goal_ratio_above_2": pipeline_qps / trainer_qps > 2,
      "batch_size": config.batch_size, "num_candidates": config.num_candidates}


def run(config: InputPipelineBenchConfig) -> str:
  """Builds the corpus and its annotations under `config.work_dir` (kept between runs), measures
  each preset, and writes benchmarks/results/input_pipeline.json; returns its path."""
  provenance = common.Provenance(config.allow_dirty)  # refuses a dirty checkout unless allowed
  logging.set_verbosity(logging.INFO)
  from realm_tf.stages import pretrain_job  # pylint: disable=g-import-not-at-top

  w = config.work_dir
  os.makedirs(w, exist_ok=True)
  squad = os.path.join(w, "squad-dev-subset.json")
  facts = common.squad_subset(squad, config.articles)
  corpus, annotations = os.path.join(w, "corpus"), os.path.join(w, "annotations")
  facts["blocks"] = pretrain_job.ensure_corpus([squad], corpus)["num_blocks"]
  pretrain_job.ensure_annotations(corpus, annotations)
  results = {"data": {k: v for k, v in facts.items() if k != "titles"}, "presets": {}}

  for preset in config.presets:
    results["presets"][preset] = measure_preset(config, preset, corpus, annotations)
    logging.info("%s: %s", preset, results["presets"][preset])
  results["note"] = ("Pipeline and trainer timed one after the other on the same CPU cores; the "
                     "pipeline includes query embedding with the bundle's embedder and ScaNN "
                     "search, so for equal towers it costs a fraction of the step (query tower "
                     "forward only vs every tower forward and backward).")
  return common.write_result("input_pipeline", results, provenance)


if __name__ == "__main__":
  from realm_tf.launch import config_program  # pylint: disable=g-import-not-at-top
  config_program.main(InputPipelineBenchConfig, HELP, run)
