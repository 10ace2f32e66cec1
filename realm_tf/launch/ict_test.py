"""`python -m realm_tf.launch.ict` on bad input, and the quiet default of every CLI: a CPU-only
run with neither TF_CPP_MIN_LOG_LEVEL nor CUDA_VISIBLE_DEVICES set prints no CUDA or TF C++ lines.

(Training itself is tested in tests/test_pretrain_e2e.py.)"""
import os

import pytest
from absl import flags

from realm_tf.launch import ict
from realm_tf.testing import cli as testing

# Every flag of the program (its --help) with the default a user sees, as when written by hand.
_DEFAULTS = {
    "batch_size": 32, "num_train_steps": 1000, "learning_rate": 1e-4, "warmup_steps": None,
    "remove_sentence_rate": 0.9, "seed": 0, "heldout_fraction": 0.0, "checkpoint_every": 200,
    "preset": "tiny", "projection_size": None, "share_towers": True, "pooling": "cls",
    "projection_dropout": 0.1, "query_seq_length": 96, "doc_seq_length": 288,
    "corpus_dir": None, "model_dir": None, "index_dir": None, "init": None, "init_from_hf": None,
    "min_recall": 0.9,
    "tpu": None, "strategy": "default", "num_cpu_devices": None, "mixed_precision": None,
    "jit_compile": False}


def test_every_flag_keeps_its_name_and_default_and_job_fields_are_generated():
  fv = flags.FlagValues()
  ict.define_flags(fv)
  assert {f.name: f.default for f in fv.get_key_flags_for_module(ict)} == _DEFAULTS
  assert fv["pooling"].parser.enum_values == ["cls", "mean"]
  for name in ("corpus_dir", "model_dir", "index_dir", "init", "min_recall", "preset"):
    assert fv[name].help == ict.HELP[name], name  # from the table, i.e. generated
  fv(["ict", "--corpus_dir=/c", "--model_dir=/m", "--init_from_hf=minilm", "--min_recall=0.5",
      "--index_dir="])
  job = ict.job_from_flags(fv)
  assert (job.corpus_dir, job.model_dir, job.init, job.min_recall, job.index_dir) == (
      "/c", "/m", "minilm", 0.5, None)
  assert job.ict == ict.config_from_flags(fv)
  fv(["ict", "--index_dir=/i", "--pooling=mean"])
  job = ict.job_from_flags(fv)
  assert (job.index_dir, job.ict.retriever.pooling) == ("/i", "mean")


def test_corpus_and_model_dirs_are_required():
  fv = flags.FlagValues()
  ict.define_flags(fv)
  with pytest.raises(flags.IllegalFlagValueError, match="--model_dir"):
    fv(["ict", "--corpus_dir=/c"])


def test_flags_are_defined_only_by_define_flags_and_parse_into_the_config():
  from realm_tf.modeling.encoder_config import get_encoder_config  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.retriever import RetrieverConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.stages.ict_experiment import IctConfig  # pylint: disable=g-import-not-at-top
  assert not flags.FLAGS.flags_by_module_dict().get(ict.__name__)
  fv = flags.FlagValues()
  ict.define_flags(fv)
  fv(["ict", "--corpus_dir=/c", "--model_dir=/m"])
  assert ict.config_from_flags(fv) == IctConfig(
      retriever=RetrieverConfig(encoder=get_encoder_config("tiny"), share_towers=True),
      warmup_steps=100)
  fv(["ict", "--preset=mini", "--init_from_hf=minilm", "--num_train_steps=50", "--noshare_towers",
      "--query_seq_length=32"])
  config = ict.config_from_flags(fv)
  assert config.retriever.projection_size == get_encoder_config("mini").hidden_size  # --init
  assert (config.warmup_steps, config.retriever.share_towers,
          config.retriever.query_seq_length) == (5, False, 32)


def test_missing_corpus_is_a_one_line_error_and_the_run_is_quiet(tmp_path):
  missing = str(tmp_path / "no_corpus")
  env = {k: v for k, v in os.environ.items()
         if k not in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")}
  # The strategy (and so the device probe that fails cuInit without a GPU) comes before the corpus.
  proc = testing.run_cli("realm_tf.launch.ict", f"--corpus_dir={missing}",
                         f"--model_dir={tmp_path / 'ict'}", env=env)
  testing.assert_one_line_error(proc, missing)
  assert "cuInit" not in proc.stderr and "cuda" not in proc.stderr.lower(), proc.stderr[-3000:]
  assert not testing.TF_CPP_LINE.search(proc.stderr), proc.stderr[-3000:]
