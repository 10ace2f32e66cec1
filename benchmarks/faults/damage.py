"""Fault group `damage`: damaged files in a real work dir, each read by the product's own reader.

Faults (one row each): a truncated corpus shard, a checkpoint `.data` file with a flipped byte,
an index bundle whose embeddings file is missing or short, a manifest that is not JSON, a
SavedModel without `variables/`, and a half-copied export. Each try damages a seeded random file
at a seeded random offset (`FaultConfig.rng`), runs the consumers of that file, and checks: the
error is one a CLI prints as one `error:` line (exit 2) naming the file; nothing was published
from the damaged input (no new bundle, lookup or served version); the last good bundle still
loads and the server still answers from the version it had, with GetModelStatus's status naming
the bad version. The damage is then undone before the next try.
"""
import json
import os
import shutil
import time
from typing import Dict, List

from benchmarks.faults import FaultConfig, FaultRow, Tries
from benchmarks.faults import toy_work_dir
from benchmarks.faults.toy_work_dir import ToyWorkDir, bundle_loads, copy_export, refuses

GROUP = "damage"


def _refuses_refresh(work: ToyWorkDir, corpus_dir: str, *needles: str):
  """A refresh of the newest export over `corpus_dir` must fail naming the file; no bundle.
  Returns both checks."""
  from realm_tf.retrieval import bundle  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.refresh import IndexRefresher  # pylint: disable=g-import-not-at-top
  before = bundle.list_versions(work.index_dir)
  refused = refuses(IndexRefresher(work.refresh_config(corpus_dir=corpus_dir)).run_once, *needles)
  after = bundle.list_versions(work.index_dir)
  return refused, (True if after == before else f"bundles {before} became {after}")


# ---- the faults --------------------------------------------------------------------------------


def truncated_shard(work: ToyWorkDir, config: FaultConfig) -> FaultRow:
  """A corpus shard cut at a random byte: the lookup build, the refresher and a training
  stage's block stream must each refuse it naming the shard."""
  from realm_tf.data import block_lookup, corpus  # pylint: disable=g-import-not-at-top
  name = "truncated corpus shard"
  rng, tries = config.rng(name), Tries(GROUP, name)
  manifest = corpus.load_manifest(work.corpus_dir)
  step = 1000
  for _ in range(config.kill_points):
    damaged = os.path.join(work.root, "damaged_corpus")
    shutil.rmtree(damaged, ignore_errors=True)
    shutil.copytree(work.corpus_dir, damaged)
    shard = manifest["shards"][rng.randrange(len(manifest["shards"]))]["file"]
    path = os.path.join(damaged, shard)
    offset = rng.randrange(1, os.path.getsize(path))
    with open(path, "r+b") as f:
      f.truncate(offset)
    lookup = os.path.join(work.root, "damaged_lookup")
    step += 1
    export = copy_export(work, step)
    refused, published = _refuses_refresh(work, damaged, path)
    shutil.rmtree(export)
    tries.check(f"{shard}@{offset}", {
        "lookup build refused naming the shard": refuses(
            lambda: block_lookup.build_lookup(damaged, lookup), path),
        "no lookup published": True if not os.path.exists(lookup) else "lookup dir exists",
        "refresh refused naming the shard": refused,
        "no bundle published": published,
        "training block stream refused naming the shard": refuses(
            lambda: corpus.training_blocks(damaged, 0, 4, 0, 0.0), path),
        "last good bundle loads": bundle_loads(work.index_dir),
    })
  return tries.row("seeded random shard and byte offset", [
      "build_lookup raises CorpusError naming the shard (a CLI's one error line, exit 2)",
      "no lookup published", "refresh_index --once refuses naming the shard, no new bundle",
      "a training stage's block stream (corpus.training_blocks) refuses naming the shard",
      "the last good bundle still loads"])


def flipped_checkpoint(work: ToyWorkDir, config: FaultConfig) -> FaultRow:
  """A byte of the checkpoint's `.data` file flipped: a resuming trainer must refuse it before
  its first step (the optimizer slots are only read then), naming the file."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  name = "checkpoint .data file with a flipped byte"
  rng, tries = config.rng(name), Tries(GROUP, name)
  prefix = tf.train.latest_checkpoint(os.path.join(work.checkpoint_dir, "checkpoints"))
  data = tf.io.gfile.glob(prefix + ".data-*")[0]
  size = os.path.getsize(data)
  for _ in range(config.kill_points):
    offset = rng.randrange(size)
    _flip(data, offset)
    try:
      trainer = toy_work_dir.make_trainer(work.checkpoint_dir)
      refused = refuses(trainer.restore, prefix, os.path.basename(data))
      weights_untouched = int(trainer.step.numpy()) == 0 or "step was restored"
    finally:
      _flip(data, offset)
    restored = toy_work_dir.make_trainer(work.checkpoint_dir).restore()
    tries.check(f"byte {offset} of {size}", {
        "resume refused naming the file": refused,
        "nothing restored from it": weights_untouched,
        "the undamaged checkpoint resumes": True if restored == 2 else f"restored step {restored}",
    })
  return tries.row("seeded random byte of ckpt-2.data-00000-of-00001 (XOR 0xFF)", [
      "Trainer.restore raises DataLossError naming the checkpoint and its data file (one error "
      "line, exit 2), before any step", "no weights or step restored from it",
      "with the byte restored the checkpoint resumes at its step"], data_bytes=size)


def _flip(path: str, offset: int) -> None:
  with open(path, "r+b") as f:
    f.seek(offset)
    byte = f.read(1)
    f.seek(offset)
    f.write(bytes([byte[0] ^ 0xFF]))


def bundle_embeddings(work: ToyWorkDir, config: FaultConfig) -> FaultRow:
  """The bundle's embeddings file (the searcher checkpoint's data shard, the matrix's one copy)
  missing or cut short: opening the bundle must fail naming it."""
  from realm_tf.retrieval import bundle  # pylint: disable=g-import-not-at-top
  name = "index bundle with a missing or short embeddings file"
  rng, tries = config.rng(name), Tries(GROUP, name)
  version = bundle.version_path(work.index_dir, 1)
  path = os.path.join(version, "searcher", "variables", "variables.data-00000-of-00001")
  backup = path + ".good"
  shutil.copyfile(path, backup)
  size = os.path.getsize(path)
  for _ in range(config.kill_points):
    missing = rng.random() < 0.3
    length = 0 if missing else rng.randrange(size)
    if missing:
      os.remove(path)
    else:
      with open(path, "r+b") as f:
        f.truncate(length)
    try:
      opened = refuses(lambda: bundle.latest(work.index_dir, load=True), path)
    finally:
      shutil.copyfile(backup, path)
    tries.check("missing" if missing else f"cut at {length} of {size}", {
        "opening the bundle refused naming the file": opened,
        "restored bundle loads": bundle_loads(work.index_dir),
    })
  os.remove(backup)
  return tries.row("seeded: missing (p=0.3) or cut at a random length, "
                   "searcher/variables/variables.data-00000-of-00001", [
                       "bundle.latest(load=True) raises BundleError/SearcherError/"
                       "FileNotFoundError naming the file (one error line, exit 2)",
                       "the bundle loads again once the file is whole"], data_bytes=size)


def manifest_not_json(work: ToyWorkDir, config: FaultConfig) -> FaultRow:
  """A manifest cut short (so not JSON): its reader must fail naming it."""
  from realm_tf.data import corpus  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from realm_tf.retrieval import bundle, embedder_export, searcher
  name = "manifest that is not JSON"
  rng, tries = config.rng(name), Tries(GROUP, name)
  version = bundle.version_path(work.index_dir, 1)
  export = embedder_export.export_path(work.model_dir, 1)
  readers = {
      "corpus manifest.json": (os.path.join(work.corpus_dir, "manifest.json"),
                               lambda: corpus.load_manifest(work.corpus_dir)),
      "bundle manifest.json": (os.path.join(version, "manifest.json"),
                               lambda: bundle.latest(work.index_dir, load=True)),
      "export realm_export.json": (os.path.join(export, embedder_export.METADATA),
                                   lambda: embedder_export.load_embedder(export)),
      "bundle searcher realm_searcher.json": (
          os.path.join(version, "searcher", searcher.SEARCHER_INFO),
          lambda: searcher.load_searcher(os.path.join(version, "searcher"))),
  }
  for _ in range(config.kill_points):
    kind = rng.choice(sorted(readers))
    path, read = readers[kind]
    with open(path, "rb") as f:
      good = f.read()
    cut = rng.randrange(0, len(good))
    try:
      with open(path, "wb") as f:
        f.write(good[:cut])
      refused = refuses(read, path)
    finally:
      with open(path, "wb") as f:
        f.write(good)
    tries.check(f"{kind} cut at {cut} of {len(good)}", {
        "reader refused naming the file": refused,
        "restored bundle loads": bundle_loads(work.index_dir),
    })
  return tries.row("seeded random manifest (corpus, bundle, export, searcher) cut at a random "
                   "byte", ["its reader raises CorpusError/BundleError/ExportError/SearcherError "
                            "naming the file (one error line, exit 2)",
                            "everything loads again once the file is whole"])


def _served(manager) -> object:
  """True when the server answers from version 1 (the last good one)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  try:
    with manager.servable(toy_work_dir.SERVED_MODEL) as servable:
      y = servable.signature("")({"x": np.ones((1, 3), np.float32),
                                  "scale": np.ones([1], np.float32)})["y"]
      # NumericModel adds its version: 1 + (1 1 1) @ W.
      return True if servable.version == 1 and abs(float(y[0, 0]) - 1.6) < 1e-5 else \
          f"served version {servable.version}, y {y.tolist()}"
  except Exception as e:  # pylint: disable=broad-except
    return f"{type(e).__name__}: {e}"


def _status_names(manager, version: int, path: str):
  """True when GetModelStatus reports `version` as not available, one line naming `path`."""
  from serving.model_manager import State  # pylint: disable=g-import-not-at-top
  try:
    status = manager.status(toy_work_dir.SERVED_MODEL, version)[0]
  except Exception as e:  # pylint: disable=broad-except
    return f"{type(e).__name__}: {e}"
  if status.state == State.AVAILABLE:
    return "reported AVAILABLE"
  if path not in status.error_message or "\n" in status.error_message:
    return f"status message {status.error_message!r}"
  return True


def _manager(work: ToyWorkDir):
  """A model manager serving the toy work dir's model (version 1 loaded)."""
  from serving.model_config import ModelConfig  # pylint: disable=g-import-not-at-top
  from serving.model_manager import ModelManager  # pylint: disable=g-import-not-at-top
  manager = ModelManager([ModelConfig(toy_work_dir.SERVED_MODEL, work.serving_base)],
                         max_num_load_retries=0)
  manager.poll_once()
  return manager


def _served_checks(manager, version: int, target: str) -> Dict[str, object]:
  """A broken served `version` at `target`: the server keeps answering from version 1, and
  GetModelStatus reports it naming the directory (when it has a saved_model.pb: one without it
  is no version, as in TF Serving)."""
  manager.poll_once()
  listed = os.path.exists(os.path.join(target, "saved_model.pb"))
  return {"server keeps serving version 1": _served(manager),
          "GetModelStatus reports it naming the directory": (
              _status_names(manager, version, target) if listed else True)}


def _export_checks(work: ToyWorkDir, export: str) -> Dict[str, object]:
  """A broken embedder export: the refresher refuses it naming it and publishes nothing, and
  the last good bundle loads; the export is removed."""
  refused, published = _refuses_refresh(work, work.corpus_dir, export)
  shutil.rmtree(export)
  return {"refresh refused naming the export": refused, "no bundle published": published,
          "last good bundle loads": bundle_loads(work.index_dir)}


def without_variables(work: ToyWorkDir, config: FaultConfig) -> FaultRow:
  """A SavedModel without `variables/`: a served version the server must not switch to (and
  must report), or an embedder export the refresher must refuse."""
  name = "SavedModel version directory without variables/"
  rng, tries = config.rng(name), Tries(GROUP, name)
  manager = _manager(work)
  version, step = 1, 2000
  for _ in range(config.kill_points):
    if rng.random() < 0.5:
      version += 1
      target = os.path.join(work.serving_base, str(version))
      shutil.copytree(work.serving_template, target)
      shutil.rmtree(os.path.join(target, "variables"))
      tries.check(f"served version {version}", _served_checks(manager, version, target))
    else:
      step += 1
      tries.check(f"embedder export {step}",
                  _export_checks(work, copy_export(work, step, drop=["variables"])))
  _remove_versions(work, 2)
  return tries.row("seeded choice (p=0.5 each): a new served version or a new embedder export", [
      "served: the server keeps answering from version 1; GetModelStatus reports the version "
      "END/UNKNOWN with one line naming its directory",
      "export: refresh_index --once raises ExportError naming it (one error line, exit 2), no "
      "new bundle, the last good bundle loads"])


def _remove_versions(work: ToyWorkDir, first: int) -> None:
  for name in os.listdir(work.serving_base):
    if name.isdigit() and int(name) >= first:
      shutil.rmtree(os.path.join(work.serving_base, name))


def half_copied_export(work: ToyWorkDir, config: FaultConfig) -> FaultRow:
  """An export copied only up to a random byte (files after it missing, the one at it short):
  as a served version or as the refresher's newest embedder export."""
  from realm_tf.retrieval import embedder_export  # pylint: disable=g-import-not-at-top
  name = "half-copied export"
  rng, tries = config.rng(name), Tries(GROUP, name)
  manager = _manager(work)
  version, step = 1, 3000
  src = embedder_export.export_path(work.model_dir, 1)
  for _ in range(config.kill_points):
    fraction = rng.random()
    if rng.random() < 0.5:
      version += 1
      target = os.path.join(work.serving_base, str(version))
      cut = toy_work_dir.half_copy(work.serving_template, target, fraction)
      tries.check(f"served version {version} cut at {fraction:.3f} ({os.path.basename(cut)})",
                  _served_checks(manager, version, target))
    else:
      step += 1
      target = embedder_export.export_path(work.model_dir, step)
      cut = toy_work_dir.half_copy(src, target, fraction)
      meta = os.path.join(target, embedder_export.METADATA)
      if os.path.exists(meta) and cut != meta:
        with open(meta) as f:
          data = json.load(f)
        data["step"] = step
        with open(meta, "w") as f:
          json.dump(data, f)
      tries.check(f"embedder export {step} cut at {fraction:.3f} ({os.path.basename(cut)})",
                  _export_checks(work, target))
  _remove_versions(work, 2)
  return tries.row("seeded choice (p=0.5 each) of a served version or an embedder export, cut "
                   "at a seeded random fraction of its bytes (in copy order)", [
                       "served: the server keeps answering from version 1; GetModelStatus "
                       "reports a version with saved_model.pb as END/UNKNOWN naming it (one "
                       "without it is not a version, as in TF Serving)",
                       "export: refresh_index --once raises ExportError naming it, no new "
                       "bundle, the last good bundle loads"])


FAULTS = (truncated_shard, flipped_checkpoint, bundle_embeddings, manifest_not_json,
          without_variables, half_copied_export)


def run(config: FaultConfig) -> List[FaultRow]:
  """Builds the toy work dir once, then runs every fault of the group against it."""
  start = time.perf_counter()
  work = toy_work_dir.build(os.path.join(config.work_dir, "work"))
  build_seconds = time.perf_counter() - start
  rows = [fault(work, config) for fault in FAULTS]
  rows[0].figures["work_dir_build_seconds"] = round(build_seconds, 1)
  return rows
