"""A command-line program whose settings are one config dataclass: flags from it, then `run(config)`.

The benchmarks are such programs. Each keeps its settings in a dataclass and its work in
`run(config)`, and its `__main__` block only says which those are:

  if __name__ == "__main__":
    from realm_tf.launch import config_program
    config_program.main(MyBenchConfig, HELP, run)

Here the dataclass's fields become absl flags (`config_flags.define_config_flags`, the same
generation as the stage CLIs'), the command line is parsed and the config built, and `run` gets
it, under the CLIs' policy (`command_line.run`: quiet logs, one-line errors with exit status 2). So
the program module itself never imports absl flags, every flag is documented by `HELP`
and defaults to its field, and tests build the config from a command line with `parse`.
The flags count as the program's own (`--helpshort` lists them).
"""
import sys
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

from absl import flags

from realm_tf.utils import command_line
from realm_tf.launch import config_flags

# Flags defined from here belong to the program that calls `main` (its --helpshort lists them).
flags.disclaim_key_flags()


def define_flags(config_cls, help_texts: Dict[str, str], flag_values=flags.FLAGS,
                 options: Optional[Mapping[str, Any]] = None) -> None:
  """One flag per field of `config_cls`; `options` are `define_config_flags`'s (choices, ...)."""
  config_flags.define_config_flags(config_cls, help_texts, flag_values=flag_values,
                                   **dict(options or {}))


def parse(config_cls, help_texts: Dict[str, str], argv: Sequence[str],
          options: Optional[Mapping[str, Any]] = None):
  """The config a command line `argv` (argv[0] the program) describes, on fresh flags."""
  fv = flags.FlagValues()
  define_flags(config_cls, help_texts, fv, options)
  fv(list(argv))
  return config_flags.config_from_flags(config_cls, fv)


def main(config_cls, help_texts: Dict[str, str], run: Callable[[Any], Any],
         options: Optional[Mapping[str, Any]] = None,
         exit_status: Optional[Callable[[Any], int]] = None) -> None:
  """Defines the flags of `config_cls`, parses `sys.argv` (`command_line.run`), and calls
  `run(config)`; `exit_status(result)` (default: 0) is the program's exit status."""
  define_flags(config_cls, help_texts, flags.FLAGS, options)

  def program(argv):
    del argv
    result = run(config_flags.config_from_flags(config_cls, flags.FLAGS))
    sys.exit(exit_status(result) if exit_status else 0)

  command_line.run(program)  # a refused flag or a user error: one line `error: ...`, exit status 2
