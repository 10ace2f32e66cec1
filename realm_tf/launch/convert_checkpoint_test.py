"""`python -m realm_tf.launch.convert_checkpoint` on bad input: one line, exit status 2.

(Conversions themselves are tested in realm_tf/checkpoints.)"""
import os

from absl import flags

from realm_tf.launch import convert_checkpoint
from realm_tf.testing import cli as testing


def test_flags_are_defined_only_by_define_flags():
  assert not flags.FLAGS.flags_by_module_dict().get(convert_checkpoint.__name__)
  fv = flags.FlagValues()
  convert_checkpoint.define_flags(fv)
  fv(["convert_checkpoint", "--format=hf", "--input=/i", "--output_dir=/o"])
  assert (fv.format, fv.target, fv.overwrite) == ("hf", "encoder", False)


def test_missing_input_is_a_one_line_error_and_quiet(tmp_path):
  """This CLI imports TensorFlow before parsing its flags: importing realm_tf.launch.cli first
  must already have quieted TensorFlow's C++ logs (its import-time notices)."""
  missing = str(tmp_path / "no_such_model")
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  env["CUDA_VISIBLE_DEVICES"] = ""
  proc = testing.run_cli("realm_tf.launch.convert_checkpoint", "--format=hf",
                         f"--input={missing}", f"--output_dir={tmp_path / 'out'}", env=env)
  testing.assert_one_line_error(proc, "Hugging Face input must be a directory", missing)
  assert not testing.TF_CPP_LINE.search(proc.stderr), proc.stderr[-3000:]
  assert not (tmp_path / "out").exists()
