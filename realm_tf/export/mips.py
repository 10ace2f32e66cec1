"""Maximum inner product search inside an export: exact in stock ops, or ScaNN.

The searcher and the served open-QA model both need a MIPS step over the index's embedding matrix,
in one of two variants (docs/SERVING_SIGNATURES.md): `StockMips` (MatMul + TopKV2 over a
variable; any TensorFlow server runs it) and `ScannMips` (ScaNN's ops over the searcher state
saved as variables; needs the ScaNN ops where it is served, and `versioning.save_options("scann")`
when saved). `make_mips` picks one by variant name.

Which ScaNN searcher the ScaNN variants serve is `scann_source`'s choice (`SCANN_SOURCES`): the
index bundle's own searcher, reused as it is (saved inside the export: the same tree, codebook
and hashing codes, so the served top-k is the bundle's), or one built from the index's matrix
with a `ScannConfig`. An index imported from Google's release (`import_release`) is served by
its own ORQA-settings searcher; `stages/evaluate.py` searches through the same choice, so
`evaluate --searcher=scann` measures what `realm_openqa_scann` serves.
"""
import dataclasses
import json
from typing import Dict, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from realm_tf.export.versioning import VARIANTS, ServingExportError
from realm_tf.retrieval.orqa_scann import is_release_bundle, release_scann_config, scann_config_json

# Where the ScaNN variants' searcher comes from (`python -m realm_tf.launch.export --scann_source`):
#   auto: an index imported from the release (`orqa_scann.is_release_bundle`) with ORQA's
#     settings: its own searcher when that is ScaNN, else one built with the settings the import
#     recorded; any other index (or --scann_mode other than auto): built by --scann_mode.
#   bundle: the index bundle's own ScaNN searcher (refused when the bundle's searcher is not ScaNN).
#   build: built by --scann_mode over the index's matrix, whatever the bundle holds.
SCANN_SOURCES = ("auto", "bundle", "build")


class StockMips(tf.Module):
  """Exact MIPS in stock ops: scores = q · Eᵀ (matmul) then top_k, like OpenQAModel.retrieve.

  `embeddings` is a numpy array (copied once into a new variable) or a float32 tf.Variable
  [N, D], used as is: the open-QA model's own index variable, so an export process holds the
  matrix once. The variable is only read whole (never gathered), so reads never copy it.
  """

  kind = "stock"

  def __init__(self, embeddings, name: str = "stock_mips"):
    super().__init__(name=name)
    if isinstance(embeddings, tf.Variable):
      if embeddings.dtype != tf.float32 or embeddings.shape.rank != 2:
        raise ServingExportError(f"StockMips needs a float32 [N, D] variable, got "
                                 f"{embeddings.dtype.name} {embeddings.shape}.")
      self.embeddings = embeddings
    else:
      self.embeddings = tf.Variable(np.asarray(embeddings, np.float32), trainable=False,
                                    name="embeddings")
    self.num_rows, self.dim = self.embeddings.shape.as_list()

  def search(self, queries, k):
    """(rows int32 [B, k], scores float32 [B, k]), best first."""
    scores = tf.matmul(tf.cast(queries, tf.float32), self.embeddings, transpose_b=True)
    top = tf.math.top_k(scores, k=k, sorted=True)
    return top.indices, top.values


class ScannMips(tf.Module):
  """ScaNN MIPS (`Scann>*` ops) over the same matrix; needs the ScaNN ops where it is served.

  Built here from `embeddings` with `scann_config`, or over `source` (a `ScannSource`: a searcher
  built or loaded already, e.g. the index bundle's, saved with the export as it is).
  `description` (JSON text) says which, with the searcher's resolved ScaNN settings.
  """

  kind = "scann"

  def __init__(self, embeddings: Optional[np.ndarray] = None, scann_config=None,
               name: str = "scann_mips", source: Optional["ScannSource"] = None):
    super().__init__(name=name)
    if source is None:
      from realm_tf.retrieval.scann_searcher import ScannConfig  # pylint: disable=g-import-not-at-top
      source = build_scann_source(embeddings, scann_config or ScannConfig(), "scann_config")
    self.num_rows, self.dim = source.num_rows, source.dim
    self.searcher = source.searcher
    self.description = json.dumps(source.description, sort_keys=True)  # a str: not tracked

  def search(self, queries, k):
    """(rows int32 [B, k], scores float32 [B, k]), best first (ScaNN's approximate order)."""
    rows, scores = self.searcher.search(tf.cast(queries, tf.float32), tf.cast(k, tf.int32))
    # ScaNN's ops leave the rank unknown; restore [B, k] so signatures stay batch-major.
    shape = [tf.shape(queries)[0], k if isinstance(k, int) else -1]
    return tf.reshape(rows, shape), tf.reshape(scores, shape)


def make_mips(embeddings: np.ndarray, variant: str, scann_config=None, variable=None,
              scann_source: Optional["ScannSource"] = None):
  """StockMips ("stock") or ScannMips ("scann") over `embeddings` (float32 [N, D], e.g. the
  index's memory-mapped matrix); ServingExportError naming the variants for anything else.

  `variable`, a tf.Variable already holding `embeddings` (`FrozenIndex.variables()[0]`), is
  what the stock variant then searches, instead of a second in-memory copy of the matrix.
  `scann_source` (a `ScannSource`), when given, is what the ScaNN variant serves instead of a
  searcher built with `scann_config`."""
  if variant == "stock":
    return StockMips(embeddings if variable is None else variable)
  if variant == "scann":
    if scann_source is not None:
      if scann_source.num_rows != embeddings.shape[0]:
        raise ServingExportError(f"The ScaNN searcher indexes {scann_source.num_rows} rows but "
                                 f"the index has {embeddings.shape[0]}.")
      return ScannMips(source=scann_source)
    return ScannMips(embeddings, scann_config)
  raise ServingExportError(f"Unknown variant {variant!r}; choose from {VARIANTS}.")


def mips_info(mips) -> Dict:
  """The realm_export.json fields of a MIPS step: `scann` (its ScannSource description: where
  the searcher came from and its ScaNN settings) for ScaNN, nothing for the stock variant."""
  return {"scann": json.loads(mips.description)} if isinstance(mips, ScannMips) else {}


@dataclasses.dataclass
class ScannSource:
  """The ScaNN searcher an export serves (and `evaluate --searcher=scann` searches with), and
  where it came from.

  `searcher` has `.search(query_embeddings float32 [B, D], k int32) → (rows int32 [B, k], scores
  float32 [B, k])`, best first: a built `ScannSearcher` or a loaded bundle searcher. `description`
  (JSON-serialisable) is recorded with the export: `source` ("index_bundle" or "built"),
  `settings` (why these: "index_bundle", "import_release" or "scann_config"), `config` (the
  resolved ScannConfig fields) and `bundle` (the bundle's path, when it is the bundle's)."""
  searcher: object
  num_rows: int
  dim: int
  description: Dict


def build_scann_source(embeddings, scann_config, settings: str) -> ScannSource:
  """A ScaNN searcher built over `embeddings` (float32 [N, D]) with `scann_config`; `settings`
  names where the configuration came from (recorded in the description)."""
  from realm_tf.retrieval.scann_searcher import ScannSearcher  # pylint: disable=g-import-not-at-top
  embeddings = np.asarray(embeddings, np.float32)
  searcher = ScannSearcher(embeddings, scann_config)
  return ScannSource(searcher, searcher.num_rows, searcher.dim,
                     {"source": "built", "settings": settings,
                      "config": scann_config_json(searcher.config)})


def scann_source_of(bundle, embeddings, source: str = "auto", scann_mode: str = "auto"
                    ) -> ScannSource:
  """The ScaNN searcher of the ScaNN variants, chosen by `source` (SCANN_SOURCES, see there) for
  `bundle` (an IndexBundle, or None) over `embeddings` (its float32 [N, D] matrix); `scann_mode`
  (scann_searcher.MODES) configures a searcher built by it. ServingExportError for an unknown
  choice, or `source="bundle"` without a ScaNN searcher in the bundle."""
  from realm_tf.retrieval import scann_searcher  # pylint: disable=g-import-not-at-top
  if source not in SCANN_SOURCES:
    raise ServingExportError(f"Unknown ScaNN source {source!r}; choose from {SCANN_SOURCES}.")
  if scann_mode not in scann_searcher.MODES:
    raise ServingExportError(f"Unknown ScaNN mode {scann_mode!r}; choose from "
                             f"{scann_searcher.MODES}.")
  kind = bundle.manifest.get("searcher", {}).get("kind") if bundle is not None else None
  if source == "bundle" and kind != "scann":
    what = (f"index bundle {bundle.path} holds a {kind} searcher" if bundle is not None
            else "no index bundle is known")
    raise ServingExportError(f"--scann_source=bundle needs a ScaNN searcher in the index "
                             f"bundle, but the {what}; use --scann_source=build.")
  release = source == "auto" and scann_mode == "auto" and is_release_bundle(bundle)
  if source == "bundle" or (release and kind == "scann"):
    info = dict(bundle.manifest["searcher"])
    logging.info("The ScaNN variants serve index bundle %s's own searcher (%s).", bundle.path,
                 info.get("config"))
    return ScannSource(bundle.searcher, int(info["num_rows"]), int(info["dim"]), {
        "source": "index_bundle", "bundle": bundle.path,
        "settings": "import_release" if is_release_bundle(bundle) else "index_bundle",
        "config": scann_config_json(info.get("config", {}))})
  if release:
    return build_scann_source(embeddings, release_scann_config(bundle), "import_release")
  return build_scann_source(embeddings, scann_searcher.ScannConfig(mode=scann_mode),
                            "scann_config")
