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


def test_every_config_is_a_config_base_and_the_refresh_stages_round_trips():
  """Each `*Config` dataclass of realm_tf, serving and benchmarks is a ConfigBase; the
  refresh stage's, two levels deep, survives to_dict → JSON → from_dict."""
  import importlib  # pylint: disable=g-import-not-at-top
  import inspect  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  found, missing = [], []
  for package in ("realm_tf", "serving", "benchmarks"):
    for dirpath, _, names in os.walk(os.path.join(root, package)):
      for name in names:
        if not name.endswith(".py") or name.endswith("_test.py") or "testing" in dirpath:
          continue
        path = os.path.join(dirpath, name)
        with open(path, encoding="utf-8") as f:
          if "Config" not in f.read():
            continue
        module = importlib.import_module(
            os.path.relpath(path, root)[:-3].replace(os.sep, ".").replace(".__init__", ""))
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
          if (cls.__module__ == module.__name__ and cls_name.endswith("Config")
              and dataclasses.is_dataclass(cls)):
            found.append(cls_name)
            if not issubclass(cls, ConfigBase):
              missing.append(f"{module.__name__}.{cls_name}")
  assert len(found) >= 50 and not missing, missing
  from realm_tf.retrieval.refresh import RefreshConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.scann_searcher import ScannConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.stages.refresh_job import RefreshJobConfig  # pylint: disable=g-import-not-at-top
  job = RefreshJobConfig(RefreshConfig("m", "c", "i", scann=ScannConfig(mode="ah")), once=True)
  record = json.loads(json.dumps(job.to_dict()))
  assert record["refresh"]["scann"]["mode"] == "ah"
  assert RefreshJobConfig.from_dict(record) == job
