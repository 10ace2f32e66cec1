"""What every command-line program shares: quiet logs by default and one-line errors.

Each CLI imports this module before anything that imports TensorFlow, and its
`if __name__ == "__main__":` block calls `command_line.run(main)` instead of `absl.app.run(main)`:

  * Quiet by default. TensorFlow's and gRPC's C++ logs (CUDA probing such as "failed call to
    cuInit" on a machine without a GPU, CPU-feature and oneDNN notices) are off, and so are Beam's
    internals (`BatchElements statistics`, filesystems it cannot load) and the cloud-client
    warnings (GCS, BigQuery, apitools), and TensorFlow's Python INFO lines (one per saved
    SavedModel). The program's own absl logging (stages, progress lines,
    summaries) is unchanged. absl's `-v` / `--verbosity` (1 or more) brings everything back;
    an explicit `TF_CPP_MIN_LOG_LEVEL` / `GRPC_VERBOSITY` in the environment is kept at the
    default verbosity.
  * One-line errors. A flag absl refuses while parsing (an unknown flag, a value outside an enum
    flag's choices, a missing required flag, a validator's refusal) and the project's own error
    types (existing output, missing corpus, index or export, config or work-dir mismatch, bad
    checkpoint, bad dataset, unreachable data service, a usage error, ...; see USER_ERRORS) end
    the program with `error: <message>` on stderr and exit status 2, without a traceback (`-v 1`
    adds it). Parsing errors stop the program before any work. Any other exception is a bug and
    keeps its traceback.
  * Deprecated flag names (`config_flags.define_deprecated_alias`) still work; each one used
    prints one line `warning: --old is deprecated; use --new.` on stderr.

TensorFlow reads `TF_CPP_MIN_LOG_LEVEL` once, when it is imported, and some CLIs import it before
their flags are parsed; so importing this module from a program run with `python -m` already sets
it (and `GRPC_VERBOSITY`, which gRPC reads when it starts) from `-v` / `--verbosity` in
`sys.argv` (a `--flagfile` setting is only seen after parsing, which is in time for the CLIs that
import TensorFlow inside `main`).
"""
import logging as py_logging
import os
import re
import sys
import traceback
from typing import Callable, List, Optional, Sequence, Tuple, Type

from absl import app
from absl import flags
from absl import logging

EXIT_USER_ERROR = 2

# Native log settings when quiet. TF_CPP_MIN_LOG_LEVEL=3 hides INFO, WARNING and ERROR (the
# missing-GPU notice "failed call to cuInit" is an ERROR line); GRPC_VERBOSITY=NONE hides gRPC
# core's lines (e.g. a port it cannot bind). Errors still reach the user as Python exceptions.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "NONE"}
_defaulted = set()  # the QUIET_ENV names this process set (rather than found in the environment)

# Python loggers quieted below verbosity 1, and the level each keeps: Beam and the cloud clients
# only speak to their developers (ERROR and above still show); TensorFlow's Python logger writes
# an INFO line for every SavedModel it saves ("Assets written to", "Sharding callback duration",
# "Writing fingerprint"), while its warnings stay.
QUIET_LEVELS = {**{name: py_logging.ERROR for name in (
    "apache_beam", "google", "googleapiclient", "apitools", "oauth2client", "urllib3", "fsspec")},
                "tensorflow": py_logging.WARNING}

# Packages whose files log through the root logger (e.g. Beam's "apitools not found" warning).
_NOISY_PATH_PARTS = tuple(f"{os.sep}{name}{os.sep}" for name in ("apache_beam", "apitools"))

# (module, class name) of the errors that mean "bad input or environment", not a bug. Matched by
# name along the exception's MRO, so nothing is imported here (subclasses match too).
USER_ERRORS: Tuple[Tuple[str, str], ...] = (
    ("builtins", "FileExistsError"),      # output exists (pass --overwrite)
    ("builtins", "FileNotFoundError"),    # missing input file, directory or glob
    ("builtins", "PermissionError"),
    ("realm_tf.data.corpus", "CorpusError"),
    ("realm_tf.data.documents", "BadInputError"),
    ("realm_tf.data.pretrain_pipeline", "DataServiceError"),
    ("realm_tf.io.atomic", "DiskFullError"),     # out of disk space (ENOSPC) writing a file
    ("realm_tf.io.work_dir", "WorkDirMismatchError"),  # a work dir built with other settings
    ("realm_tf.io.work_dir_lock", "WorkDirBusyError"),  # another live writer holds it
    ("realm_tf.retrieval.bundle", "BundleError"),        # incl. BundleNotFoundError
    ("realm_tf.retrieval.embedder_export", "ExportError"),
    ("realm_tf.retrieval.refresh", "RecallTooLowError"),
    ("realm_tf.retrieval.searcher", "SearcherError"),
    ("realm_tf.training.trainer", "ConfigMismatchError"),
    ("realm_tf.training.trainer", "NonFiniteLossError"),
    ("realm_tf.stages.realm_experiment", "BundleMismatchError"),
    ("realm_tf.training.warm_start", "WarmStartError"),
    ("realm_tf.checkpoints.mapping", "CheckpointMismatchError"),
    ("realm_tf.export.versioning", "ServingExportError"),
    ("realm_tf.openqa.datasets", "DatasetError"),
    ("serving.validation", "ServingError"),              # a gRPC status from the model server
    ("tensorflow.python.framework.errors_impl", "NotFoundError"),  # missing file or checkpoint
    ("tensorflow.python.framework.errors_impl", "DataLossError"),  # corrupt checkpoint / record
    ("absl.app", "UsageError"),           # flags that contradict each other
)


def verbosity_in_argv(argv: Sequence[str]) -> int:
  """absl's verbosity as given by `-v N` / `--verbosity=N` (any absl spelling) in raw `argv`.

  Read before absl parses the flags, to configure TensorFlow before it is imported; 0 (absl's
  INFO default) when absent or not an integer. The last occurrence wins, as in absl.
  """
  verbosity = 0
  args = list(argv)
  for i, arg in enumerate(args):
    if arg == "--":
      break
    if not arg.startswith("-"):
      continue
    name, sep, value = arg.lstrip("-").partition("=")
    if name not in ("v", "verbosity"):
      continue
    if not sep:
      value = args[i + 1] if i + 1 < len(args) else ""
    try:
      verbosity = int(value)
    except ValueError:
      pass
  return verbosity


def set_native_log_levels(verbosity: int) -> None:
  """TensorFlow's and gRPC's C++ logging for `verbosity`: quiet below 1 (unless the environment
  already says), TensorFlow's every line and gRPC's default (errors) from 1 on.

  Only effective before TensorFlow / gRPC start; child processes (Beam workers, servers) inherit it.
  """
  if verbosity >= 1:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    if "GRPC_VERBOSITY" in _defaulted:
      del os.environ["GRPC_VERBOSITY"]
      _defaulted.discard("GRPC_VERBOSITY")
    return
  for name, value in QUIET_ENV.items():
    if name not in os.environ:
      os.environ[name] = value
      _defaulted.add(name)


class _NoisyRootRecords(py_logging.Filter):
  """Drops sub-ERROR records that Beam's (or apitools') modules log through the root logger."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    return record.levelno >= py_logging.ERROR or not any(
        part in (record.pathname or "") for part in _NOISY_PATH_PARTS)


_ROOT_FILTER = _NoisyRootRecords()

# TensorFlow modules that log through absl directly (not the `tensorflow` logger), one INFO line
# per SavedModel or checkpoint: "Sharding callback duration", "Writing fingerprint", "Function
# `serve` contains input name(s) ... unsupported characters".
_TF_PATH_PART = f"{os.sep}tensorflow{os.sep}python{os.sep}"


class _TensorFlowInfoRecords(py_logging.Filter):
  """Drops INFO (and lower) records logged from TensorFlow's own Python files."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    return record.levelno >= py_logging.WARNING or _TF_PATH_PART not in (record.pathname or "")


_TF_FILTER = _TensorFlowInfoRecords()


def quiet_logging(verbosity: int) -> None:
  """Quiets TF's C++ and Python INFO logs, gRPC, Beam and the cloud clients below `verbosity` 1;
  1+ restores.

  The program's own absl logging follows absl's `--verbosity` as usual. Safe to call repeatedly.
  """
  set_native_log_levels(verbosity)
  quiet = verbosity < 1
  for name, level in QUIET_LEVELS.items():
    py_logging.getLogger(name).setLevel(level if quiet else py_logging.NOTSET)
  root = py_logging.getLogger()
  absl_handler = logging.get_absl_handler()  # every record that reaches the terminal passes it
  if quiet:
    if _ROOT_FILTER not in root.filters:
      root.addFilter(_ROOT_FILTER)
    if _TF_FILTER not in absl_handler.filters:
      absl_handler.addFilter(_TF_FILTER)
  else:
    root.removeFilter(_ROOT_FILTER)
    absl_handler.removeFilter(_TF_FILTER)


def is_user_error(exc: BaseException, extra: Sequence[Type[BaseException]] = ()) -> bool:
  """True when `exc` is one of USER_ERRORS (or of `extra`, a CLI's own additions)."""
  if extra and isinstance(exc, tuple(extra)):
    return True
  names = set(USER_ERRORS)
  return any((k.__module__, k.__qualname__) in names for k in type(exc).__mro__)


def print_error(message: str) -> None:
  """Prints `error: <message>` (white space collapsed to one line) on stderr."""
  logging.flush()
  sys.stdout.flush()
  print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


def parse_flags(argv: Sequence[str], flags_parser: Optional[Callable] = None):
  """Parses `argv` (absl's FLAGS, or `flags_parser`); returns what the parser returns.

  A flag absl refuses ends the program with one line `error: ...` and exit status 2, before the
  program does anything; each deprecated flag name used prints one line `warning: ...`.
  """
  try:
    rest = flags_parser(argv) if flags_parser else flags.FLAGS(argv)
  except flags.Error as e:
    print_error(_flag_error_message(e))
    sys.exit(EXIT_USER_ERROR)
  for old, new in deprecated_aliases_used(flags.FLAGS):
    print(f"warning: --{old} is deprecated; use --{new}.", file=sys.stderr, flush=True)
  return rest


def deprecated_aliases_used(flag_values=flags.FLAGS) -> List[Tuple[str, str]]:
  """(old name, new name) of every deprecated alias (`config_flags.define_deprecated_alias`)
  given on the (parsed) command line."""
  used = []
  for name in list(flag_values):
    flag = flag_values[name]
    new = getattr(flag, "deprecated_for", None)
    if new and flag.present and name == flag.name:
      used.append((name, new))
  return used


def _flag_error_message(e: Exception) -> str:
  """absl's message for a refused flag, said plainly: a missing required flag reads
  `--name is required (its help)` rather than absl's `flag --name=None: Flag --name must have a
  value other than None.`, and a validator's message that names the flag itself loses absl's
  `flag --name=value: ` prefix (`flags a=1, b=2: ` for a check across flags); several refusals
  are joined on one line."""
  message = " ".join(str(e).split())
  match = re.fullmatch(r"flag --(\w+)=None: Flag --\1 must have a value other than None\.",
                       message)
  if match:
    name = match.group(1)
    text = (flags.FLAGS[name].help if name in flags.FLAGS else "").replace(" (required)", "")
    return f"--{name} is required" + (f" ({text.rstrip('.')})." if text else ".")
  return " ".join(_without_flag_prefix(" ".join(line.split()))
                  for line in str(e).splitlines() if line.strip())


def _without_flag_prefix(message: str) -> str:
  """One validator's refusal without absl's `flag --name=value: ` (or, for a check across
  flags, `flags a=1, b=2: `) prefix when the refusal names a flag itself."""
  match = re.fullmatch(r"flag --(\w+)=.*?: (.*--\1\b.*)", message)
  if match:
    return match.group(2)
  match = re.fullmatch(r"flags \w+=.*?: (.*--\w+.*)", message)
  return match.group(1) if match else message


def call_main(main: Callable, argv: Sequence[str],
              user_errors: Sequence[Type[BaseException]] = ()):
  """Runs `main(argv)` (flags already parsed) under the CLI policy: quiet logs, one-line errors.

  A user error (see `is_user_error`) prints `error: <message>` on stderr and exits with status 2;
  anything else propagates with its traceback.
  """
  verbosity = logging.get_verbosity()
  quiet_logging(verbosity)
  try:
    return main(argv)
  except Exception as e:  # pylint: disable=broad-except
    if not is_user_error(e, user_errors):
      raise
    if verbosity >= 1:
      logging.error("%s", "".join(traceback.format_exception(e)).rstrip())
    from realm_tf.io.errors import error_text  # pylint: disable=g-import-not-at-top
    print_error(error_text(e))
    sys.exit(EXIT_USER_ERROR)


def run(main: Callable, flags_parser: Optional[Callable] = None,
        user_errors: Sequence[Type[BaseException]] = ()) -> None:
  """`absl.app.run(main)` with quiet logs and one-line errors (see `call_main`).

  `flags_parser` parses the command line instead of absl's FLAGS (e.g. to leave Beam's pipeline
  options unparsed); either way a refused flag is a one-line error (`parse_flags`).
  `user_errors` adds exception types this CLI treats as bad input on top of USER_ERRORS.
  """
  app.run(lambda argv: call_main(main, argv, user_errors),
          flags_parser=lambda argv: parse_flags(argv, flags_parser))


def keep_keras_out() -> None:
  """Keeps Keras out of a process that only serves SavedModels (the model server).

  `import tensorflow` (2.20) imports Keras's optimizers eagerly, for SavedModels that hold Keras
  optimizers; a SavedModel server never uses them, and neither does TF Serving's own binary,
  which has no Keras. Marking `keras` and `tf_keras` absent before TensorFlow is imported makes
  it skip them (it catches the ImportError): 107 MB less RSS in the server's process with
  TF.Text's and ScaNN's ops loaded (668 to 561 MB). Does nothing for a module already imported.
  """
  for name in ("keras", "tf_keras"):
    sys.modules.setdefault(name, None)


def _running_a_cli() -> bool:
  """True when this process runs one of this project's programs (`python -m realm_tf...`,
  `python -m serving...`, or their files), not when a library user (a test, say) imports one."""
  main = sys.modules.get("__main__")
  spec = getattr(main, "__spec__", None)
  if spec is not None:
    return spec.name.split(".")[0] in ("realm_tf", "serving")
  path = os.path.abspath(getattr(main, "__file__", None) or os.devnull)
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  return any(path.startswith(os.path.join(root, package) + os.sep)
             for package in ("realm_tf", "serving"))


if _running_a_cli():
  set_native_log_levels(verbosity_in_argv(sys.argv[1:]))
