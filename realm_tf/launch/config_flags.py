"""Command-line flags generated from a config dataclass, and the dataclass built back from them.

A stage's settings live in one dataclass (the library's input). Writing each flag by hand beside
it doubles every default and every help text and lets the two drift apart; here each field of
the dataclass becomes one absl flag with the field's default, and `config_from_flags` reads them
back. Fields of type int, float, str, bool, their Optional forms, List[str] / Sequence[str] and
List[int] / Sequence[int] (comma-separated) are supported; a field that holds a name or a config
(`Union[str, Config]`, e.g. an encoder preset) is a string flag, the name; an empty value of
an Optional string (`--init=`) is None, so a flag file can unset a default. Help texts come
from a {flag name: text} mapping (a field without one is an error, so every flag is documented). The flags belong to the
program that calls `define_config_flags`: they are its key flags, listed by its --help.

A program whose flags differ from the fields on purpose says so by field name rather than writing
the flag by hand: `names` renames, `defaults` gives the command line its own default (None: the
program derives the value), `required` flags default to None and must be given, `choices` makes a
string field an enum flag, and `multi` makes a List[str] field a repeatable flag.

A flag renamed keeps its old name as a deprecated alias (`define_deprecated_alias`): it sets the
new flag, and `command_line.deprecated_aliases_used` names it after parsing (the CLIs print one
notice line).
"""
import collections.abc
import dataclasses
import typing
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence

from absl import flags

# Flags defined from here are the calling CLI's key flags (its --help lists them), not this
# module's.
flags.disclaim_key_flags()


def _base_type(tp):
  """(type, optional) of a field annotation: Optional[X] → (X, True); Union[str, Config] → str."""
  origin = typing.get_origin(tp)
  if origin is typing.Union:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    optional = len(args) < len(typing.get_args(tp))
    if len(args) == 1:
      return _base_type(args[0])[0], optional
    if str in args:  # a name standing for a value (a preset): the flag takes the name
      return str, optional
  return tp, False


def _is_list_of(tp, item) -> bool:
  return (typing.get_origin(tp) in (list, collections.abc.Sequence)
          and typing.get_args(tp) == (item,))


def _all_integers(values) -> bool:
  """Whether a list flag's values are all integers (checked as the flag is parsed)."""
  try:
    [int(v) for v in values or ()]  # pylint: disable=expression-not-assigned
  except ValueError:
    return False
  return True


def _int_list(name: str, values):
  try:
    return [int(v) for v in values]
  except ValueError:
    raise ValueError(f"--{name} takes comma-separated integers, got {','.join(values)!r}.") \
        from None


def define_config_flags(config_cls, help_texts: Dict[str, str],
                        skip: Iterable[str] = (), flag_values=flags.FLAGS,
                        names: Optional[Mapping[str, str]] = None,
                        required: Iterable[str] = (),
                        defaults: Optional[Mapping[str, Any]] = None,
                        choices: Optional[Mapping[str, Sequence[str]]] = None,
                        multi: Iterable[str] = ()) -> None:
  """Defines one flag per field of `config_cls` (except `skip`), defaulting to the field's.

  `help_texts` is keyed by flag name; the options below, by field name:
    names: {field: flag name}, e.g. a nested config's fields under a prefix.
    required: fields whose flag defaults to None and must be given (paths with no default).
    defaults: {field: the flag's default} where the command line's differs from the field's
      (None where the program derives the value, as its help text says).
    choices: {field: allowed values}: an enum flag.
    multi: List[str] fields given by repeating the flag (--add=a --add=b), not comma-separated.
  """
  names, defaults, choices = names or {}, dict(defaults or {}), choices or {}
  required, multi = tuple(required), tuple(multi)
  defaults.update({field: None for field in required})
  hints = typing.get_type_hints(config_cls)
  for field in dataclasses.fields(config_cls):
    if field.name in skip:
      continue
    name = names.get(field.name, field.name)
    if name not in help_texts:
      raise ValueError(f"No help text for {config_cls.__name__}.{field.name} (--{name}).")
    if field.name in defaults:
      default = defaults[field.name]
    elif field.default is not dataclasses.MISSING:
      default = field.default
    elif field.default_factory is not dataclasses.MISSING:
      default = field.default_factory()
    else:
      raise ValueError(f"{config_cls.__name__}.{field.name} has no default: name it in "
                       "`required` or `defaults`.")
    tp, _ = _base_type(hints[field.name])
    text = help_texts[name]
    if field.name in choices:
      if tp is not str:
        raise TypeError(f"{config_cls.__name__}.{field.name}: choices need a str field.")
      flags.DEFINE_enum(name, default, list(choices[field.name]), text, flag_values=flag_values)
    elif field.name in multi:
      if not _is_list_of(tp, str):
        raise TypeError(f"{config_cls.__name__}.{field.name}: multi needs a List[str] field.")
      flags.DEFINE_multi_string(name, default, text, flag_values=flag_values)
    elif tp is bool:
      flags.DEFINE_bool(name, default, text, flag_values=flag_values)
    elif tp is int:
      flags.DEFINE_integer(name, default, text, flag_values=flag_values)
    elif tp is float:
      flags.DEFINE_float(name, default, text, flag_values=flag_values)
    elif tp is str:
      flags.DEFINE_string(name, default, text, flag_values=flag_values)
    elif _is_list_of(tp, str):
      flags.DEFINE_list(name, default, text, flag_values=flag_values)
    elif _is_list_of(tp, int):
      flags.DEFINE_list(name, None if default is None else [str(v) for v in default], text,
                        flag_values=flag_values)
      flags.register_validator(name, _all_integers, f"--{name} takes comma-separated integers.",
                               flag_values=flag_values)
    else:
      raise TypeError(f"{config_cls.__name__}.{field.name}: unsupported flag type {tp}.")
  if required:
    flags.mark_flags_as_required([names.get(f, f) for f in required], flag_values=flag_values)


def define_deprecated_alias(old: str, new: str, flag_values=flags.FLAGS) -> None:
  """Defines --old as a deprecated name of --new: it sets --new (absl's alias, `--noold` too for
  a bool), its help says so, and `command_line.deprecated_aliases_used` names it when given."""
  flags.DEFINE_alias(old, new, flag_values=flag_values)
  flag = flag_values[old]
  flag.help = f"Deprecated name of --{new}."
  flag.deprecated_for = new


def define_deprecated_aliases(renamed: Mapping[str, str], flag_values=flags.FLAGS) -> None:
  """`define_deprecated_alias` for each {old name: new name}."""
  for old, new in renamed.items():
    define_deprecated_alias(old, new, flag_values)


def config_from_flags(config_cls, flag_values=flags.FLAGS, skip: Iterable[str] = (),
                      names: Optional[Mapping[str, str]] = None, **overrides):
  """An instance of `config_cls` from the flags `define_config_flags` defined (+ `overrides`;
  skipped fields keep their defaults)."""
  names = names or {}
  hints = typing.get_type_hints(config_cls)
  values: Dict[str, Optional[object]] = {}
  for field in dataclasses.fields(config_cls):
    if field.name in skip or field.name in overrides:
      continue
    name = names.get(field.name, field.name)
    value = flag_values[name].value
    base, optional = _base_type(hints[field.name])
    if value is not None and _is_list_of(base, int):
      value = _int_list(name, value)
    if optional and value == "" and base is str:  # `--retriever_init=` unsets a default
      value = None
    values[field.name] = value
  values.update(overrides)
  return config_cls(**values)


def lock_dir(flag_values, own_flag: str, own_dir: Optional[str]) -> Optional[str]:
  """The folder whose writer lock a stage run from the command line holds: the work dir, unless
  `--<own_flag>` alone (without --work_dir) names where the run writes; then `own_dir` (None
  for an output published whole by an atomic rename, which needs no lock)."""
  if flag_values[own_flag].present and not flag_values["work_dir"].present:
    return own_dir
  return flag_values.work_dir
