"""Tests of flags generated from a config dataclass: types, defaults, round trip, key flags."""
import dataclasses
import sys
from typing import List, Optional, Union

import pytest
from absl import flags

from realm_tf.launch import config_flags
from realm_tf.utils import command_line


@dataclasses.dataclass
class _Config:
  steps: int = 3
  rate: float = 0.5
  name: str = "a"
  dir: Optional[str] = None
  on: bool = True
  inputs: List[str] = dataclasses.field(default_factory=lambda: ["x", "y"])
  ks: List[int] = dataclasses.field(default_factory=lambda: [1, 5])


HELP = {f.name: f"The {f.name}." for f in dataclasses.fields(_Config)}


def _defined(argv=("prog",)):
  fv = flags.FlagValues()
  config_flags.define_config_flags(_Config, HELP, flag_values=fv)
  fv(list(argv))
  return fv


def test_defaults_round_trip_and_flags_override():
  assert config_flags.config_from_flags(_Config, _defined()) == _Config()
  fv = _defined(["prog", "--steps=7", "--rate=0.25", "--noon", "--inputs=p,q", "--dir=/d",
                 "--ks=2,20"])
  assert config_flags.config_from_flags(_Config, fv, name="b") == _Config(
      steps=7, rate=0.25, name="b", dir="/d", on=False, inputs=["p", "q"], ks=[2, 20])


def test_an_empty_optional_string_is_none_and_an_empty_plain_string_stays_empty():
  config = config_flags.config_from_flags(_Config, _defined(["prog", "--dir=", "--name="]))
  assert config.dir is None and config.name == ""


def test_an_integer_list_flag_that_is_not_integers_is_refused_by_name_as_it_is_parsed():
  with pytest.raises(flags.IllegalFlagValueError, match="--ks takes comma-separated integers"):
    _defined(["prog", "--ks=1,x"])
  with pytest.raises(ValueError, match="--ks takes comma-separated integers, got '1,x'"):
    fv = _defined()
    fv["ks"].value = ["1", "x"]  # set without parsing: still refused by name
    config_flags.config_from_flags(_Config, fv)


def test_flags_are_the_calling_programs_key_flags():
  # --help lists a program's key flags; flags generated here must belong to their caller.
  fv = _defined()
  mine = {f.name for f in fv.get_key_flags_for_module(sys.modules[__name__])}
  assert mine == set(HELP)
  assert not fv.get_key_flags_for_module(config_flags)


def test_a_field_without_help_is_refused():
  with pytest.raises(ValueError, match="_Config.rate"):
    config_flags.define_config_flags(_Config, {"steps": "s"}, flag_values=flags.FlagValues())


def test_distribution_flags_are_the_calling_programs_key_flags_too():
  from realm_tf.launch import distribution_flags  # pylint: disable=g-import-not-at-top
  fv = flags.FlagValues()
  distribution_flags.define_flags(fv)
  mine = {f.name for f in fv.get_key_flags_for_module(sys.modules[__name__])}
  assert {"tpu", "strategy", "mixed_precision", "jit_compile"} <= mine


def test_renamed_fields_round_trip_under_their_flag_names():
  names = {"steps": "my_steps", "rate": "my_rate"}
  help_texts = {"my_steps": "s", "my_rate": "r"}
  skip = ("name", "dir", "on", "inputs", "ks")
  fv = flags.FlagValues()
  config_flags.define_config_flags(_Config, help_texts, skip=skip, flag_values=fv, names=names)
  fv(["prog", "--my_steps=9"])
  assert "steps" not in fv and fv["my_rate"].value == 0.5
  assert config_flags.config_from_flags(_Config, fv, skip=skip, names=names) == _Config(steps=9)


@dataclasses.dataclass
class _Job:
  path: str
  mode: str = "fast"
  preset: Union[str, _Config] = "tiny"
  adds: List[str] = dataclasses.field(default_factory=list)
  size: int = 128
  on: bool = False


_JOB_HELP = {"path": "p", "mode": "m", "preset": "e", "adds": "a", "size": "s", "on": "o"}


def _job_flags(argv, **kwargs):
  fv = flags.FlagValues()
  config_flags.define_config_flags(_Job, _JOB_HELP, flag_values=fv, **kwargs)
  fv(list(argv))
  return fv


def test_required_choices_multi_defaults_and_a_name_or_config_field():
  kwargs = dict(required=("path",), choices={"mode": ("fast", "slow")}, multi=("adds",),
                defaults={"size": None, "on": True})
  fv = _job_flags(["prog", "--path=/p"], **kwargs)
  assert (fv["path"].default, fv["size"].default, fv["on"].default) == (None, None, True)
  assert fv["mode"].parser.enum_values == ["fast", "slow"] and fv["preset"].value == "tiny"
  fv = _job_flags(["prog", "--path=/p", "--mode=slow", "--adds=a,b", "--adds=c", "--preset=x",
                   "--noon"], **kwargs)
  assert config_flags.config_from_flags(_Job, fv, size=7) == _Job(
      path="/p", mode="slow", preset="x", adds=["a,b", "c"], size=7, on=False)
  with pytest.raises(flags.IllegalFlagValueError):
    _job_flags(["prog", "--path=/p", "--mode=medium"], **kwargs)
  with pytest.raises(flags.IllegalFlagValueError, match="--path"):  # required: must be given
    _job_flags(["prog"], **kwargs)


def test_a_field_without_a_default_must_be_required_or_given_one():
  with pytest.raises(ValueError, match="_Job.path has no default"):
    config_flags.define_config_flags(_Job, _JOB_HELP, flag_values=flags.FlagValues())
  fv = _job_flags(["prog"], defaults={"path": "/d"})
  assert config_flags.config_from_flags(_Job, fv) == _Job(path="/d")


def test_choices_and_multi_need_a_string_field():
  with pytest.raises(TypeError, match="_Job.size: choices"):
    config_flags.define_config_flags(_Job, _JOB_HELP, required=("path",), choices={"size": "ab"},
                                     flag_values=flags.FlagValues())
  with pytest.raises(TypeError, match="_Job.mode: multi"):
    config_flags.define_config_flags(_Job, _JOB_HELP, required=("path",), multi=("mode",),
                                     flag_values=flags.FlagValues())


def test_a_deprecated_alias_sets_the_new_flag_and_is_named_when_given():
  fv = flags.FlagValues()
  config_flags.define_config_flags(_Config, HELP, flag_values=fv)
  config_flags.define_deprecated_aliases({"step_count": "steps", "enabled": "on"}, fv)
  fv(["prog", "--step_count=9", "--noenabled"])
  assert config_flags.config_from_flags(_Config, fv) == _Config(steps=9, on=False)
  assert command_line.deprecated_aliases_used(fv) == [("step_count", "steps"), ("enabled", "on")]
  assert fv["step_count"].help == "Deprecated name of --steps."
  fv = flags.FlagValues()
  config_flags.define_config_flags(_Config, HELP, flag_values=fv)
  config_flags.define_deprecated_alias("step_count", "steps", fv)
  fv(["prog", "--steps=2"])
  assert not command_line.deprecated_aliases_used(fv)
