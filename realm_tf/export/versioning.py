"""SavedModel I/O for serving: TF Serving's versioned layout, atomic publishing, op checks.

Every export is written as `<export_base>/<model_name>/<version>/` through a hidden temporary
directory and one atomic rename (`publish_saved_model`, via `realm_tf.io.publish.publish_dir`), so
a server polling the base path never sees half a version, and a published version is never
overwritten (servers may have loaded it).
Beside the SavedModel, `assets.extra/` holds the warm-up requests (see warmup.py) and
`realm_export.json` (what was exported from what; `read_export_info`).

No export may contain a `py_function` (TF Serving cannot run one): `check_saved_model_ops` proves
it by listing every op of every graph and function in saved_model.pb, and also keeps ScaNN ops out
of the stock variants. `ServingExportError` is the error of every export module.
"""
import json
import os
import time
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import tensorflow as tf
from absl import logging
from tensorflow.core.protobuf import saved_model_pb2

from realm_tf.io import publish as publish_lib

SERVING_DEFAULT = "serving_default"
EXTRA_DIR = "assets.extra"
EXPORT_INFO = "realm_export.json"
PY_FUNCTION_OPS = ("PyFunc", "PyFuncStateless", "EagerPyFunc")
VARIANTS = ("stock", "scann")


class ServingExportError(ValueError):
  """An export cannot be built from its inputs, or a written export breaks a serving rule."""


def variant_model_name(model_name: str, variant: str) -> str:
  """`realm_searcher` + `scann` → `realm_searcher_scann`; the stock variant keeps the bare name,
  so an unmodified model server config names the stock model as before."""
  if variant not in VARIANTS:
    raise ServingExportError(f"Unknown variant {variant!r}; choose from {VARIANTS}.")
  return model_name if variant == "stock" else f"{model_name}_{variant}"


def save_options(variant: str) -> tf.saved_model.SaveOptions:
  """SaveOptions letting ScaNN ops into the ScaNN variant's graph (and nothing else's)."""
  return tf.saved_model.SaveOptions(namespace_whitelist=["Scann"] if variant == "scann" else None)


def list_model_versions(model_base: str) -> List[int]:
  """Published versions (integer directory names) under `<export_base>/<model_name>`."""
  if not tf.io.gfile.isdir(model_base):
    return []
  return sorted(int(n.rstrip("/")) for n in tf.io.gfile.listdir(model_base)
                if n.rstrip("/").isdigit())


def next_version(export_base: str, model_names: Iterable[str]) -> int:
  """One more than the newest version of any of `model_names` (1 for a fresh base), so models
  exported together share a version number."""
  newest = 0
  for name in model_names:
    versions = list_model_versions(os.path.join(export_base, name))
    newest = max([newest] + versions)
  return newest + 1


def model_info(model, bundle) -> Dict:
  """The `realm_export.json` fields every export of one open-QA model shares: its config, corpus
  size and (when known) the index bundle it serves, so an export names what it came from."""
  info = {"openqa_config": model.config.to_dict(), "num_blocks": int(model.index.size)}
  if bundle is not None:
    info.update({"index_bundle": bundle.path, "index_version": int(bundle.version)})
  return info


def publish_saved_model(module: tf.Module, export_base: str, model_name: str, version: int,
                        signatures: Mapping[str, Callable], *,
                        warmup_requests: Sequence = (), info: Optional[Dict] = None,
                        options: Optional[tf.saved_model.SaveOptions] = None) -> str:
  """Saves `module` as `<export_base>/<model_name>/<version>/`, atomically.

  The SavedModel, `assets.extra/tf_serving_warmup_requests` (from `warmup_requests`, PredictRequest
  protos) and `assets.extra/realm_export.json` (`info`) are written into a hidden temporary
  directory beside the target, checked for py_function ops, and renamed into place.

  Raises:
    ServingExportError: the version already exists, or the graph holds a py_function.
  """
  from realm_tf.export import warmup as warmup_lib  # pylint: disable=g-import-not-at-top
  if version <= 0:
    raise ServingExportError(f"Version must be a positive integer; got {version}.")
  model_base = os.path.join(export_base, model_name)
  final = os.path.join(model_base, str(int(version)))
  try:
    # TF Serving knows no commit marker: the temporary + rename is used on object stores too.
    with publish_lib.publish_dir(final) as tmp:
      tf.saved_model.save(module, tmp, signatures=dict(signatures), options=options)
      check_saved_model_ops(tmp)
      extra = os.path.join(tmp, EXTRA_DIR)
      tf.io.gfile.makedirs(extra)
      if warmup_requests:
        warmup_lib.write_warmup_file(tmp, warmup_requests)
      meta = dict(info or {})
      meta.update({"model_name": model_name, "version": int(version), "created": time.time(),
                   "signatures": sorted(signatures)})
      with tf.io.gfile.GFile(os.path.join(extra, EXPORT_INFO), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True, default=str)
  except publish_lib.TargetExistsError as e:
    raise ServingExportError(f"{final} already exists; pass a new --version (versions are "
                             "immutable once published: servers may have loaded it).") from e
  logging.info("Published %s.", final)
  return final


def read_export_info(export_dir: str) -> Dict:
  """`assets.extra/realm_export.json` of a published export."""
  with tf.io.gfile.GFile(os.path.join(export_dir, EXTRA_DIR, EXPORT_INFO)) as f:
    return json.load(f)


def saved_model_op_types(export_dir: str) -> Dict[str, List[str]]:
  """Every op type in saved_model.pb → where it occurs (graph or function names).

  Covers each MetaGraph's top-level graph and its whole function library, i.e. everything any
  signature or restored function can run.
  """
  saved_model = saved_model_pb2.SavedModel()
  with tf.io.gfile.GFile(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
    saved_model.ParseFromString(f.read())
  ops: Dict[str, List[str]] = {}
  for mg in saved_model.meta_graphs:
    for node in mg.graph_def.node:
      ops.setdefault(node.op, []).append("<graph>")
    for fn in mg.graph_def.library.function:
      for node in fn.node_def:
        ops.setdefault(node.op, []).append(fn.signature.name)
  return ops


def check_saved_model_ops(export_dir: str, forbidden_prefixes: Sequence[str] = ()) -> List[str]:
  """Raises ServingExportError if the SavedModel runs a py_function (or an op type starting with
  one of `forbidden_prefixes`, e.g. "Scann" for the stock variant); returns the sorted op types."""
  ops = saved_model_op_types(export_dir)
  bad = sorted(op for op in ops if op in PY_FUNCTION_OPS or
               any(op.startswith(p) for p in forbidden_prefixes))
  if bad:
    where = {op: sorted(set(ops[op]))[:3] for op in bad}
    raise ServingExportError(f"SavedModel {export_dir} contains forbidden ops {where} "
                             "(py_function cannot be served; stock exports must not use ScaNN).")
  return sorted(ops)
