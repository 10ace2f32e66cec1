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

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "launch", "configs")


def _parse(argv):
  fv = flags.FlagValues()
  pretrain.define_flags(fv)
  fv(["pretrain"] + argv)
  return config_flags.config_from_flags(PretrainJobConfig, fv, skip=pretrain._SKIP), fv  # pylint: disable=protected-access


def test_no_flags_is_the_default_config():
  config, fv = _parse([])
  assert config == PretrainJobConfig()
  assert fv["input"].value == fv["inputs"].value and fv.strategy == "default"


def test_importing_defines_no_flags():
  assert not flags.FLAGS.flags_by_module_dict().get(pretrain.__name__)
  assert not flags.FLAGS.flags_by_module_dict().get(distribution_flags.__name__)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(CONFIGS, "*.flags"))))
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


def test_tiny_ict_flags_unset_the_pretrained_retriever():
  config, _ = _parse([f"--flagfile={os.path.join(CONFIGS, 'tiny_ict_cpu.flags')}"])
  assert config.retriever_init is None and config.retriever_preset == "tiny"
  assert config.ict_steps == 300 and config.retriever_objective == "retrieved"
  assert dataclasses.replace(config, retriever_preset="minilm", retriever_init="minilm",
                             ict_steps=0, retriever_objective="helpful",
                             retriever_lr_multiplier=1.0,
                             null_bias_learning_rate=0.3, reader_warmup_steps=300,
                             num_candidates=4) == PretrainJobConfig()
