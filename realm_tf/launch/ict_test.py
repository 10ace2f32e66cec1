"""`python -m realm_tf.launch.ict` on bad input, and the quiet default of every CLI: a CPU-only
run with neither TF_CPP_MIN_LOG_LEVEL nor CUDA_VISIBLE_DEVICES set prints no CUDA or TF C++ lines.

(Training itself is tested in tests/test_pretrain_e2e.py.)"""
import os

import pytest
from absl import flags

from realm_tf.launch import ict
from realm_tf.testing import cli as testing
from realm_tf.utils import command_line
from realm_tf.testing.cli import parsed_flags

# Every flag of the program (its --help) with the default a user sees, as when written by hand;
# the old names last (deprecated aliases of the main job's names).
_DEFAULTS = {
    "batch_size": 32, "num_train_steps": 1000, "learning_rate": 1e-4, "warmup_steps": None,
    "remove_sentence_rate": 0.9, "seed": 0, "heldout_fraction": 0.0, "checkpoint_every": 200,
    "retriever_preset": "tiny", "projection_size": None, "share_towers": True,
    "retriever_pooling": "cls", "projection_dropout": 0.1, "query_length": None,
    "block_length": None, "work_dir": "runs/default", "corpus_dir": None, "model_dir": None,
    "index_dir": None, "retriever_init": None, "min_recall": 0.9,
    "tpu": None, "strategy": "default", "num_cpu_devices": None, "mixed_precision": None,
    "jit_compile": False,
    "preset": "tiny", "pooling": "cls", "init": None, "init_from_hf": None,
    "query_seq_length": None, "doc_seq_length": None}


def test_every_flag_keeps_its_name_and_default_and_job_fields_are_generated():
  fv = flags.FlagValues()
  ict.define_flags(fv)
  assert {f.name: f.default for f in fv.get_key_flags_for_module(ict)} == _DEFAULTS
  assert fv["retriever_pooling"].parser.enum_values == ["cls", "mean"]
  assert fv["retriever_preset"].parser.enum_values == ["base", "mini", "minilm", "tiny"]
  for name in ("corpus_dir", "model_dir", "index_dir", "retriever_init", "min_recall",
               "retriever_preset"):
    assert fv[name].help.endswith(ict.HELP[name]), name  # from the table, i.e. generated
  fv(["ict", "--corpus_dir=/c", "--model_dir=/m", "--retriever_init=minilm", "--min_recall=0.5",
      "--index_dir=/i", "--jit_compile"])
  job = ict.job_from_flags(fv)
  assert (job.corpus_dir, job.model_dir, job.init, job.min_recall, job.index_dir,
          job.jit_compile) == ("/c", "/m", "minilm", 0.5, "/i", True)
  assert job.ict == ict.config_from_flags(fv)
  fv(["ict", "--retriever_pooling=mean"])
  assert ict.job_from_flags(fv).ict.retriever.pooling == "mean"


def test_the_folders_are_the_work_dirs_and_the_lengths_its_corpus():
  job = ict.job_from_flags(parsed_flags(ict, "--work_dir=/nowhere/w"))
  assert (job.corpus_dir, job.model_dir, job.index_dir) == (
      "/nowhere/w/corpus", "/nowhere/w/ict", "/nowhere/w/index")
  # No corpus yet: the main job's lengths.
  assert (job.ict.retriever.doc_seq_length, job.ict.retriever.query_seq_length) == (128, 32)


def test_blocks_are_as_long_as_the_corpus_says(tmp_path):
  from realm_tf.data import corpus as corpus_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.io import work_dir  # pylint: disable=g-import-not-at-top
  (tmp_path / "corpus").mkdir()
  corpus_lib.write_manifest(str(tmp_path / "corpus"), [], "vocab", 288)
  job = ict.job_from_flags(parsed_flags(ict, f"--work_dir={tmp_path}"))
  assert job.ict.retriever.doc_seq_length == 288
  with pytest.raises(work_dir.WorkDirMismatchError, match="--block_length=128, but the corpus"):
    ict.job_from_flags(parsed_flags(ict, f"--work_dir={tmp_path}", "--block_length=128"))


def test_old_flag_names_still_work():
  fv = parsed_flags(ict, "--preset=mini", "--init_from_hf=minilm", "--pooling=mean",
               "--query_seq_length=16", "--doc_seq_length=64", "--work_dir=/nowhere")
  job = ict.job_from_flags(fv)
  r = job.ict.retriever
  assert (job.init, r.pooling, r.query_seq_length, r.doc_seq_length) == ("minilm", "mean", 16, 64)
  assert r.encoder == ict.config_from_flags(parsed_flags(ict, "--retriever_preset=mini")).retriever.encoder
  assert sorted(command_line.deprecated_aliases_used(fv)) == [
      ("doc_seq_length", "block_length"), ("init_from_hf", "retriever_init"),
      ("pooling", "retriever_pooling"), ("preset", "retriever_preset"),
      ("query_seq_length", "query_length")]


def test_flags_are_defined_only_by_define_flags_and_parse_into_the_config():
  from realm_tf.modeling.encoder_config import get_encoder_config  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.retriever import RetrieverConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.stages.ict_experiment import IctConfig  # pylint: disable=g-import-not-at-top
  assert not flags.FLAGS.flags_by_module_dict().get(ict.__name__)
  fv = parsed_flags(ict, "--corpus_dir=/c", "--model_dir=/m", "--work_dir=/nowhere")
  assert ict.config_from_flags(fv) == IctConfig(
      retriever=RetrieverConfig(encoder=get_encoder_config("tiny"), share_towers=True,
                                query_seq_length=32, doc_seq_length=128),
      warmup_steps=100)
  fv(["ict", "--retriever_preset=mini", "--retriever_init=minilm", "--num_train_steps=50",
      "--noshare_towers", "--query_length=16"])
  config = ict.config_from_flags(fv)
  assert config.retriever.projection_size == get_encoder_config("mini").hidden_size  # init
  assert (config.warmup_steps, config.retriever.share_towers,
          config.retriever.query_seq_length) == (5, False, 16)


def test_the_lock_is_the_work_dir_unless_model_dir_alone_names_the_run():
  def lock_of(*argv):
    return ict.job_from_flags(parsed_flags(ict, *argv)).lock_dir
  assert lock_of("--model_dir=/m/ict") == "/m/ict"
  assert lock_of() == parsed_flags(ict).work_dir  # the default one
  assert lock_of("--work_dir=/w", "--model_dir=/m/ict") == "/w"


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
