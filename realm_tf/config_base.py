"""The one base of the project's config dataclasses: `to_dict` / `from_dict` for JSON records.

Every stage records its config in `<model_dir>/config.json` and refuses to resume under another
one, and exports carry the model configs that serving rebuilds from; so each config must turn
into plain JSON and back. Nested configs are named in `NESTED` ({field: config class}); a nested
field may also hold a preset name (an encoder preset such as "tiny"), which `to_dict` expands
into the full config through the class's `resolve`, so that a record never depends on what a
preset name meant when it was written.
"""
import copy
import dataclasses
from typing import Any, ClassVar, Dict, Mapping


class ConfigBase:
  """Mixin for config dataclasses: `to_dict()` (JSON-ready, nested configs expanded) and
  `from_dict()` (nested dicts rebuilt; unknown fields refused unless IGNORE_UNKNOWN)."""

  NESTED: ClassVar[Mapping[str, type]] = {}
  # True for configs whose older records may carry fields that were since removed.
  IGNORE_UNKNOWN: ClassVar[bool] = False

  @classmethod
  def resolve(cls, value: Any) -> "ConfigBase":
    """The config a nested field's value stands for (an instance, or a preset name where the
    class knows its presets); the default accepts instances only."""
    if isinstance(value, cls):
      return value
    raise TypeError(f"{cls.__name__} expected, got {value!r}.")

  def to_dict(self) -> Dict[str, Any]:
    """Every field, nested configs as their own dicts; lists and dicts are copied."""
    out = {}
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      nested = self.NESTED.get(field.name)
      if nested is not None and value is not None:
        value = nested.resolve(value).to_dict()
      else:
        value = copy.deepcopy(value)
      out[field.name] = value
    return out

  @classmethod
  def with_defaults(cls, record: Mapping[str, Any]) -> Dict[str, Any]:
    """A copy of `record` (a `to_dict` record, possibly written before some fields existed) with
    every missing field that has a default filled in as `to_dict` writes it, nested configs
    included; other keys are kept. So a record that lacks a field added since compares equal to
    a new one that holds the field's default (resuming runs written by older code)."""
    out = dict(record)
    for field in dataclasses.fields(cls):
      nested = cls.NESTED.get(field.name)
      if field.name in out:
        if nested is not None and isinstance(out[field.name], Mapping):
          out[field.name] = nested.with_defaults(out[field.name])
        continue
      if field.default is not dataclasses.MISSING:
        value = field.default
      elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
      else:
        continue
      if nested is not None and value is not None:
        value = nested.resolve(value).to_dict()
      out[field.name] = copy.deepcopy(value)
    return out

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]):
    """The config a `to_dict` record describes."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown and not cls.IGNORE_UNKNOWN:
      raise ValueError(f"Unknown {cls.__name__} fields: {sorted(unknown)}")
    values = {k: v for k, v in d.items() if k in known}
    for name, nested in cls.NESTED.items():
      if isinstance(values.get(name), Mapping):
        values[name] = nested.from_dict(values[name])
    return cls(**values)
