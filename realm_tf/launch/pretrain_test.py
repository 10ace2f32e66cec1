"""The main job's command line: flag files parse into the job's config."""
import dataclasses
import glob
import os

import pytest
from absl import flags

from realm_tf.launch import config_flags
from realm_tf.launch import distribution_flags
from realm_tf.launch import pretrain
from realm_tf.testing import cli as testing
from realm_tf.stages.pretrain_job import PretrainJobConfig
from realm_tf.testing.cli import parsed_flags

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "launch", "configs")


def _parse(argv):
  fv = parsed_flags(pretrain, *argv)
  return config_flags.config_from_flags(PretrainJobConfig, fv, skip=pretrain._SKIP), fv  # pylint: disable=protected-access


def test_no_flags_is_the_default_config():
  config, fv = _parse([])
  assert config == PretrainJobConfig()
  assert fv["input"].value == fv["inputs"].value and fv.strategy == "default"


def test_enumerated_settings_are_enum_flags():
  _, fv = _parse([])
  assert fv["masking"].parser.enum_values == ["salient", "random_uniform", "random_span"]
  assert fv["refresh"].parser.enum_values == ["inline", "async", "none"]
  assert fv["retriever_objective"].parser.enum_values == ["marginal", "retrieved", "helpful"]
  assert fv["reader_warmup_evidence"].parser.enum_values == ["own_block", "span_match"]
  assert fv["retriever_pooling"].parser.enum_values == ["cls", "mean"]
  for name in ("retriever_preset", "reader_preset"):
    assert fv[name].parser.enum_values == ["base", "mini", "minilm", "tiny"]
  with pytest.raises(flags.IllegalFlagValueError, match="salinet"):
    _parse(["--masking=salinet"])


def test_eval_questions_name_a_question_file_and_a_count_is_the_old_meaning(tmp_path):
  questions = tmp_path / "qs.jsonl"
  questions.write_text("{}\n")
  _, fv = _parse([f"--eval_questions=jsonl:{questions}", "--num_eval_questions=7"])
  config = pretrain.config_from_flags(fv)
  assert (config.eval_questions, config.num_eval_questions) == (f"jsonl:{questions}", 7)
  for bad, message in (("jsonl:/no/such.jsonl", "question file /no/such.jsonl does not exist"),
                       ("my.jsonl", "give jsonl:<path>")):
    with pytest.raises(flags.IllegalFlagValueError, match=message):
      _parse([f"--eval_questions={bad}"])
  _, fv = _parse(["--eval_questions=50"])
  config = pretrain.config_from_flags(fv)
  assert (config.eval_questions, config.num_eval_questions) == (None, 50)


# Slow (a TensorFlow start-up for a flag error): cli_test checks the one line and exit status 2 of
# a bad enum value in-process, and test_cli_bad_values that real programs write nothing on one.
@pytest.mark.slow
def test_a_bad_enum_value_is_a_one_line_error_before_any_work(tmp_path):
  proc = testing.run_cli("realm_tf.launch.pretrain", "--masking=salinet",
                         f"--work_dir={tmp_path / 'work'}")
  testing.assert_one_line_error(proc, "--masking=salinet",
                                "salient|random_uniform|random_span")
  assert not (tmp_path / "work").exists()


def test_a_work_dir_built_from_other_documents_is_refused_before_any_work(tmp_path):
  """`--inputs=mine.jsonl` on a work dir whose corpus came from other documents stops at once,
  naming both; so does a --block_length other than the corpus's. The deprecated --input still
  works (and says so)."""
  from realm_tf.data import corpus as corpus_lib  # pylint: disable=g-import-not-at-top
  work = tmp_path / "work"
  (work / "corpus").mkdir(parents=True)
  corpus_lib.write_manifest(str(work / "corpus"), [], "vocab", 128,
                            extra={"inputs": ["/data/squad_dev.json"]})
  mine = tmp_path / "mine.jsonl"
  proc = testing.run_cli("realm_tf.launch.pretrain", f"--input={mine}", f"--work_dir={work}")
  line = testing.assert_one_line_error(proc, f"The corpus in {work / 'corpus'} was built from "
                                       "['/data/squad_dev.json']", str(mine), "--work_dir")
  assert "warning: --input is deprecated; use --inputs." in proc.stderr.splitlines()
  proc = testing.run_cli("realm_tf.launch.pretrain", "--block_length=288", f"--work_dir={work}")
  testing.assert_one_line_error(proc, "--block_length=288, but the corpus in",
                                "128-wordpiece blocks")
  # A refused run leaves the work dir as it was: no lock file (realm_tf/io/work_dir_lock.py), and
  # nothing else written.
  assert sorted(os.listdir(work)) == ["corpus"] and line


def test_importing_defines_no_flags():
  assert not flags.FLAGS.flags_by_module_dict().get(pretrain.__name__)
  assert not flags.FLAGS.flags_by_module_dict().get(distribution_flags.__name__)


@pytest.mark.parametrize("path", sorted(p for p in glob.glob(os.path.join(CONFIGS, "*.flags"))
                                         if not os.path.basename(p).startswith("finetune_")))
def test_every_flag_file_parses(path):
  config, _ = _parse([f"--flagfile={path}"])
  assert config.num_train_steps > 0


def test_paper_flags_state_the_papers_setup():
  config, fv = _parse([f"--flagfile={os.path.join(CONFIGS, 'paper_tpu.flags')}"])
  assert (config.batch_size, config.num_train_steps, config.learning_rate) == (512, 200000, 3e-5)
  assert config.num_candidates == 8
  assert (config.block_length, config.query_length, config.projection_size) == (288, 96, 128)
  assert config.retriever_preset == config.reader_preset == "base"
  assert config.reader_init and config.reader_warmup_steps == 0  # BERT with its MLM head
  assert (config.ict_batch_size, config.ict_steps) == (4096, 100000)  # ORQA's ICT
  assert config.retriever_pooling == "cls" and config.projection_dropout == 0.1
  assert config.refresh == "async" and fv.mixed_precision == "bfloat16"
  assert config.retriever_objective == "marginal" and config.retriever_lr_multiplier == 1.0
  assert config.null_bias_learning_rate == 0  # the paper has no null-document bias


def test_missing_input_is_a_one_line_error(tmp_path):
  pattern = str(tmp_path / "nothing" / "*.jsonl")
  proc = testing.run_cli("realm_tf.launch.pretrain", f"--inputs={pattern}",
                         f"--work_dir={tmp_path / 'work'}")
  testing.assert_one_line_error(proc, f"No input file matches {pattern!r}")


def test_demo_flags_are_the_defaults():
  config, _ = _parse([f"--flagfile={os.path.join(CONFIGS, 'demo_cpu.flags')}"])
  assert config == PretrainJobConfig()
  assert config.block_length is config.query_length is None  # the work dir's


def test_tiny_ict_flags_unset_the_pretrained_retriever():
  config, _ = _parse([f"--flagfile={os.path.join(CONFIGS, 'tiny_ict_cpu.flags')}"])
  assert config.retriever_init is None and config.retriever_preset == "tiny"
  assert config.ict_steps == 300 and config.retriever_objective == "retrieved"
  assert dataclasses.replace(config, retriever_preset="minilm", retriever_init="minilm",
                             ict_steps=0, retriever_objective="helpful",
                             retriever_lr_multiplier=1.0,
                             null_bias_learning_rate=0.3, reader_warmup_steps=300,
                             num_candidates=4) == PretrainJobConfig()
