"""End-to-end test of `python -m realm_tf.launch.refresh_index` (real processes, real files)."""
import json
import os
import subprocess
import sys

from absl import flags

from realm_tf.launch import refresh_index
from realm_tf.testing import cli as launch_testing
from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.retrieval import embedder_export as ee
from realm_tf.testing import retrieval_fixtures as testing


def _run(*args):
  return subprocess.run([sys.executable, "-m", "realm_tf.launch.refresh_index", *args],
                        capture_output=True, text=True, timeout=300)


# The flags of the program (its --help), as they were when written by hand.
_FLAGS = {
    "model_dir", "corpus_dir", "index_dir", "num_shards", "shard_index", "batch_size", "once",
    "add", "remove", "min_recall", "recall_queries", "keep", "grace_seconds", "poll_min_seconds",
    "poll_max_seconds", "part_wait_timeout", "scann_mode", "scann_brute_force_below",
    "scann_tree_above", "scann_num_leaves", "scann_leaves_to_search",
    "scann_training_sample_size", "scann_dimensions_per_block", "scann_aq_threshold",
    "scann_reorder",
    # The distribution flags (realm_tf.launch.distribution_flags) are this program's too.
    "tpu", "strategy", "num_cpu_devices", "mixed_precision", "jit_compile"}


def test_flags_are_generated_from_the_configs_and_parse_into_them():
  from realm_tf.retrieval.refresh import RefreshConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.scann_searcher import ScannConfig  # pylint: disable=g-import-not-at-top
  assert not flags.FLAGS.flags_by_module_dict().get(refresh_index.__name__)
  fv = flags.FlagValues()
  refresh_index.define_flags(fv)
  assert {f.name for f in fv.get_key_flags_for_module(refresh_index)} == _FLAGS
  fv(["refresh_index", "--model_dir=/m", "--corpus_dir=/c", "--index_dir=/i"])
  assert refresh_index.config_from_flags(fv) == RefreshConfig(model_dir="/m", corpus_dir="/c",
                                                              index_dir="/i")
  fv(["refresh_index", "--scann_mode=ah", "--scann_reorder=50", "--scann_aq_threshold=0.1",
      "--scann_leaves_to_search=4", "--keep=2", "--part_wait_timeout=9"])
  config = refresh_index.config_from_flags(fv)
  assert config.scann == ScannConfig(mode="ah", reordering_num_neighbors=50,
                                     anisotropic_quantization_threshold=0.1,
                                     num_leaves_to_search=4)
  assert (config.keep, config.part_wait_timeout) == (2, 9.0)


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
