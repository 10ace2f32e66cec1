"""The benchmarks are command-line programs like the stages: importing one defines no absl flag
(`config_program.main`, called from `__main__`, defines them from the benchmark's config), and
each parses its own --help."""

import pytest

from realm_tf.testing import cli as testing

BENCHMARKS = ("annotation_bench", "bm25_bench", "distributed_bench", "embedding_bench",
              "export_bench",
              "fault_bench", "host_embedding_bench", "import_release_bench",
              "input_pipeline_bench", "masking_bench", "mips_bench", "openqa_quality",
              "realm_vs_ict_bench", "run_all", "scale_bench", "scale_resume", "serving_bench",
              "serving_variants_bench", "status", "train_step_bench")
# Modules under benchmarks/ that are parts of a benchmark, not programs.
HELPERS = ("__init__.py", "common.py", "fitting.py", "mips_data.py", "procs.py",
           "scale_corpus.py", "scale_fit.py", "scale_stages.py", "scale_trainer.py")


def test_the_list_is_every_benchmark_module():
  import os  # pylint: disable=g-import-not-at-top
  found = sorted(f[:-3] for f in os.listdir(os.path.join(testing.ROOT, "benchmarks"))
                 if f.endswith(".py") and f not in HELPERS)
  assert tuple(found) == BENCHMARKS


def test_importing_the_benchmarks_defines_no_flags():
  # The flags the benchmarks define when run; importing them all must define none.
  names = ["num_examples", "num_rows", "hnsw_m", "quality", "seeds", "presets", "num_passages"]
  testing.assert_import_defines_no_flags([f"benchmarks.{n}" for n in BENCHMARKS], names)


@pytest.mark.parametrize("name,flag", [("masking_bench", "--num_examples"),
                                       ("run_all", "--quality")])
def test_a_benchmark_defines_its_flags_when_run(name, flag):
  proc = testing.run_cli(f"benchmarks.{name}", "--helpshort")
  assert flag in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]


def test_make_bench_runs_the_benchmarks_quiet_unless_verbose(monkeypatch):
  from benchmarks import run_all  # pylint: disable=g-import-not-at-top
  monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
  monkeypatch.delenv("GRPC_VERBOSITY", raising=False)
  quiet = run_all.child_environment(0)
  assert (quiet["TF_CPP_MIN_LOG_LEVEL"], quiet["GRPC_VERBOSITY"]) == ("3", "NONE")
  loud = run_all.child_environment(1)
  assert "TF_CPP_MIN_LOG_LEVEL" not in loud and "GRPC_VERBOSITY" not in loud
  # A level the user set is theirs.
  monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
  assert run_all.child_environment(0)["TF_CPP_MIN_LOG_LEVEL"] == "1"
