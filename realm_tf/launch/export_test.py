"""Tests for `python -m realm_tf.launch.export`: flags defined only when run as a program (with the
same names and defaults as ExportConfig), one-line errors, and (slow) a real CLI run over a
fine-tuning model_dir producing TF Serving's layout with consecutive versions."""
import json
import os
import subprocess
import sys

import pytest

from realm_tf.testing import cli as testing
from realm_tf.utils import command_line
from realm_tf.testing.cli import parsed_flags


def test_importing_defines_no_flags():
  testing.assert_import_defines_no_flags(['realm_tf.launch.export'], ['export_base', 'variant', 'scann_mode', 'warmup_question'])


def test_flags_parse_into_the_export_config():
  from absl import flags  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import export  # pylint: disable=g-import-not-at-top
  from realm_tf.stages.export_job import ExportConfig  # pylint: disable=g-import-not-at-top
  fv = flags.FlagValues()
  export.define_flags(fv)
  fv(["export", "--model_dir=/m", "--export_base=/e"])
  assert export.config_from_flags(fv) == ExportConfig(model_dir="/m", export_base="/e")
  fv(["export", "--variant=scann", "--scann_mode=ah", "--warmup_question=who?",
      "--warmup_question=when?", "--components=openqa,searcher", "--version=3"])
  assert export.config_from_flags(fv) == ExportConfig(
      model_dir="/m", export_base="/e", variant="scann", scann_mode="ah",
      warmup_questions=["who?", "when?"], components=["openqa", "searcher"], version=3)
  with pytest.raises(flags.IllegalFlagValueError):
    fv(["export", "--variant=fast"])


def test_paths_derive_from_the_work_dir_and_old_names_still_work(tmp_path):
  from absl import flags  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import export  # pylint: disable=g-import-not-at-top
  from realm_tf.stages.export_job import ExportConfig  # pylint: disable=g-import-not-at-top

  assert export.config_from_flags(parsed_flags(export, "--work_dir=/w")) == ExportConfig(
      model_dir="/w/finetune", export_base="/w/serving")
  # Warm-start weights: the work dir's index and corpus (its model_dir is not read).
  (tmp_path / "model.safetensors").write_bytes(b"")  # a Hugging Face BERT dir, to warm_start
  fv = parsed_flags(export, "--work_dir=/w", f"--init_checkpoint={tmp_path}",
              "--reader_init_checkpoint=minilm", "--index_dir=/i")
  assert export.config_from_flags(fv) == ExportConfig(
      init_checkpoint=str(tmp_path), reader_init_checkpoint="minilm", index_dir="/i",
      corpus_dir="/w/corpus", export_base="/w/serving")
  with pytest.raises(flags.IllegalFlagValueError, match="--init: Warm-start source /no/run"):
    parsed_flags(export, "--init=/no/run")
  assert command_line.deprecated_aliases_used(fv) == [("init_checkpoint", "init"),
                                                      ("reader_init_checkpoint", "reader_init")]


def test_help_lists_every_flag_with_its_default():
  proc = testing.run_cli("realm_tf.launch.export", "--help")  # absl: help, then exit status 1
  text = proc.stdout + proc.stderr
  assert "Traceback" not in text, text[-3000:]
  for flag in ("work_dir", "model_dir", "init", "reader_init", "index_dir",
               "corpus_dir", "export_base", "version", "variant", "components", "num_answers",
               "max_candidates", "reader_beam_size", "searcher_k", "scann_mode",
               "warmup_question"):
    assert f"--{flag}:" in text, flag
  for default in ("--variant: <stock|scann|both>", "(default: 'both')",
                  "--scann_mode: <auto|brute_force|ah|tree_ah>", "(default: 'auto')",
                  "(default: 'all')", "(default: '5')", "(default: '20')", "(default: '10')",
                  "Which models: openqa, query_embedder, doc_embedder, searcher, reader, or all."):
    assert default in " ".join(text.split()), default


def test_missing_model_dir_is_a_one_line_error(tmp_path):
  missing = str(tmp_path / "missing")
  proc = testing.run_cli("realm_tf.launch.export", f"--model_dir={missing}",
                         f"--export_base={tmp_path / 'serving'}")
  testing.assert_one_line_error(proc, f"--model_dir {missing} has no config.json")


def _cli(args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  return subprocess.run([sys.executable, "-m", "realm_tf.launch.export", *args],
                        capture_output=True, text=True, timeout=600, env=env, check=False)


@pytest.mark.slow
def test_cli_exports_versions_in_serving_layout(tmp_path):
  from realm_tf.testing import export_models as ex_testing  # pylint: disable=g-import-not-at-top
  from realm_tf.export import versioning  # pylint: disable=g-import-not-at-top
  system = ex_testing.build_micro_system(str(tmp_path / "work"))
  model_dir = ex_testing.write_model_dir(system, str(tmp_path / "finetune"))
  base = str(tmp_path / "serving")
  args = [f"--model_dir={model_dir}", f"--export_base={base}", "--variant=both",
          "--components=query_embedder,searcher", "--searcher_k=3"]
  proc = _cli(args)
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads(proc.stdout[proc.stdout.index("{"):])
  assert sorted(summary["models"]) == ["realm_query_embedder", "realm_searcher",
                                       "realm_searcher_scann"]
  for name, path in summary["models"].items():
    assert path == os.path.join(base, name, "1")
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert os.path.isfile(os.path.join(path, "assets.extra", "tf_serving_warmup_requests"))
    info = versioning.read_export_info(path)
    assert info["index_bundle"] == system.bundle.path and info["version"] == 1
  # A second run takes the next version; reusing a version fails and names it.
  proc = _cli(args[:-2] + ["--components=searcher", "--variant=stock"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert sorted(os.listdir(os.path.join(base, "realm_searcher"))) == ["1", "2"]
  proc = _cli(args[:-2] + ["--components=searcher", "--variant=stock", "--version=2"])
  testing.assert_one_line_error(proc, "realm_searcher/2 already exists")
