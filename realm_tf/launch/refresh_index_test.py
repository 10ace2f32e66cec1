"""End-to-end test of `python -m realm_tf.launch.refresh_index` (real processes, real files)."""
import json
import os
import subprocess
import sys

import pytest
from absl import flags

from realm_tf.launch import refresh_index
from realm_tf.testing import cli as launch_testing
from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.retrieval import embedder_export as ee
from realm_tf.testing import retrieval_fixtures as testing


def _run(*args):
  return subprocess.run([sys.executable, "-m", "realm_tf.launch.refresh_index", *args],
                        capture_output=True, text=True, timeout=300)


# The flags of the program (its --help) with the defaults a user sees, as when written by hand;
# without --mixed_precision and --jit_compile, which the job could not honour (it runs the
# exported embedder as saved).
_DEFAULTS = {
    "work_dir": "runs/default", "model_dir": None, "corpus_dir": None, "index_dir": None, "num_shards": 1, "shard_index": 0,
    "batch_size": 32, "once": False, "add": [], "remove": None, "min_recall": 0.9,
    "recall_queries": 1000, "keep": 3, "grace_seconds": 120.0, "poll_min_seconds": 5.0,
    "poll_max_seconds": 300.0, "part_wait_timeout": None, "scann_mode": "auto",
    "scann_brute_force_below": 20000, "scann_tree_above": 100000, "scann_num_leaves": None,
    "scann_leaves_to_search": None, "scann_training_sample_size": None,
    "scann_dimensions_per_block": 2, "scann_aq_threshold": 0.2, "scann_reorder": None,
    # The distribution flags (realm_tf.launch.distribution_flags) are this program's too.
    "tpu": None, "strategy": "default", "num_cpu_devices": None}


def test_flags_are_generated_from_the_configs_and_parse_into_them():
  from realm_tf.retrieval.refresh import RefreshConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.scann_searcher import ScannConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.stages.refresh_job import RefreshJobConfig  # pylint: disable=g-import-not-at-top
  assert not flags.FLAGS.flags_by_module_dict().get(refresh_index.__name__)
  fv = flags.FlagValues()
  refresh_index.define_flags(fv)
  assert {f.name: f.default for f in fv.get_key_flags_for_module(refresh_index)} == _DEFAULTS
  assert "mixed_precision" not in fv and "jit_compile" not in fv  # unknown flags here
  assert fv["scann_mode"].parser.enum_values == ["auto", "brute_force", "ah", "tree_ah"]
  for name in ("model_dir", "once", "add", "remove", "scann_mode"):
    assert refresh_index.HELP[name] in fv[name].help, name  # from the table, i.e. generated
  fv(["refresh_index", "--model_dir=/m", "--work_dir=/w"])  # the other folders: the work dir's
  assert refresh_index.config_from_flags(fv) == RefreshConfig(
      model_dir="/m", corpus_dir="/w/corpus", index_dir="/w/index")
  fv(["refresh_index", "--model_dir=/m", "--corpus_dir=/c", "--index_dir=/i"])
  assert refresh_index.config_from_flags(fv) == RefreshConfig(model_dir="/m", corpus_dir="/c",
                                                              index_dir="/i")
  assert refresh_index.job_from_flags(fv) == RefreshJobConfig(refresh_index.config_from_flags(fv))
  fv(["refresh_index", "--scann_mode=ah", "--scann_reorder=50", "--scann_aq_threshold=0.1",
      "--scann_leaves_to_search=4", "--keep=2", "--part_wait_timeout=9", "--once",
      "--add=/a,b", "--add=/c", "--remove=/r.txt"])
  config = refresh_index.config_from_flags(fv)
  assert config.scann == ScannConfig(mode="ah", reordering_num_neighbors=50,
                                     anisotropic_quantization_threshold=0.1,
                                     num_leaves_to_search=4)
  assert (config.keep, config.part_wait_timeout) == (2, 9.0)
  assert refresh_index.job_from_flags(fv) == RefreshJobConfig(config, once=True,
                                                              add=["/a,b", "/c"], remove="/r.txt")


# Slow (a TensorFlow start-up): the flags test above checks in-process that the two flags are not
# defined, and utils/command_line_test that an unknown flag is a one-line error.
@pytest.mark.slow
def test_precision_flags_it_cannot_honour_are_refused(tmp_path):
  """The job embeds with the exported SavedModel, whose dtypes and compilation were fixed at
  export: --mixed_precision (and --jit_compile: see _DEFAULTS) is an unknown flag here, not
  silently ignored."""
  proc = _run(f"--model_dir={tmp_path}", f"--corpus_dir={tmp_path}",
              f"--index_dir={tmp_path / 'index'}", "--once", "--mixed_precision=bfloat16")
  launch_testing.assert_one_line_error(proc, "Unknown command line flag 'mixed_precision'")
  assert not (tmp_path / "index").exists()


def test_no_export_is_a_one_line_error(tmp_path):
  model_dir = tmp_path / "model"
  model_dir.mkdir()
  proc = launch_testing.run_cli("realm_tf.launch.refresh_index", f"--model_dir={model_dir}",
                                f"--corpus_dir={tmp_path / 'corpus'}",
                                f"--index_dir={tmp_path / 'index'}", "--once")
  launch_testing.assert_one_line_error(proc, f"No embedder export under {model_dir}")


def test_cli_once_with_two_replicas_then_bad_corpus(tmp_path):
  model_dir, corpus_dir, index_dir = (str(tmp_path / n) for n in ("model", "corpus", "index"))
  ee.export_embedder(testing.make_retriever(seed=6), model_dir, 10)
  ids = testing.make_corpus(corpus_dir, (5, 6, 7), seed=8)
  common = [f"--model_dir={model_dir}", f"--index_dir={index_dir}", "--grace_seconds=0"]
  proc = _run(*common, f"--corpus_dir={corpus_dir}", "--once", "--strategy=mirrored",
              "--num_cpu_devices=2", "--batch_size=2", "--scann_reorder=50")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"Published {index_dir}/00000001" in proc.stdout
  b = bundle_lib.latest(index_dir)
  assert b.manifest["num_replicas"] == 2 and b.num_rows == 18
  assert b.manifest["searcher"]["config"]["reordering_num_neighbors"] == 50
  assert list(b.block_ids) == ids

  long_docs = str(tmp_path / "long")
  testing.make_corpus(long_docs, (3,), max_block_length=288)
  proc = _run(*common, f"--corpus_dir={long_docs}", "--once")
  launch_testing.assert_one_line_error(proc, f"{long_docs}/manifest.json has max_block_length=288")
  assert bundle_lib.list_versions(index_dir) == [1]
  with open(os.path.join(index_dir, "00000001", "manifest.json")) as f:
    assert json.load(f)["step"] == 10
