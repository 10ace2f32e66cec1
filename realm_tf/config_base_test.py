"""Tests of the config base: JSON round trips, presets expanded, unknown fields refused."""
import dataclasses
import json
from typing import List, Optional, Union

import pytest

from realm_tf.config_base import ConfigBase
from realm_tf.modeling.encoder_config import PRESETS, EncoderConfig
from realm_tf.modeling.retriever import RetrieverConfig
from realm_tf.stages.finetune import FinetuneConfig


@dataclasses.dataclass(frozen=True)
class _Inner(ConfigBase):
  size: int = 2


@dataclasses.dataclass
class _Outer(ConfigBase):
  NESTED = {"inner": _Inner, "encoder": EncoderConfig}
  inner: _Inner = _Inner()
  encoder: Union[str, EncoderConfig] = "tiny"
  names: List[str] = dataclasses.field(default_factory=lambda: ["a"])
  other: Optional[_Inner] = None


def test_round_trip_through_json_expands_presets():
  outer = _Outer(inner=_Inner(5), names=["x", "y"])
  d = json.loads(json.dumps(outer.to_dict()))
  assert d["inner"] == {"size": 5}
  assert d["encoder"] == dataclasses.asdict(PRESETS["tiny"])  # the preset name is not recorded
  back = _Outer.from_dict(d)
  assert back.inner == _Inner(5) and back.encoder == PRESETS["tiny"] and back.names == ["x", "y"]
  assert back.to_dict() == d


def test_to_dict_copies_lists():
  outer = _Outer()
  outer.to_dict()["names"].append("b")
  assert outer.names == ["a"]


def test_unknown_fields_are_refused_unless_the_config_allows_old_records():
  with pytest.raises(ValueError, match=r"Unknown RetrieverConfig fields: \['colour'\]"):
    RetrieverConfig.from_dict(dict(RetrieverConfig().to_dict(), colour=1))
  old = dict(FinetuneConfig().to_dict(), removed_field=3)
  assert FinetuneConfig.from_dict(old).to_dict() == FinetuneConfig().to_dict()


def test_a_nested_field_holding_something_else_is_an_error():
  with pytest.raises(TypeError, match="_Inner expected"):
    _Outer(inner="big").to_dict()


def test_with_defaults_fills_fields_an_older_record_lacks():
  record = _Outer().to_dict()
  del record["names"], record["inner"]["size"]
  record["extra"] = 7  # keys that are not fields are kept
  filled = _Outer.with_defaults(record)
  assert filled == dict(_Outer().to_dict(), extra=7)
  assert "names" not in record  # the record itself is not changed
  # A fine-tuning record written before OpenQAConfig.featurization existed.
  old = FinetuneConfig().to_dict()
  del old["model"]["featurization"]
  assert FinetuneConfig.with_defaults(old) == FinetuneConfig().to_dict()
