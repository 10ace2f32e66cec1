"""`python -m realm_tf.launch.convert_checkpoint` on bad input: one line, exit status 2.

(Conversions themselves are tested in realm_tf/checkpoints.)"""
import os

import pytest
from absl import flags

from realm_tf.launch import convert_checkpoint
from realm_tf.testing import cli as testing


# Every flag of the program (its --help) with the default a user sees, as when written by hand.
_DEFAULTS = {"format": None, "input": None, "output_dir": None, "target": "encoder",
             "preset": None, "num_attention_heads": None, "doc_input": None, "tf1_prefix": None,
             "span_hidden_size": None, "work_dir": None, "index_dir": None, "corpus_dir": None,
             "overwrite": False}


def test_flags_are_generated_from_the_config_and_parse_into_it():
  from realm_tf.checkpoints.convert import ConvertConfig  # pylint: disable=g-import-not-at-top
  assert not flags.FLAGS.flags_by_module_dict().get(convert_checkpoint.__name__)
  fv = flags.FlagValues()
  convert_checkpoint.define_flags(fv)
  assert {f.name: f.default for f in fv.get_key_flags_for_module(convert_checkpoint)} == _DEFAULTS
  assert (fv["format"].parser.enum_values, fv["target"].parser.enum_values) == (
      ["hf", "tf1"], ["encoder", "retriever", "reader", "knowledge_encoder", "openqa"])
  with pytest.raises(flags.IllegalFlagValueError, match="--output_dir"):  # required
    fv(["convert_checkpoint", "--format=hf", "--input=/i"])
  fv(["convert_checkpoint", "--format=hf", "--input=/i", "--output_dir=/o"])
  assert convert_checkpoint.config_from_flags(fv) == ConvertConfig("hf", "/i", "/o")
  fv(["convert_checkpoint", "--format=tf1", "--target=reader", "--preset=mini",
      "--num_attention_heads=4", "--doc_input=/d", "--tf1_prefix=reader/module/",
      "--span_hidden_size=16", "--overwrite"])
  assert convert_checkpoint.config_from_flags(fv) == ConvertConfig(
      "tf1", "/i", "/o", target="reader", preset="mini", num_attention_heads=4, doc_input="/d",
      tf1_prefix="reader/module/", span_hidden_size=16, overwrite=True)


def test_run_converts_as_the_config_says(monkeypatch):
  from realm_tf.checkpoints import convert  # pylint: disable=g-import-not-at-top
  calls = []
  monkeypatch.setattr(convert, "convert_checkpoint", lambda *a, **kw: calls.append((a, kw)))
  convert.run(convert.ConvertConfig("tf1", "/i", "/o", target="retriever", preset="mini",
                                    num_attention_heads=4, doc_input="/d", tf1_prefix="p/",
                                    span_hidden_size=16, overwrite=True))
  assert calls == [(("tf1", "/i", "/o", "retriever"), dict(
      preset="mini", num_attention_heads=4, doc_input="/d", tf1_prefix="p/",
      span_hidden_size=16, overwrite=True))]


def test_missing_input_is_a_one_line_error_and_quiet(tmp_path):
  """This CLI imports TensorFlow before parsing its flags: importing realm_tf.utils.command_line first
  must already have quieted TensorFlow's C++ logs (its import-time notices)."""
  missing = str(tmp_path / "no_such_model")
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  env["CUDA_VISIBLE_DEVICES"] = ""
  proc = testing.run_cli("realm_tf.launch.convert_checkpoint", "--format=hf",
                         f"--input={missing}", f"--output_dir={tmp_path / 'out'}", env=env)
  testing.assert_one_line_error(proc, "Hugging Face input must be a directory", missing)
  assert not testing.TF_CPP_LINE.search(proc.stderr), proc.stderr[-3000:]
  assert not (tmp_path / "out").exists()
