"""Every benchmark carries its settings in a config dataclass that its `run(config)` takes: its
flags, defined from that dataclass on a fresh FlagValues and parsed, give back the config the
command line describes (no flags: the dataclass's defaults), so the documented commands keep
their meaning and the flags cannot drift from the config."""

import dataclasses
import json
import os
import typing

from absl import app, flags
import pytest

from benchmarks import annotation_bench, embedding_bench, import_release_bench
from benchmarks import input_pipeline_bench, masking_bench, mips_bench, openqa_quality
from benchmarks import realm_vs_ict_bench, run_all, serving_bench, serving_variants_bench
from benchmarks import train_step_bench
from realm_tf.launch import config_program

ALL = (annotation_bench, embedding_bench, import_release_bench, input_pipeline_bench,
       masking_bench, mips_bench, openqa_quality, realm_vs_ict_bench, run_all, serving_bench,
       serving_variants_bench, train_step_bench)


def _config_cls(module):
  """The config dataclass the benchmark's `run(config)` takes."""
  return typing.get_type_hints(module.run)["config"]


def _flags(module) -> flags.FlagValues:
  """A fresh FlagValues holding the benchmark's flags, as its `__main__` defines them."""
  fv = flags.FlagValues()
  config_program.define_flags(_config_cls(module), module.HELP, fv,
                              getattr(module, "FLAG_OPTIONS", None))
  return fv


def _parse(module, *args):
  """`module`'s config from the command line `args` (`config_program.parse`)."""
  return config_program.parse(_config_cls(module), module.HELP, ["prog", *args],
                              getattr(module, "FLAG_OPTIONS", None))


def test_every_benchmark_runs_its_config_through_config_program():
  # Its __main__ hands the same dataclass that `run` takes to config_program, which defines the
  # flags; the module itself defines none (tests/test_benchmark_clis.py).
  import inspect  # pylint: disable=g-import-not-at-top
  for module in ALL:
    source = inspect.getsource(module)
    assert f"config_program.main({_config_cls(module).__name__}, HELP, run" in source, module
    assert "from absl import flags" not in source, module


def test_mips_bench_config():
  assert _parse(mips_bench) == mips_bench.MipsBenchConfig()
  assert _parse(mips_bench, "--num_points=20000", "--noise=0.5", "--skip_rss",
                "--real_index_dir=runs/default/index", "--name=/tmp/x") == \
      mips_bench.MipsBenchConfig(num_points=20000, noise=0.5, skip_rss=True,
                                 real_index_dir="runs/default/index", name="/tmp/x")


def test_train_step_bench_config():
  assert _parse(train_step_bench) == train_step_bench.TrainStepBenchConfig()
  assert train_step_bench.TrainStepBenchConfig().presets == ["tiny", "minilm"]
  assert _parse(train_step_bench, "--presets=tiny", "--steps=1", "--jit_compile=on") == \
      train_step_bench.TrainStepBenchConfig(presets=["tiny"], steps=1, jit_compile=["on"])


def test_annotation_bench_config():
  assert _parse(annotation_bench) == annotation_bench.AnnotationBenchConfig()
  assert _parse(annotation_bench, "--num_passages=16", "--batch_size=8") == \
      annotation_bench.AnnotationBenchConfig(num_passages=16, batch_size=8)


def test_masking_bench_config():
  assert _parse(masking_bench) == masking_bench.MaskingBenchConfig()
  assert _parse(masking_bench, "--num_examples=64", "--warmup=0") == \
      masking_bench.MaskingBenchConfig(num_examples=64, warmup=0)


def test_realm_vs_ict_config_from_flags():
  assert _parse(realm_vs_ict_bench) == realm_vs_ict_bench.RealmVsIctConfig()
  config = _parse(realm_vs_ict_bench, "--articles=4", "--seeds=0,1", "--steps=2",
                  "--retriever_lr_multiplier=0.5", "--conditions=realm_salient,ict_continued",
                  "--work_dir=/tmp/bench_smoke", "--output_name=realm_vs_ict_smoke")
  assert config == realm_vs_ict_bench.RealmVsIctConfig(
      articles=4, seeds=["0", "1"], steps=2, retriever_lr_multiplier=0.5,
      conditions=["realm_salient", "ict_continued"], work_dir="/tmp/bench_smoke",
      output_name="realm_vs_ict_smoke")


def _committed(name):
  with open(os.path.join(os.path.dirname(__file__), "..", "benchmarks", "results",
                         f"{name}.json")) as f:
    return json.load(f)


def test_realm_vs_ict_defaults_are_the_main_jobs_start():
  from realm_tf.stages import pretrain_job  # pylint: disable=g-import-not-at-top
  from realm_tf.stages.pretrain_job import PretrainJobConfig  # pylint: disable=g-import-not-at-top
  config = realm_vs_ict_bench.RealmVsIctConfig()
  assert config.seeds == ["0", "1", "2"]  # strings, as the results' `settings` record them
  assert config.conditions == list(realm_vs_ict_bench.CONDITIONS)
  # Every condition starts where the main job starts: its retriever and REALM's settings.
  main = PretrainJobConfig()
  for field in ("retriever_preset", "retriever_init", "ict_steps", "learning_rate",
                "retriever_lr_multiplier", "retriever_objective", "null_bias_learning_rate",
                "batch_size", "num_candidates", "reader_preset", "reader_init",
                "reader_warmup_batch_size", "reader_warmup_learning_rate",
                "reader_warmup_distractor_rate"):
    assert getattr(config, field) == getattr(main, field), field
  assert (config.block_length, config.query_length) == pretrain_job.shapes(main)  # a new work dir
  # The committed result was measured with these defaults.
  committed = _committed("realm_vs_ict")
  for field in ("retriever_preset", "retriever_lr_multiplier", "retriever_objective",
                "null_bias_learning_rate"):
    assert committed["job"][field] == getattr(config, field), field
  # A setting added after the result was measured reads as its default (ConfigBase's rule for
  # older records): the defaults must be what that code did.
  recorded = realm_vs_ict_bench.RealmVsIctConfig.with_defaults(committed["settings"])
  assert {k: recorded[k] for k in realm_vs_ict_bench.SETTINGS} == json.loads(json.dumps(
      {k: getattr(config, k) for k in realm_vs_ict_bench.SETTINGS}))


def test_realm_vs_ict_tiny_ict_flagfile_is_its_committed_result():
  path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "configs",
                      "realm_vs_ict_tiny_ict.flags")
  config = _parse(realm_vs_ict_bench, f"--flagfile={path}")
  assert config.retriever_init is None  # the empty flag: random weights, then ICT
  committed = _committed("realm_vs_ict_tiny_ict")
  for field in ("retriever_preset", "retriever_lr_multiplier", "retriever_objective"):
    assert committed["job"][field] == getattr(config, field), field
  assert config.null_bias_learning_rate == 0.05  # (the result predates recording it)
  for field, value in committed["settings"].items():
    assert json.loads(json.dumps(getattr(config, field))) == value, field
  assert config.output_name == "realm_vs_ict_tiny_ict"


def test_openqa_quality_config_from_flags():
  assert _parse(openqa_quality) == openqa_quality.OpenQAQualityConfig()
  config = _parse(openqa_quality, "--steps=100", "--eval_questions=200", "--learning_rate=3e-5",
                  "--reader_init=runs/realm")
  assert config == openqa_quality.OpenQAQualityConfig(
      steps=100, eval_questions=200, learning_rate=3e-5, reader_init="runs/realm")


def test_run_all_config_from_flags():
  assert _parse(run_all) == run_all.RunAllConfig()
  assert _parse(run_all, "--quality") == run_all.RunAllConfig(quality=True)
  config = _parse(run_all, "--only=mips_bench,serving_bench")
  assert config == run_all.RunAllConfig(only=["mips_bench", "serving_bench"])
  assert run_all.benchmark_names(config) == ["mips_bench", "serving_bench"]
  assert run_all.benchmark_names(run_all.RunAllConfig()) == list(run_all.SPEED)
  assert run_all.benchmark_names(run_all.RunAllConfig(quality=True)) == list(
      run_all.SPEED + run_all.QUALITY)
  with pytest.raises(app.UsageError):
    run_all.benchmark_names(run_all.RunAllConfig(only=["no_such_bench"]))


CASES = [
    (serving_bench, serving_bench.ServingBenchConfig,
     ["--model_base_path=exports/realm_openqa", "--model_name=realm_openqa", "--duration_s=10",
      "--concurrency=1,4"],
     dict(model_base_path="exports/realm_openqa", model_name="realm_openqa", duration_s=10.0,
          concurrency=[1, 4])),
    (serving_variants_bench, serving_variants_bench.ServingVariantsBenchConfig,
     ["--encoder=minilm", "--max_documents=3", "--random_embeddings", "--concurrency=2",
      "--scann_mode=brute_force"],
     dict(encoder="minilm", max_documents=3, random_embeddings=True, concurrency=[2],
          scann_mode="brute_force")),
    (embedding_bench, embedding_bench.EmbeddingBenchConfig,
     ["--presets=tiny", "--tiny_blocks=8", "--batch_size=2"],
     dict(presets=["tiny"], tiny_blocks=8, batch_size=2)),
    (input_pipeline_bench, input_pipeline_bench.InputPipelineBenchConfig,
     ["--work_dir=/tmp/ipb", "--presets=tiny", "--articles=1", "--steps=1"],
     dict(work_dir="/tmp/ipb", presets=["tiny"], articles=1, steps=1)),
]


@pytest.mark.parametrize("module,config_cls,args,changes", CASES,
                         ids=[c[0].__name__.split(".")[-1] for c in CASES])
def test_flags_give_the_config(module, config_cls, args, changes):
  assert _parse(module) == config_cls()
  assert _parse(module, *args) == dataclasses.replace(config_cls(), **changes)


def test_every_field_is_a_flag_with_help():
  for module, config_cls, _, _ in CASES:
    fv = _flags(module)
    names = [f.name for f in dataclasses.fields(config_cls)]
    assert sorted(names) == sorted(fv), module.__name__
    # (an enum flag's help starts with its choices)
    assert all(fv[name].help.endswith(module.HELP[name]) for name in names), module.__name__


def test_the_flag_defaults_are_todays():
  # The command line is unchanged: the same defaults as before the flags came from the configs.
  fv = _flags(serving_bench)
  assert fv["concurrency"].default == ["1", "8", "32"]
  assert fv["batching_parameters_file"].default.endswith("serving/batching.config")
  fv = _flags(serving_variants_bench)
  assert fv["scann_mode"].default == "auto"
  with pytest.raises(flags.IllegalFlagValueError):
    fv(["prog", "--scann_mode=nope"])


def test_the_embedding_worker_flags():
  # The worker command line the benchmark builds for its child processes.
  config = _parse(embedding_bench, "--child", "--export=/e", "--corpus=/c", "--warm_corpus=/w",
                  "--batch_size=16", "--work=/x-2r", "--strategy=mirrored",
                  "--num_cpu_devices=2", "--num_shards=2", "--shard_index=1")
  assert config == embedding_bench.EmbeddingBenchConfig(
      child=True, export="/e", corpus="/c", warm_corpus="/w", work="/x-2r",
      strategy="mirrored", num_cpu_devices=2, num_shards=2, shard_index=1)
