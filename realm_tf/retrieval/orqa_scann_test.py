"""Tests for ORQA's ScaNN settings and the released index's record of them."""
import math

from realm_tf.retrieval import orqa_scann


class _Bundle:
  """An index bundle as far as these functions read one."""

  def __init__(self, manifest, num_rows=0):
    self.manifest, self.num_rows, self.path = manifest, num_rows, "/index/00000001"


def test_orqa_settings_at_the_paper_scale_and_clamped_to_a_small_corpus():
  big = orqa_scann.orqa_scann_config(13_353_718)
  assert (big.mode, big.num_leaves, big.num_leaves_to_search, big.training_sample_size,
          big.dimensions_per_block, big.reordering_num_neighbors, big.rescoring) == (
              "tree_ah", 1000, 100, 100_000, 2, 1, "gather")
  assert math.isnan(big.anisotropic_quantization_threshold)
  # At most one leaf per 16 points, the searched leaves and the sample within the corpus.
  small = orqa_scann.orqa_scann_config(2000)
  assert (small.num_leaves, small.num_leaves_to_search, small.training_sample_size) == (
      125, 100, 2000)
  tiny = orqa_scann.orqa_scann_config(20)
  assert (tiny.num_leaves, tiny.num_leaves_to_search, tiny.training_sample_size) == (1, 1, 20)


def test_json_form_writes_nan_as_none_and_reads_back():
  config = orqa_scann.orqa_scann_config(2000).for_rows(2000)
  record = orqa_scann.scann_config_json(config)
  assert record["anisotropic_quantization_threshold"] is None
  bundle = _Bundle({"source": orqa_scann.RELEASE_SOURCE,
                    orqa_scann.RELEASE_SCANN_CONFIG: record}, 2000)
  assert orqa_scann.is_release_bundle(bundle)
  read = orqa_scann.release_scann_config(bundle)
  assert orqa_scann.scann_config_json(read) == record


def test_a_bundle_without_a_record_gets_orqa_defaults_and_others_are_not_releases():
  old = _Bundle({"source": orqa_scann.RELEASE_SOURCE}, 2000)
  assert orqa_scann.scann_config_json(orqa_scann.release_scann_config(old)) == (
      orqa_scann.scann_config_json(orqa_scann.orqa_scann_config(2000)))
  assert not orqa_scann.is_release_bundle(_Bundle({"source": "refresh"}))
  assert not orqa_scann.is_release_bundle(None)
