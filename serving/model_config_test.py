"""Tests of the served-model config: ModelServerConfig parsing, version policies, labels and
version discovery."""
import os

import grpc
import pytest

from realm_tf.testing import toy_models
from serving import model_config
from serving.model_config import VersionPolicy
from serving.validation import ServingError

HERE = os.path.dirname(__file__)


@pytest.fixture(scope="module")
def numeric_v1(tmp_path_factory):
  """A base path holding numeric model version 1."""
  base = str(tmp_path_factory.mktemp("models") / "num")
  toy_models.write_numeric_model(base, 1)
  return base


def test_shipped_models_config_lists_realm_models():
  configs = model_config.load_model_config_file(os.path.join(HERE, "models.config"))
  assert [c.name for c in configs] == ["realm_openqa", "realm_query_embedder",
                                       "realm_doc_embedder", "realm_searcher", "realm_reader"]
  assert all(c.base_path == f"/models/{c.name}" for c in configs)
  assert all(c.version_policy == VersionPolicy() for c in configs)
  local = model_config.load_model_config_file(os.path.join(HERE, "models.config"),
                                              models_dir="/srv/exports")
  assert local[0].base_path == "/srv/exports/realm_openqa"


def test_parse_policies_and_labels():
  configs = model_config.parse_model_config("""
    model_config_list {
      config { name: "a" base_path: "/m/a" model_platform: "tensorflow"
               model_version_policy { specific { versions: 3 versions: 5 } }
               version_labels { key: "stable" value: 3 }
               version_labels { key: "canary" value: 5 } }
      config { name: "b" base_path: "/m/b" model_version_policy { latest { num_versions: 2 } } }
      config { name: "c" base_path: "/m/c" model_version_policy { all {} } }
    }""")
  a, b, c = configs
  assert a.version_policy.select([1, 3, 4, 5]) == [3, 5]
  assert a.label_to_version("canary") == 5
  assert b.version_policy.select([1, 3, 4, 5]) == [4, 5]
  assert c.version_policy.select([5, 1]) == [1, 5]
  with pytest.raises(ServingError) as info:
    a.label_to_version("nope")
  assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("text,fragment", [
    ("model_config_list { config { name: 'a' base_path: '/x' } config { name: 'a' "
     "base_path: '/y' } }", "listed twice"),
    ("model_config_list { config { name: 'a' } }", "has no base_path"),
    ("model_config_list { config { base_path: '/x' } }", "has no name"),
    ("model_config_list { config { name: 'a' base_path: '/x' model_platform: 'pytorch' } }",
     "model_platform 'pytorch'"),
    ("model_config_list { config { nmae: 'a' } }", "not a valid ModelServerConfig"),
])
def test_config_errors_name_the_file(text, fragment):
  with pytest.raises(ValueError) as info:
    model_config.parse_model_config(text, source="models.config")
  assert "models.config" in str(info.value) and fragment in str(info.value)


def test_list_versions_ignores_temp_and_partial_dirs(tmp_path, numeric_v1):
  base = tmp_path / "m"
  base.mkdir()
  os.symlink(os.path.join(numeric_v1, "1"), base / "7")
  (base / "12").mkdir()                       # Partial: no saved_model.pb yet.
  (base / "tmp-9").mkdir()
  (base / "tmp-9" / "saved_model.pb").write_bytes(b"")
  (base / ".3.partial").mkdir()
  (base / "notes.txt").write_text("x")
  assert model_config.list_versions(str(base)) == [7]
  assert model_config.list_versions(str(tmp_path / "missing")) == []


def test_versions_and_config_file_on_an_object_store(tmp_path, numeric_v1):
  # ram:// (TF's in-memory filesystem) stands in for gs://: no open()/os.path call reaches it.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realm_tf.io import paths  # pylint: disable=g-import-not-at-top
  root = f"ram://{tmp_path.name}"
  paths.copy_tree(os.path.join(numeric_v1, "1"), f"{root}/num/4")
  tf.io.gfile.makedirs(f"{root}/num/5")                 # partial: no saved_model.pb yet
  assert model_config.list_versions(f"{root}/num") == [4]
  assert model_config.list_versions(f"{root}/missing") == []
  with tf.io.gfile.GFile(f"{root}/models.config", "w") as f:
    f.write(f"model_config_list {{ config {{ name: 'num' base_path: '{root}/num/' }} }}")
  [config] = model_config.load_model_config_file(f"{root}/models.config")
  assert config.base_path == f"{root}/num"
  tf.io.gfile.rmtree(root)
