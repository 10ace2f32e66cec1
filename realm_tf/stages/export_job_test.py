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
])
def test_run_refuses_bad_settings_before_loading(tmp_path, changes, error):
  # No model_dir at all: reaching load_model would fail with "exactly one" instead.
  config = dataclasses.replace(export_job.ExportConfig(export_base=str(tmp_path)), **changes)
  with pytest.raises(ValueError, match=error):
    export_job.run(config)
