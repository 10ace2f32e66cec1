"""config_program: a config dataclass's command line, parsed into the config `run` receives."""
import dataclasses
import os
import subprocess
import sys
import textwrap
from typing import List

from absl import flags
import pytest

from realm_tf.launch import config_program
from realm_tf.testing import cli as testing


@dataclasses.dataclass
class _Config:
  steps: int = 3
  mode: str = "a"
  names: List[str] = dataclasses.field(default_factory=lambda: ["x"])


HELP = {"steps": "Steps.", "mode": "Mode.", "names": "Names."}


def test_parse_builds_the_config_the_command_line_describes():
  assert config_program.parse(_Config, HELP, ["prog"]) == _Config()
  assert config_program.parse(_Config, HELP, ["prog", "--steps=7", "--names=p,q"]) == _Config(
      steps=7, names=["p", "q"])
  options = {"choices": {"mode": ["a", "b"]}}
  assert config_program.parse(_Config, HELP, ["prog", "--mode=b"], options).mode == "b"
  with pytest.raises(flags.IllegalFlagValueError):
    config_program.parse(_Config, HELP, ["prog", "--mode=c"], options)


def test_main_runs_the_config_lists_its_flags_and_sets_the_exit_status(tmp_path):
  program = tmp_path / "prog.py"
  program.write_text(textwrap.dedent('''
      import dataclasses
      from realm_tf.launch import config_program

      @dataclasses.dataclass
      class Config:
        steps: int = 3
        fail: bool = False

      def run(config):
        print("ran", config)
        return config.fail

      if __name__ == "__main__":
        config_program.main(Config, {"steps": "Steps.", "fail": "Fail."}, run,
                            exit_status=lambda failed: 1 if failed else 0)
      '''))

  def call(*args):
    return subprocess.run([sys.executable, str(program), *args], capture_output=True, text=True,
                          cwd=testing.ROOT, timeout=300, check=False,
                          env=dict(os.environ, PYTHONPATH=testing.ROOT))

  proc = call("--steps=5")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "ran Config(steps=5, fail=False)" in proc.stdout
  assert call("--fail").returncode == 1
  helpshort = call("--helpshort")
  assert "--steps" in helpshort.stdout + helpshort.stderr
