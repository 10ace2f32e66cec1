"""Tests of the CLI plumbing: verbosity from argv, quiet loggers, one-line errors, and `-v 1`."""
import logging as py_logging
import os

import pytest
from absl import logging

from realm_tf.utils import command_line
from realm_tf.testing import cli as testing


@pytest.fixture
def restore_logging(monkeypatch):
  """Undoes quiet_logging's changes to this (shared) pytest process."""
  levels = {name: py_logging.getLogger(name).level for name in command_line.QUIET_LEVELS}
  for name in command_line.QUIET_ENV:  # monkeypatch restores them (set or unset) afterwards
    monkeypatch.delenv(name, raising=False)
  # pylint: disable-next=protected-access
  monkeypatch.setattr(command_line, "_defaulted", set(command_line._defaulted))
  yield
  for name, level in levels.items():
    py_logging.getLogger(name).setLevel(level)
  py_logging.getLogger().removeFilter(command_line._ROOT_FILTER)  # pylint: disable=protected-access
  # pylint: disable-next=protected-access
  logging.get_absl_handler().removeFilter(command_line._TF_FILTER)


@pytest.mark.parametrize("argv, want", [
    ([], 0), (["--output_dir=x"], 0), (["-v", "1"], 1), (["-v=2"], 2), (["--verbosity=1"], 1),
    (["--verbosity", "3", "x"], 3), (["-verbosity=1"], 1), (["--v=1", "--v=0"], 0),
    (["-v", "--other"], 0), (["--", "-v=1"], 0), (["--vv=1"], 0)])
def test_verbosity_in_argv(argv, want):
  assert command_line.verbosity_in_argv(argv) == want


def test_native_log_levels_keep_an_explicit_setting_unless_verbose(monkeypatch):
  monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
  monkeypatch.delenv("GRPC_VERBOSITY", raising=False)
  monkeypatch.setattr(command_line, "_defaulted", set())
  command_line.set_native_log_levels(0)
  assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3" and os.environ["GRPC_VERBOSITY"] == "NONE"
  command_line.set_native_log_levels(1)
  assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0" and "GRPC_VERBOSITY" not in os.environ
  monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
  monkeypatch.setenv("GRPC_VERBOSITY", "DEBUG")
  command_line.set_native_log_levels(0)
  assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1" and os.environ["GRPC_VERBOSITY"] == "DEBUG"
  command_line.set_native_log_levels(1)
  assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0" and os.environ["GRPC_VERBOSITY"] == "DEBUG"


def test_quiet_logging_silences_beam_and_cloud_clients_until_verbose(restore_logging):
  del restore_logging
  root = py_logging.getLogger()
  beam_root_record = py_logging.LogRecord(
      "root", py_logging.WARNING, os.path.join(os.sep, "site-packages", "apache_beam", "io",
                                               "gcp", "x.py"), 1, "apitools not found", None, None)
  own_record = py_logging.LogRecord("root", py_logging.WARNING, __file__, 1, "mine", None, None)
  command_line.quiet_logging(0)
  assert py_logging.getLogger("apache_beam.transforms.util").getEffectiveLevel() == \
      py_logging.ERROR
  assert py_logging.getLogger("google.auth").getEffectiveLevel() == py_logging.ERROR
  # TensorFlow's per-SavedModel INFO lines go; its warnings stay.
  assert py_logging.getLogger("tensorflow").level == py_logging.WARNING
  handler = logging.get_absl_handler()
  tf_file = os.path.join(os.sep, "site-packages", "tensorflow", "python", "checkpoint",
                         "functional_saver.py")
  tf_info = py_logging.LogRecord("absl", py_logging.INFO, tf_file, 1, "Sharding callback", None,
                                 None)
  tf_warning = py_logging.LogRecord("absl", py_logging.WARNING, tf_file, 1, "w", None, None)
  own_info = py_logging.LogRecord("absl", py_logging.INFO, __file__, 1, "[ict] step", None, None)
  assert not handler.filter(tf_info) and handler.filter(tf_warning) and handler.filter(own_info)
  assert not root.filter(beam_root_record) and root.filter(own_record)
  command_line.quiet_logging(0)  # idempotent
  assert root.filters.count(command_line._ROOT_FILTER) == 1  # pylint: disable=protected-access
  command_line.quiet_logging(1)
  assert py_logging.getLogger("apache_beam").level == py_logging.NOTSET
  assert py_logging.getLogger("tensorflow").level == py_logging.NOTSET
  assert handler.filter(tf_info)
  assert root.filter(beam_root_record)


class BundleError(ValueError):
  """Stands in for realm_tf.retrieval.bundle.BundleError (matched by module and name)."""


BundleError.__module__ = "realm_tf.retrieval.bundle"


def test_is_user_error_matches_by_name_along_the_mro():
  class Sub(BundleError):
    pass
  assert command_line.is_user_error(Sub("x")) and command_line.is_user_error(FileExistsError("x"))
  assert not command_line.is_user_error(ValueError("x"))
  assert not command_line.is_user_error(KeyError("x"))
  assert command_line.is_user_error(ValueError("x"), extra=(ValueError,))


def test_call_main_one_line_error_exit_2_else_traceback(restore_logging, monkeypatch, capsys):
  del restore_logging
  monkeypatch.setattr(logging, "get_verbosity", lambda: 0)

  def bad_input(argv):
    raise FileExistsError(f"/out/manifest.json exists;\n pass --overwrite ({argv[0]})")

  with pytest.raises(SystemExit) as exit_info:
    command_line.call_main(bad_input, ["prog"])
  assert exit_info.value.code == command_line.EXIT_USER_ERROR == 2
  err = capsys.readouterr().err
  assert err == "error: /out/manifest.json exists; pass --overwrite (prog)\n"

  def damaged(argv):  # a TensorFlow error reaching the top: its message, not TF's internals
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    raise tf.errors.DataLossError(None, None, "{{function_node __wrapped__IteratorGetNext_device_"
                                  "/job:localhost/replica:0/task:0/device:CPU:0}} corrupted "
                                  "record at 12 [Op:IteratorGetNext] name: ")

  with pytest.raises(SystemExit):
    command_line.call_main(damaged, ["prog"])
  assert capsys.readouterr().err == "error: corrupted record at 12\n"

  def bug(argv):
    raise KeyError("a bug")

  with pytest.raises(KeyError):
    command_line.call_main(bug, ["prog"])
  with pytest.raises(SystemExit):
    command_line.call_main(lambda argv: (_ for _ in ()).throw(ValueError("v")), ["p"],
                           (ValueError,))
  assert command_line.call_main(lambda argv: 0, ["prog"]) == 0


def test_verbosity_1_brings_back_tensorflow_logs_and_the_traceback(tmp_path):
  """The quiet default is checked by every CLI's bad-input test (and ict_test's cuInit check)."""
  missing = str(tmp_path / "missing")
  proc = testing.run_cli("realm_tf.launch.convert_checkpoint", "--format=hf",
                         f"--input={missing}", f"--output_dir={tmp_path / 'out'}", "-v", "1",
                         env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert testing.TF_CPP_LINE.search(proc.stderr), proc.stderr[-3000:]
  assert "Traceback" in proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last == f"error: Hugging Face input must be a directory: {missing}", last


@pytest.fixture
def program_flags(monkeypatch):
  """A fresh FlagValues standing in for absl's global FLAGS (what `command_line.parse_flags`
  parses)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  fv = flags.FlagValues()
  flags.DEFINE_string("dataset", None, "Questions to train on.", flag_values=fv)
  flags.mark_flag_as_required("dataset", flag_values=fv)
  flags.DEFINE_enum("masking", "salient", ["salient", "random_span"], "Masking.", flag_values=fv)
  flags.DEFINE_integer("steps", 1, "Steps.", flag_values=fv)
  config_flags.define_deprecated_alias("num_steps", "steps", fv)

  def known(value):
    if value not in (None, "squad_open"):
      raise flags.ValidationError(f"Unknown --dataset {value!r}.")
    return True

  flags.register_validator("dataset", known, flag_values=fv)
  monkeypatch.setattr(flags, "FLAGS", fv)
  return fv


@pytest.mark.parametrize("argv,line", [
    (["--dataset=squad_open", "--masking=salinet"],
     "error: flag --masking=salinet: value should be one of <salient|random_span>"),
    (["--dataset=nope"], "error: Unknown --dataset 'nope'."),
    ([], "error: --dataset is required (Questions to train on)."),
    (["--dataset=squad_open", "--stepz=3"], "error: Unknown command line flag 'stepz'."),
])
def test_a_refused_flag_is_one_line_and_exit_status_2(program_flags, capsys, argv, line):
  del program_flags
  with pytest.raises(SystemExit) as exit_info:
    command_line.parse_flags(["prog", *argv])
  assert exit_info.value.code == 2
  lines = capsys.readouterr().err.splitlines()
  assert len(lines) == 1 and lines[0].startswith(line), lines


def test_a_deprecated_name_works_and_says_so_once(program_flags, capsys):
  assert command_line.parse_flags(["prog", "--dataset=squad_open", "--num_steps=4"]) == ["prog"]
  assert program_flags.steps == 4
  assert capsys.readouterr().err == "warning: --num_steps is deprecated; use --steps.\n"


def test_a_usage_error_is_a_one_line_error(restore_logging, monkeypatch, capsys):
  from absl import app  # pylint: disable=g-import-not-at-top
  del restore_logging
  monkeypatch.setattr(logging, "get_verbosity", lambda: 0)

  def main(argv):
    raise app.UsageError(f"give one of --a or --b ({argv[0]})")

  with pytest.raises(SystemExit) as exit_info:
    command_line.call_main(main, ["prog"])
  assert exit_info.value.code == 2
  assert capsys.readouterr().err == "error: give one of --a or --b (prog)\n"
