"""Which models the TF Serving-protocol server serves: TF Serving's `ModelServerConfig` text proto,
version policies and labels, and the version directories found under a base path.

Kept apart from `model_manager` (loading and hot swapping) so a config can be read and checked
without loading TensorFlow models.
"""
import dataclasses
import os
from typing import FrozenSet, List, Optional, Tuple

import grpc
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from realm_tf.config_base import ConfigBase
from realm_tf.io import paths
from serving.validation import ServingError


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
  """Which versions of a model to serve: `latest` N, `all`, or `specific` versions."""
  kind: str = "latest"
  num_versions: int = 1
  versions: FrozenSet[int] = frozenset()

  def select(self, available: List[int]) -> List[int]:
    """Returns the versions (ascending) this policy serves out of `available`."""
    available = sorted(available)
    if self.kind == "all":
      return available
    if self.kind == "specific":
      return [v for v in available if v in self.versions]
    return available[-self.num_versions:] if available else []


@dataclasses.dataclass(frozen=True)
class ModelConfig(ConfigBase):
  """One served model: a name, a base path holding version directories, policy and labels."""
  name: str
  base_path: str
  version_policy: VersionPolicy = VersionPolicy()
  version_labels: Tuple[Tuple[str, int], ...] = ()

  def label_to_version(self, label: str) -> int:
    """Returns the version a label names; unknown labels are INVALID_ARGUMENT, as in TF Serving."""
    for name, version in self.version_labels:
      if name == label:
        return version
    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"Unrecognized servable version label: {label}")


def model_configs_from_proto(config: model_server_config_pb2.ModelServerConfig,
                             source: str = "<proto>",
                             models_dir: Optional[str] = None) -> List[ModelConfig]:
  """Converts a ModelServerConfig proto into `ModelConfig`s.

  Args:
    config: the parsed proto; only `model_config_list` is supported.
    source: file name for error messages.
    models_dir: if set, each base_path is replaced by `<models_dir>/<last component of base_path>`,
      so the shipped models.config (written for the Docker layout `/models/<name>`) can serve a
      local export directory unchanged.

  Raises:
    ValueError: naming `source` and the model, for an unsupported or inconsistent config.
  """
  if config.WhichOneof("config") != "model_config_list":
    raise ValueError(f"{source}: only model_config_list is supported")
  models = []
  seen = set()
  for entry in config.model_config_list.config:
    where = f"{source}: model {entry.name or '<unnamed>'!r}"
    if not entry.name:
      raise ValueError(f"{source}: a model config has no name")
    if entry.name in seen:
      raise ValueError(f"{where} is listed twice")
    seen.add(entry.name)
    if not entry.base_path:
      raise ValueError(f"{where} has no base_path")
    if entry.model_platform and entry.model_platform != "tensorflow":
      raise ValueError(f"{where}: model_platform {entry.model_platform!r} is not supported")
    base_path = entry.base_path
    if models_dir:
      base_path = os.path.join(models_dir, os.path.basename(base_path.rstrip("/")))
    policy_proto = entry.model_version_policy
    kind = policy_proto.WhichOneof("policy_choice") or "latest"
    if kind == "latest":
      num = policy_proto.latest.num_versions or 1
      policy = VersionPolicy("latest", num_versions=num)
    elif kind == "specific":
      if not policy_proto.specific.versions:
        raise ValueError(f"{where}: model_version_policy.specific lists no versions")
      policy = VersionPolicy("specific", versions=frozenset(policy_proto.specific.versions))
    else:
      policy = VersionPolicy("all")
    models.append(ModelConfig(name=entry.name, base_path=paths.absolute(base_path),
                              version_policy=policy,
                              version_labels=tuple(sorted(entry.version_labels.items()))))
  return models


def parse_model_config(text: str, source: str = "<string>",
                       models_dir: Optional[str] = None) -> List[ModelConfig]:
  """Parses a ModelServerConfig text proto (the `--model_config_file` format)."""
  config = model_server_config_pb2.ModelServerConfig()
  try:
    text_format.Parse(text, config)
  except text_format.ParseError as e:
    raise ValueError(f"{source}: not a valid ModelServerConfig text proto: {e}") from None
  return model_configs_from_proto(config, source, models_dir)


def load_model_config_file(path: str, models_dir: Optional[str] = None) -> List[ModelConfig]:
  """Reads and parses `--model_config_file`."""
  with tf.io.gfile.GFile(path) as f:
    return parse_model_config(f.read(), source=path, models_dir=models_dir)


def list_versions(base_path: str) -> List[int]:
  """Returns the servable versions under `base_path` (any TensorFlow filesystem), ascending.

  Only directories named by a non-negative integer that contain `saved_model.pb` (or `.pbtxt`)
  count; `tmp-3`, `.3.partial` or a `3/` still being written without its saved_model.pb are skipped.
  """
  try:
    names = tf.io.gfile.listdir(base_path)
  except tf.errors.NotFoundError:
    return []
  versions = []
  for name in names:
    name = name.rstrip("/")  # object stores list directories with a trailing slash
    if not name.isdigit():
      continue
    path = os.path.join(base_path, name)
    if (tf.io.gfile.exists(os.path.join(path, "saved_model.pb")) or
        tf.io.gfile.exists(os.path.join(path, "saved_model.pbtxt"))):
      versions.append(int(name))
  return sorted(versions)
