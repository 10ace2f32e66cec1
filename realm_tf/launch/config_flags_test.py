"""Tests of flags generated from a config dataclass: types, defaults, round trip, key flags."""
import dataclasses
import sys
from typing import List, Optional

import pytest
from absl import flags

from realm_tf.launch import config_flags


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


def test_an_integer_list_flag_that_is_not_integers_is_refused_by_name():
  with pytest.raises(ValueError, match="--ks takes comma-separated integers, got '1,x'"):
    config_flags.config_from_flags(_Config, _defined(["prog", "--ks=1,x"]))


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
