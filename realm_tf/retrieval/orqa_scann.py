"""ORQA's ScaNN settings, and the index bundles that carry them (Google's released index).

ORQA searched its 13.35M-block index with a ScaNN tree of 1,000 leaves, 100 searched per query,
and asymmetric hashing without the anisotropic loss, re-scoring the candidates exactly. An index
imported from the release (`import_release`) records those settings, clamped to its rows, in its
bundle manifest (`RELEASE_SCANN_CONFIG`), and `export` and `evaluate --searcher=scann` serve and
search with them; this module is the one place that knows both the settings and the record.
"""
import dataclasses
from typing import Dict

from absl import logging

from realm_tf.retrieval.scann_searcher import ScannConfig

RELEASE_SOURCE = "orqa_release"       # bundle manifest `source` of an import_release index
RELEASE_SCANN_CONFIG = "release_scann_config"  # bundle manifest: the import's ScaNN settings

# ORQA's searcher (google-research/language orqa, its ScaNN index of the released blocks).
NUM_LEAVES = 1000
NUM_LEAVES_TO_SEARCH = 100
TRAINING_SAMPLE_SIZE = 100_000
DIMENSIONS_PER_BLOCK = 2
REORDERING_NUM_NEIGHBORS = 0  # candidates re-scored exactly; 0: the k it returns (ORQA's)


def orqa_scann_config(num_rows: int, num_leaves: int = NUM_LEAVES,
                      num_leaves_to_search: int = NUM_LEAVES_TO_SEARCH,
                      training_sample_size: int = TRAINING_SAMPLE_SIZE,
                      dimensions_per_block: int = DIMENSIONS_PER_BLOCK,
                      reordering_num_neighbors: int = REORDERING_NUM_NEIGHBORS) -> ScannConfig:
  """ORQA's ScaNN settings (tree + asymmetric hashing, no anisotropic loss) for `num_rows`
  points: the tree clamped to the corpus (at most one leaf per 16 points) and the training
  sample to its rows."""
  leaves = max(1, min(num_leaves, num_rows // 16))
  return ScannConfig(
      mode="tree_ah", num_leaves=leaves,
      num_leaves_to_search=max(1, min(num_leaves_to_search, leaves)),
      training_sample_size=min(training_sample_size, num_rows),
      dimensions_per_block=dimensions_per_block,
      anisotropic_quantization_threshold=float("nan"),
      # ScaNN re-scores max(this, k) candidates exactly: 1 means exactly the k it returns.
      reordering_num_neighbors=max(1, reordering_num_neighbors),
      # ORQA's: ScaNN returns hashing candidates, scored exactly against the searcher's one
      # float copy of `block_emb` (ScaNN's own re-ordering would keep a second).
      rescoring="gather")


def scann_config_json(config) -> Dict:
  """A ScannConfig (or its dict) as strict JSON: NaN (no anisotropic loss) written as None."""
  if dataclasses.is_dataclass(config):
    config = dataclasses.asdict(config)
  return {k: (None if isinstance(v, float) and v != v else v) for k, v in config.items()}


def is_release_bundle(bundle) -> bool:
  """True for an index bundle that `import_release` wrote (Google's released index)."""
  return bundle is not None and bundle.manifest.get("source") == RELEASE_SOURCE


def release_scann_config(bundle) -> ScannConfig:
  """ORQA's ScaNN settings for an imported release's bundle: those the import recorded in the
  manifest (tree and training sample already clamped to its rows), or, for an import made before
  it recorded them, ORQA's defaults for its row count."""
  recorded = bundle.manifest.get(RELEASE_SCANN_CONFIG)
  if recorded:
    fields = {f.name for f in dataclasses.fields(ScannConfig)}
    values = {k: (float("nan") if v is None and k == "anisotropic_quantization_threshold" else v)
              for k, v in recorded.items() if k in fields}
    return ScannConfig(**values)
  logging.info("Index bundle %s records no ScaNN settings; using import_release's defaults "
               "(ORQA's) for its %d rows.", bundle.path, bundle.num_rows)
  return orqa_scann_config(bundle.num_rows)
