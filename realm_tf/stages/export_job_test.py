"""Tests for realm_tf.stages.export_job: the export run's settings and its refusals before any model is
loaded. (launch/export_test.py runs the whole job through its CLI on a micro model.)"""
import dataclasses

import pytest

from realm_tf.export import components
from realm_tf.stages import export_job
from realm_tf.export.versioning import ServingExportError


def test_load_model_needs_exactly_one_source():
  with pytest.raises(ValueError, match="exactly one"):
    export_job.load_model()
  with pytest.raises(ValueError, match="exactly one"):
    export_job.load_model(model_dir="/a", init_checkpoint="/b")
  with pytest.raises(ValueError, match="needs --index_dir and --corpus_dir"):
    export_job.load_model(init_checkpoint="/b")


def test_missing_model_dir_names_it(tmp_path):
  with pytest.raises(FileNotFoundError, match="has no config.json"):
    export_job.load_model(model_dir=str(tmp_path / "missing"))


def test_variants_and_scann_mode():
  assert export_job.variants_of("both") == ("stock", "scann")
  assert export_job.variants_of("scann") == ("scann",)
  with pytest.raises(ServingExportError, match="Unknown variant"):
    export_job.variants_of("fast")
  assert export_job.scann_config_of("brute_force").mode == "brute_force"
  with pytest.raises(ServingExportError, match="Unknown ScaNN mode"):
    export_job.scann_config_of("exact")


def test_config_defaults_are_the_cli_defaults():
  config = export_job.ExportConfig()
  assert components.parse_components(config.components) == components.COMPONENTS
  assert (config.variant, config.num_answers, config.max_candidates, config.searcher_k,
          config.scann_mode) == ("both", 5, 20, 10, "auto")
  assert config.version is None and config.warmup_questions is None


@pytest.mark.parametrize("changes, error", [
    ({"export_base": None}, "--export_base is required"),
    ({"components": ["readr"]}, "unknown .'readr'."),
    ({"variant": "fast"}, "Unknown variant"),
    ({"scann_mode": "exact"}, "Unknown ScaNN mode"),
    ({"scann_source": "import"}, "Unknown ScaNN source"),
])
def test_run_refuses_bad_settings_before_loading(tmp_path, changes, error):
  # No model_dir at all: reaching load_model would fail with "exactly one" instead.
  config = dataclasses.replace(export_job.ExportConfig(export_base=str(tmp_path)), **changes)
  with pytest.raises(ValueError, match=error):
    export_job.run(config)


@pytest.mark.slow  # a micro model exported three times: over 20 s on 2 busy cores
def test_rerun_after_a_kill_finishes_the_killed_version(tmp_path):
  """A run killed between two models' publishes leaves its pending record and the models it
  published; the same command again publishes the rest under the same version (not a second
  version beside a partial first), then forgets the record."""
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  from realm_tf.testing import export_models  # pylint: disable=g-import-not-at-top
  system = export_models.build_micro_system(str(tmp_path / "work"))
  model_dir = export_models.write_model_dir(system, str(tmp_path / "finetune"))
  base = str(tmp_path / "serving")
  config = export_job.ExportConfig(model_dir=model_dir, export_base=base, variant="stock",
                                   components=["query_embedder", "searcher"], searcher_k=3)
  export_job.run(config)
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def searcher_answers():
    """What the published searcher returns for fixed queries (the graph's byte size is not
    stable across saves in one process: traced function names carry a counter)."""
    served = tf.saved_model.load(os.path.join(base, "realm_searcher", "1"))
    dim = served.signatures["serving_default"].structured_input_signature[1][
        "query_embeddings"].shape[-1]
    queries = np.random.default_rng(0).normal(size=(4, dim)).astype(np.float32)
    out = served.signatures["serving_default"](query_embeddings=tf.constant(queries))
    return {k: v.numpy() for k, v in out.items()}

  first = searcher_answers()
  # The state a kill after the query embedder's publish leaves.
  shutil.rmtree(os.path.join(base, "realm_searcher", "1"))
  with open(os.path.join(base, export_job.PENDING), "w", encoding="utf-8") as f:
    json.dump({"version": 1, "config": {**dataclasses.asdict(config), "version": None}}, f)
  summary = export_job.run(config)
  assert summary["models"] == {n: os.path.join(base, n, "1")
                               for n in ("realm_query_embedder", "realm_searcher")}
  assert os.listdir(os.path.join(base, "realm_searcher")) == ["1"]
  assert os.listdir(os.path.join(base, "realm_query_embedder")) == ["1"]
  again_answers = searcher_answers()
  assert sorted(again_answers) == sorted(first) == ["block_ids", "rows", "scores"]
  for name, value in first.items():
    np.testing.assert_array_equal(again_answers[name], value, err_msg=name)
  assert not os.path.exists(os.path.join(base, export_job.PENDING))
  # The same command again (an unchanged model): nothing to do, version 1 stays the only one.
  again = export_job.run(config)
  assert again["nothing_to_do"] and again["models"] == summary["models"]
  assert os.listdir(os.path.join(base, "realm_searcher")) == ["1"]
  # Other settings are another export: the next version.
  assert export_job.run(dataclasses.replace(config, searcher_k=2))["models"]["realm_searcher"] \
      == os.path.join(base, "realm_searcher", "2")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"version": 3}'])
def test_a_damaged_export_record_is_a_one_line_error_naming_it(tmp_path, text):
  path = tmp_path / export_job.DONE
  path.write_text(text, encoding="utf-8")
  with pytest.raises(ValueError, match=f"{path}: not an export record") as raised:
    export_job._read_record(str(path))  # pylint: disable=protected-access
  assert "\n" not in str(raised.value)
  assert export_job._read_record(str(tmp_path / "absent.json")) is None  # pylint: disable=protected-access
