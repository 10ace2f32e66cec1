"""The export job: rebuild a fine-tuned open-QA model, then write its serving exports.

`python -m realm_tf.launch.export` only turns its flags into an `ExportConfig` and calls `run`;
everything it does lives here so tests, benchmarks and other programs call the same code:
`load_model` rebuilds the model (from a fine-tuning model_dir, or from warm-start weights plus an
index bundle and corpus), and `run_export` exports the chosen components of a model already in
memory (components.export_components with the job's settings: variant "both", a ScaNN mode).

The ScaNN variants serve the searcher `scann_source` picks (export/mips.py `SCANN_SOURCES`): by
default, an index imported from Google's release is served by the import's own searcher (ORQA's
settings: a 1,000-leaf tree searching 100, clamped to small corpora, asymmetric hashing with 2
dimensions a block, trained on 100,000 points, its candidates scored exactly), saved into the
export as it is; any other index by a searcher built with `scann_mode`. The run's summary and
`<export_base>/.export-done.json` record which searcher and its settings (`scann`), as does each
ScaNN model's `realm_export.json`.
"""
import dataclasses
import os
from typing import Dict, List, Optional, Sequence, Tuple

from absl import logging

from realm_tf.config_base import ConfigBase
from realm_tf.export import components as components_lib
from realm_tf.export.versioning import VARIANTS, ServingExportError, next_version
from realm_tf.io import atomic
from realm_tf.io import paths as paths_lib
from realm_tf.stages import stage_rules

# `<export_base>/<PENDING>` records an export run that has not finished (its version and config),
# so the same command after a kill finishes that version instead of starting the next one.
PENDING = ".export-pending.json"
# `<export_base>/<DONE>` records the last finished export run (its version, config and the
# checkpoint and index bundle it read), so the same command on an unchanged model is "nothing to
# do" rather than a second, identical version (as after a kill that came once its work was done).
DONE = ".export-done.json"

# --variant: one MIPS variant, or both ("stock" then "scann").
VARIANT_CHOICES = VARIANTS + ("both",)


@dataclasses.dataclass
class ExportConfig(ConfigBase):
  """Settings of one export run; each field is the `python -m realm_tf.launch.export` flag of
  the same name (`warmup_questions` is the repeatable --warmup_question)."""
  model_dir: Optional[str] = None           # fine-tuning model_dir, or ...
  init_checkpoint: Optional[str] = None     # ... warm-start weights (then index and corpus dirs)
  reader_init_checkpoint: Optional[str] = None
  index_dir: Optional[str] = None
  corpus_dir: Optional[str] = None
  export_base: Optional[str] = None         # required
  version: Optional[int] = None             # default: the next free one
  variant: str = "both"                     # one of VARIANT_CHOICES
  components: List[str] = dataclasses.field(default_factory=lambda: ["all"])
  num_answers: int = 5
  max_candidates: int = 20
  reader_beam_size: Optional[int] = None    # default: the model's
  searcher_k: int = 10
  scann_mode: str = "auto"                  # one of realm_tf.retrieval.scann_searcher.MODES
  warmup_questions: Optional[List[str]] = None
  scann_source: str = "auto"                # one of realm_tf.export.mips.SCANN_SOURCES


def variants_of(variant: str) -> Tuple[str, ...]:
  """--variant → the MIPS variants to export ("both" → stock and scann)."""
  if variant not in VARIANT_CHOICES:
    raise ServingExportError(f"Unknown variant {variant!r}; choose from {VARIANT_CHOICES}.")
  return VARIANTS if variant == "both" else (variant,)


def scann_config_of(scann_mode: str):
  """--scann_mode → the ScannConfig of the ScaNN variants (ServingExportError if unknown)."""
  from realm_tf.retrieval import scann_searcher  # pylint: disable=g-import-not-at-top
  if scann_mode not in scann_searcher.MODES:
    raise ServingExportError(f"Unknown ScaNN mode {scann_mode!r}; choose from "
                             f"{scann_searcher.MODES}.")
  return scann_searcher.ScannConfig(mode=scann_mode)


def check_scann_source(scann_source: str) -> None:
  """ServingExportError naming the choices when --scann_source is not one of SCANN_SOURCES."""
  from realm_tf.export import mips  # pylint: disable=g-import-not-at-top
  if scann_source not in mips.SCANN_SOURCES:
    raise ServingExportError(f"Unknown ScaNN source {scann_source!r}; choose from "
                             f"{mips.SCANN_SOURCES}.")


def resolve_scann(model, bundle, variant: str, components: Sequence[str],
                  scann_source: str = "auto", scann_mode: str = "auto"):
  """The mips.ScannSource the ScaNN variants of this export serve (one searcher for openqa and
  searcher: the bundle's own or one built, see `mips.scann_source_of`), or None when no ScaNN
  model is exported."""
  from realm_tf.export import mips  # pylint: disable=g-import-not-at-top
  if "scann" not in variants_of(variant) or not {"openqa", "searcher"} & set(components):
    return None
  source = mips.scann_source_of(bundle, model.index.embeddings_np, scann_source, scann_mode)
  logging.info("ScaNN variants: %s", source.description)
  return source


def load_model(model_dir=None, init_checkpoint=None, reader_init_checkpoint=None, index_dir=None,
               corpus_dir=None, reader_beam_size=None):
  """Rebuilds the open-QA model to export; returns (model, tokenizer, bundle).

  From a fine-tuning `model_dir` (its config and newest checkpoint), or from `init_checkpoint`
  warm-start weights (then `index_dir` and `corpus_dir` are required). `reader_beam_size`
  overrides the model's blocks read per question.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.reader import ReaderConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import finetune  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.openqa_model import OpenQAConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
  if bool(model_dir) == bool(init_checkpoint):
    raise ValueError("Give exactly one of --model_dir and --init.")
  if model_dir and not tf.io.gfile.exists(os.path.join(model_dir, "config.json")):
    raise FileNotFoundError(f"--model_dir {model_dir} has no config.json (not a fine-tuning "
                            "model_dir).")
  tokenizer = RealmTokenizer()
  if model_dir:
    model, _, bundle = finetune.load_finetuned(model_dir, index_dir, corpus_dir)
  else:
    if not index_dir or not corpus_dir:
      raise ValueError("--init needs --index_dir and --corpus_dir.")
    from realm_tf.training import warm_start  # pylint: disable=g-import-not-at-top
    if warm_start.source_kind(init_checkpoint) == "trainer" and \
        warm_start.trainer_run_kind(init_checkpoint) == "openqa":
      model, _, bundle = finetune.load_finetuned(init_checkpoint, index_dir, corpus_dir)
    else:
      bundle, index = finetune.load_index(index_dir, corpus_dir)
      reader_enc = (warm_start.encoder_config_of(reader_init_checkpoint) or
                    warm_start.encoder_config_of(init_checkpoint))
      reader = ReaderConfig(encoder=reader_enc) if reader_enc is not None else ReaderConfig()
      config = OpenQAConfig(retriever=finetune.index_retriever_config(bundle), reader=reader)
      model = finetune.build_model(config, index, tokenizer)
      warm_start.init_openqa(model, init_checkpoint, reader_init_checkpoint)
  if reader_beam_size:
    model.config = dataclasses.replace(model.config, reader_beam_size=int(reader_beam_size))
  return model, tokenizer, bundle


def run_export(model, tokenizer, bundle, export_base: str, version: Optional[int] = None,
               variant: str = "both", components: Sequence[str] = components_lib.COMPONENTS,
               num_answers: int = 5, max_candidates: int = 20, searcher_k: int = 10,
               scann_mode: str = "auto", warmup_questions: Optional[Sequence[str]] = None,
               scann_source: str = "auto", scann=None) -> Dict[str, str]:
  """Exports the chosen components of a model in memory; returns {model name: path}, all with
  the same version (the next free one by default). `variant` is one of VARIANT_CHOICES; the
  ScaNN variants serve `scann` (a mips.ScannSource already resolved), else the searcher
  `scann_source` (mips.SCANN_SOURCES) picks for `bundle`, built with `scann_mode` (a ScannConfig
  mode) when it is built."""
  check_scann_source(scann_source)
  if scann is None:
    scann = resolve_scann(model, bundle, variant, components, scann_source, scann_mode)
  return components_lib.export_components(
      model, tokenizer, export_base, version, components, variants_of(variant), bundle=bundle,
      searcher_k=searcher_k, num_answers=num_answers, max_candidates=max_candidates,
      scann_config=scann_config_of(scann_mode), warmup_questions=warmup_questions,
      scann_source=scann)


def run(config: ExportConfig, strategy=None) -> Dict:
  """The whole job: checks `config`, rebuilds the model (its variables under `strategy`'s scope,
  a `tf.distribute.Strategy`, the current one by default), exports it. Returns the summary the
  CLI prints: {"export_base": absolute path, "models": {model name: path}, "scann": the ScaNN
  variants' searcher (mips.ScannSource.description; absent when none is exported)}.

  Every model version is published whole (an atomic rename), but one run publishes several
  models: `<export_base>/.export-pending.json` records the run's version and config until its
  last model is published, so the same command after a kill exports the models still missing
  under that version rather than a second version beside a partial first.

  Holds the writer lock of `export_base` while it runs (`stage_rules.writing`): two exporters
  would race for the next version number."""
  with stage_rules.writing(config.export_base):
    return _run(config, strategy)


def _run(config: ExportConfig, strategy=None) -> Dict:
  """`run` under the lock."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not config.export_base:
    raise ValueError("--export_base is required.")
  components = components_lib.parse_components(config.components)
  variants_of(config.variant)  # bad choices fail before the model is loaded
  scann_config_of(config.scann_mode)
  check_scann_source(config.scann_source)
  with (strategy or tf.distribute.get_strategy()).scope():
    model, tokenizer, bundle = load_model(config.model_dir, config.init_checkpoint,
                                          config.reader_init_checkpoint, config.index_dir,
                                          config.corpus_dir, config.reader_beam_size)
  names = components_lib.model_names(components, variants_of(config.variant))
  pending_path = os.path.join(config.export_base, PENDING)
  done_path = os.path.join(config.export_base, DONE)
  record = {**dataclasses.asdict(config), "version": None}
  source = {"checkpoint": _source_checkpoint(config), "bundle": bundle.path if bundle else None}
  pending = _read_record(pending_path)
  done = _read_record(done_path)
  if pending is None and config.version is None and done is not None and \
      done["config"] == record and done.get("source") == source:
    kept = {n: os.path.join(config.export_base, n, str(done["version"])) for n in names}
    if all(tf.io.gfile.exists(p) for p in kept.values()):
      logging.info("Nothing to export: version %s already holds this model (checkpoint %s, "
                   "bundle %s) with these settings.", done["version"], source["checkpoint"],
                   source["bundle"])
      return {"export_base": paths_lib.absolute(config.export_base), "models": kept,
              "nothing_to_do": True,
              **({"scann": done["scann"]} if done.get("scann") else {})}
  resumed = pending is not None and pending["config"] == record and \
      config.version in (None, pending["version"])
  version = pending["version"] if resumed else \
      (config.version or next_version(config.export_base, names))
  if not resumed:
    for name in names:  # refused before the record is written: nothing to resume then
      if tf.io.gfile.exists(os.path.join(config.export_base, name, str(version))):
        raise FileExistsError(f"{os.path.join(config.export_base, name, str(version))} already "
                              "exists; choose another --version.")
    tf.io.gfile.makedirs(config.export_base)
    atomic.write_json(pending_path, {"version": version, "config": record})
  scann = resolve_scann(model, bundle, config.variant, components, config.scann_source,
                        config.scann_mode)
  scann_record = {"scann": scann.description} if scann is not None else {}
  paths = {}
  # A resumed run exports what the killed one had not published, piece by piece (each model
  # version was published whole by its rename); a fresh run exports everything in one call.
  pieces = [((c,), (v,)) for c in components for v in variants_of(config.variant)] if resumed \
      else [(components, variants_of(config.variant))]
  for piece_components, piece_variants in pieces:
    piece_names = components_lib.model_names(piece_components, piece_variants)
    if resumed and all(tf.io.gfile.exists(os.path.join(config.export_base, n, str(version)))
                       for n in piece_names):
      paths.update({n: os.path.join(config.export_base, n, str(version)) for n in piece_names})
      continue
    paths.update(run_export(model, tokenizer, bundle, config.export_base, version,
                            piece_variants[0] if len(piece_variants) == 1 else config.variant,
                            piece_components, config.num_answers, config.max_candidates,
                            config.searcher_k, config.scann_mode, config.warmup_questions,
                            config.scann_source, scann))
  atomic.write_json(done_path, {"version": version, "config": record, "source": source,
                                **scann_record})
  tf.io.gfile.remove(pending_path)
  return {"export_base": paths_lib.absolute(config.export_base), "models": paths,
          **scann_record}


def _source_checkpoint(config: "ExportConfig") -> Optional[str]:
  """The checkpoint an export reads: the fine-tuning run's newest, or `init_checkpoint`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if config.model_dir:
    return tf.train.latest_checkpoint(os.path.join(config.model_dir, "checkpoints"))
  return config.init_checkpoint


def _read_record(path: str) -> Optional[Dict]:
  """The export run recorded at `path` (unfinished, or the last finished one), or None."""
  import json  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    text = f.read()
  try:
    record = json.loads(text)
  except ValueError as e:
    raise ValueError(f"{path}: not an export record ({e}); remove it to start afresh") from None
  if not isinstance(record, dict) or "version" not in record or "config" not in record:
    raise ValueError(f"{path}: not an export record (no version and config); remove it to "
                     "start afresh")
  return record
