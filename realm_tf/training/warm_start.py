"""Warm starting, in one place: where every model's initial weights come from.

ICT, the reader warm-up, REALM pre-training and open-QA fine-tuning all start their models here.
A *source* is a path (or the alias `minilm`, the installed all-MiniLM-L6-v2 weights) of one kind:

* `hf`        a Hugging Face BERT directory (config.json + model.safetensors). The encoder, and the
              MLM head whenever the checkpoint has one (`cls.predictions.*`).
* `tf1`       a TF1 BERT / REALM / ORQA checkpoint (prefix, directory or TF-Hub module). The encoder,
              and the MLM head whenever it has `cls/predictions/*`.
* `converted` the output of `python -m realm_tf.launch.convert_checkpoint` (realm_config.json).
* `export`    an embedder export (realm_export.json): both retriever towers.
* `trainer`   a model_dir of our Trainer (config.json + checkpoints/): an ICT run (retriever), a
              reader warm-up (knowledge-augmented encoder), a REALM run (both) or a fine-tuning run.

Why one module: each model has one function here (`init_retriever`, `init_knowledge_encoder`,
`init_openqa`) that accepts every kind that holds its weights, so the stages cannot drift apart
(e.g. one of them forgetting the MLM head of a BERT checkpoint, or initialising the two retriever
projections differently).

Pretrained encoders in the retriever: a sentence encoder such as MiniLM was trained to compare
query and document vectors directly. Two towers that each get their own random projection no
longer share a space (retrieval falls to chance), so `init_retriever` gives both towers the same
encoder weights *and the same projection*: the identity when the projection is square (the
encoder's geometry is kept exactly; the projection's LayerNorm turns inner products into centred
cosines) and one shared random orthogonal map otherwise.
"""
import json
import os
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.io.errors import error_text

CONFIG_FILE = "config.json"  # the Trainer's run configuration (training.trainer.CONFIG_FILE)
KINDS = ("hf", "tf1", "converted", "export", "trainer")


class WarmStartError(ValueError):
  """A warm-start source is missing, of an unknown kind, or does not fit the model."""


def resolve_source(source: str) -> str:
  """`minilm` → the installed MiniLM directory; any other source is returned unchanged."""
  if source == "minilm":
    from realm_tf.checkpoints import hf_bert  # pylint: disable=g-import-not-at-top
    path = hf_bert.default_minilm_dir()
    if not os.path.exists(os.path.join(path, "model.safetensors")):
      raise WarmStartError(f"The MiniLM weights are not installed at {path} (run `make install`).")
    return path
  return source


def source_kind(source: str) -> str:
  """One of KINDS for `source` (see the module docstring); WarmStartError when none fits."""
  from realm_tf.retrieval import embedder_export  # pylint: disable=g-import-not-at-top
  path = resolve_source(source)
  exists = tf.io.gfile.exists
  if exists(os.path.join(path, embedder_export.METADATA)):
    return "export"
  if exists(os.path.join(path, "realm_config.json")):
    return "converted"
  if exists(os.path.join(path, "model.safetensors")) or \
      exists(os.path.join(path, "model.safetensors.index.json")):
    return "hf"
  if exists(os.path.join(path, CONFIG_FILE)) and exists(os.path.join(path, "checkpoints")):
    return "trainer"
  if tf.train.latest_checkpoint(path) or exists(path + ".index") or \
      exists(os.path.join(path, "variables", "variables.index")):
    return "tf1"
  raise WarmStartError(
      f"Warm-start source {source} is none of: a Hugging Face BERT directory (model.safetensors), "
      "a TF1 checkpoint, a converted checkpoint (realm_config.json), an embedder export "
      "(realm_export.json) or a training model_dir (config.json + checkpoints/).")


def latest_checkpoint(model_dir: str) -> str:
  """The newest checkpoint of a Trainer model_dir (or a plain checkpoint directory)."""
  path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")) or \
      tf.train.latest_checkpoint(model_dir)
  if not path:
    raise WarmStartError(f"No checkpoint under {model_dir}.")
  return path


def trainer_config(model_dir: str) -> Dict:
  """The `config.json` a Trainer run recorded."""
  with tf.io.gfile.GFile(os.path.join(model_dir, CONFIG_FILE)) as f:
    return json.load(f)


def trainer_run_kind(model_dir: str) -> str:
  """What a Trainer model_dir trained: `ict`, `reader_warmup`, `realm` or `openqa`."""
  cfg = trainer_config(model_dir)
  model = cfg.get("model", {})
  if "reader_encoder" in model:
    return "realm"
  if "reader" in model and "retriever" in model:
    return "openqa"
  if "knowledge_encoder" in cfg or cfg.get("stage") == "reader_warmup":
    return "reader_warmup"
  if "retriever" in cfg:
    return "ict"
  raise WarmStartError(f"{model_dir}/{CONFIG_FILE} describes no run this project knows.")


def _converted_config(path: str) -> Dict:
  with tf.io.gfile.GFile(os.path.join(path, "realm_config.json")) as f:
    return json.load(f)


def has_mlm_head(source: Optional[str]) -> bool:
  """Whether a reader source carries an MLM head (HF `cls.predictions.*`, TF1
  `cls/predictions/*`, a reader warm-up or REALM run, a converted knowledge encoder with its
  head), so the main job needs no reader warm-up."""
  if not source:
    return False
  path = resolve_source(source)
  kind = source_kind(path)
  if kind == "hf":
    from realm_tf.checkpoints import hf_bert  # pylint: disable=g-import-not-at-top
    return any(".predictions." in n or n.startswith("cls.predictions")
               for n in hf_bert.read_hf_tensor_names(path))
  if kind == "tf1":
    from realm_tf.checkpoints import tf1_bert  # pylint: disable=g-import-not-at-top
    return any("cls/predictions/" in n for n in tf1_bert.tf1_source(path).names())
  if kind == "trainer":
    return trainer_run_kind(path) in ("reader_warmup", "realm")
  if kind == "converted":
    cfg = _converted_config(path)
    return cfg.get("target") == "knowledge_encoder" and \
        "knowledge_encoder.mlm_head" not in cfg.get("fresh", [])
  return False


def _read(checkpoint: tf.train.Checkpoint, path: str, what: str) -> None:
  try:
    checkpoint.read(path).expect_partial().assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as e:
    raise WarmStartError(f"{path} does not fit the {what}: {error_text(e)}") from e


# ----------------------------------------------------------------------------------------------
# Encoders (a BertEncoderV2, optionally with its tied MLM head).

def init_encoder(encoder, source: str, mlm_head=None) -> Dict[str, object]:
  """Loads a BERT encoder (+ `mlm_head` when the source has one) from an hf/tf1/converted source.

  Returns {"encoder": source path, "mlm_head": True when the head was loaded}.
  """
  from realm_tf.checkpoints import mapping  # pylint: disable=g-import-not-at-top
  path = resolve_source(source)
  kind = source_kind(path)
  mapping.ensure_encoder_built(encoder)
  if kind == "hf":
    from realm_tf.checkpoints import hf_bert  # pylint: disable=g-import-not-at-top
    result = hf_bert.load_hf_bert_into_encoder(path, encoder, mlm_head)
    return {"encoder": path, "mlm_head": result.mlm_head_loaded}
  if kind == "tf1":
    from realm_tf.checkpoints import tf1_bert  # pylint: disable=g-import-not-at-top
    src = tf1_bert.tf1_source(path)
    prefixes = tf1_bert.find_bert_prefixes(src.names())
    has_head = len(prefixes) == 1 and f"{prefixes[0]}cls/predictions/output_bias" in src
    tf1_bert.load_tf1_encoder(src, encoder, mlm_head if has_head else None)
    return {"encoder": path, "mlm_head": bool(has_head and mlm_head is not None)}
  if kind == "converted":
    cfg = _converted_config(path)
    ckpt = os.path.join(path, cfg.get("checkpoint", "ckpt"))
    target = cfg["target"]
    if target == "encoder":
      objects = {"encoder": encoder}
      head = mlm_head is not None and "mlm_head" in cfg.get("checkpoint_keys", [])
      if head:
        objects["mlm_head"] = mlm_head
      _read(tf.train.Checkpoint(**objects), ckpt, "encoder")
      return {"encoder": ckpt, "mlm_head": head}
    if target in ("knowledge_encoder", "reader"):
      inner = {"encoder": encoder}
      head = target == "knowledge_encoder" and mlm_head is not None and \
          "knowledge_encoder.mlm_head" not in cfg.get("fresh", [])
      if head:
        inner["mlm_head"] = mlm_head
      _read(tf.train.Checkpoint(**{target: tf.train.Checkpoint(**inner)}), ckpt, "encoder")
      return {"encoder": ckpt, "mlm_head": head}
  raise WarmStartError(f"{source} ({kind}) holds no single BERT encoder to load.")


# ----------------------------------------------------------------------------------------------
# The retriever.

def share_projection_init(retriever, seed: int = 0) -> str:
  """Gives both towers the same projection: identity when square, else one random orthogonal map.

  The projection's LayerNorm is reset to gamma = 1, beta = 0. Returns "identity" or "orthogonal".
  """
  projections = [retriever.query_projection]
  if retriever.doc_projection is not retriever.query_projection:
    projections.append(retriever.doc_projection)
  kernel_shape = tuple(int(d) for d in retriever.query_projection.dense.kernel.shape)
  n_in, n_out = kernel_shape
  if n_in == n_out:
    kernel, how = np.eye(n_in, dtype=np.float32), "identity"
  else:
    rng = np.random.RandomState(seed)
    q, _ = np.linalg.qr(rng.normal(size=[max(n_in, n_out), min(n_in, n_out)]))
    kernel = (q if n_in >= n_out else q.T).astype(np.float32)
    how = "orthogonal"
  for proj in projections:
    proj.dense.kernel.assign(kernel)
    proj.dense.bias.assign(tf.zeros_like(proj.dense.bias))
    if proj.layer_norm is not None:
      proj.layer_norm.gamma.assign(tf.ones_like(proj.layer_norm.gamma))
      proj.layer_norm.beta.assign(tf.zeros_like(proj.layer_norm.beta))
  return how


def scale_retrieval_scores(retriever, factor: float) -> None:
  """Multiplies every inner product the retriever computes by `factor` (a softmax temperature
  of 1/factor over retrieved blocks), keeping its ranking.

  An ICT-trained or sentence-encoder retriever with a layer-normed projection scores blocks at
  up to ±projection_size, so REALM's prior over its few candidates starts one-hot and the
  retriever gets no gradient. Shared towers scale their one projection by sqrt(factor).
  """
  if factor <= 0:
    raise ValueError(f"retrieval score scale must be positive, got {factor}.")
  if retriever.doc_projection is retriever.query_projection:
    retriever.query_projection.rescale(float(np.sqrt(factor)))
  else:
    retriever.query_projection.rescale(float(factor))


def _towers(retriever):
  encoders = [retriever.query_encoder]
  if retriever.doc_encoder is not retriever.query_encoder:
    encoders.append(retriever.doc_encoder)
  return encoders


def _copy_variables(dst: Sequence[tf.Variable], src: Sequence, what: str) -> None:
  if len(dst) != len(src):
    raise WarmStartError(f"{what}: {len(src)} source variables for {len(dst)} model variables.")
  for d, s in zip(dst, src):
    if tuple(d.shape) != tuple(s.shape):
      raise WarmStartError(f"{what}: shape mismatch {d.name} {d.shape} vs {s.shape}.")
    d.assign(s)


def _read_trainer_run(path: str, obj, own_run: str, realm_part: str, what: str) -> str:
  """Reads `obj` from the newest checkpoint of a trainer run: the whole model of an `own_run` run
  (e.g. ICT for a retriever), or the `realm_part` of a REALM run's model; returns that checkpoint.
  Any other run holds no `what`."""
  run = trainer_run_kind(path)
  ckpt = latest_checkpoint(path)
  if run == own_run:
    _read(tf.train.Checkpoint(model=obj), ckpt, what)
  elif run == "realm":
    _read(tf.train.Checkpoint(model=tf.train.Checkpoint(**{realm_part: obj})), ckpt, what)
  else:
    raise WarmStartError(f"{path} is a {run} run; it holds no {what}.")
  return ckpt


def init_retriever(retriever, source: str) -> Dict[str, object]:
  """Warm-starts both retriever towers (built) from any kind of source.

  * hf / tf1 BERT / converted `encoder`: the same encoder weights in both towers and a shared
    projection (`share_projection_init`), so the towers start in one space.
  * tf1 REALM/ORQA embedder, converted `retriever`: the towers and their projections.
  * export: the export's towers. trainer: an ICT or REALM run's retriever.
  """
  path = resolve_source(source)
  kind = source_kind(path)
  retriever.build_towers()
  if kind == "trainer":
    return {"retriever": _read_trainer_run(path, retriever, "ict", "retriever", "retriever")}
  if kind == "export":
    from realm_tf.retrieval import embedder_export  # pylint: disable=g-import-not-at-top
    embedder_export.read_metadata(path)
    module = tf.saved_model.load(path)
    _copy_variables(retriever.variables, list(module.retriever_variables), f"export {path}")
    return {"retriever": path}
  if kind == "converted" and _converted_config(path)["target"] == "retriever":
    ckpt = os.path.join(path, _converted_config(path).get("checkpoint", "ckpt"))
    _read(tf.train.Checkpoint(retriever=retriever), ckpt, "retriever")
    return {"retriever": ckpt}
  if kind == "tf1":
    from realm_tf.checkpoints import tf1_bert  # pylint: disable=g-import-not-at-top
    src = tf1_bert.tf1_source(path)
    bert = [p for p in tf1_bert.find_bert_prefixes(src.names()) if not p.startswith("reader/")]
    if len(bert) == 1 and tf1_bert.projection_prefix(bert[0]) + "dense/kernel" in src:
      tf1_bert.load_tf1_retriever(src, retriever)  # a REALM / ORQA embedder
      return {"retriever": path}
  used = {}
  for encoder in _towers(retriever):
    used = init_encoder(encoder, path)
  how = share_projection_init(retriever)
  logging.info("Retriever towers from %s; both projections start from the same %s map.", path, how)
  return {"retriever": used["encoder"], "projection": how}


# ----------------------------------------------------------------------------------------------
# The knowledge-augmented encoder (REALM's reader in pre-training).

def init_knowledge_encoder(knowledge_encoder, source: str) -> Dict[str, object]:
  """Warm-starts the knowledge-augmented encoder (encoder + MLM head) from any kind of source.

  The MLM head is loaded whenever the source has one (HF `cls.predictions.*`, TF1
  `cls/predictions/*`, a converted knowledge encoder, a reader warm-up or a REALM run); otherwise
  it keeps its fresh initialisation, and `mlm_head` in the result is False.
  """
  path = resolve_source(source)
  kind = source_kind(path)
  knowledge_encoder.build_all()
  if kind == "trainer":
    ckpt = _read_trainer_run(path, knowledge_encoder, "reader_warmup", "knowledge_encoder",
                             "knowledge-augmented encoder")
    return {"encoder": ckpt, "mlm_head": True}
  result = init_encoder(knowledge_encoder.encoder, path, knowledge_encoder.mlm_head)
  if not result["mlm_head"]:
    logging.info("%s has no MLM head: the reader's head starts fresh (run the reader warm-up).",
                 path)
  return result


def encoder_config_of(source: Optional[str]):
  """The reader BERT's EncoderConfig a source implies, or None when it holds no reader."""
  if not source:
    return None
  from realm_tf.modeling.encoder_config import EncoderConfig, get_encoder_config  # pylint: disable=g-import-not-at-top
  path = resolve_source(source)
  kind = source_kind(path)
  if kind == "hf":
    from realm_tf.checkpoints import hf_bert  # pylint: disable=g-import-not-at-top
    return hf_bert.load_hf_config(path)
  if kind == "trainer":
    cfg = trainer_config(path)
    run = trainer_run_kind(path)
    if run == "realm":
      return get_encoder_config(EncoderConfig.from_dict(cfg["model"]["reader_encoder"]))
    if run == "reader_warmup":
      return EncoderConfig.from_dict(cfg["knowledge_encoder"])
    if run == "openqa":
      from realm_tf.modeling.reader import ReaderConfig  # pylint: disable=g-import-not-at-top
      return ReaderConfig.from_dict(cfg["model"]["reader"]).encoder_config
    return None
  if kind == "converted":
    cfg = _converted_config(path)
    if cfg.get("target") in ("reader", "knowledge_encoder", "encoder"):
      return EncoderConfig.from_dict(cfg["encoder_config"])
  return None


# ----------------------------------------------------------------------------------------------
# The open-QA model (query tower + reader).

def _init_query_tower(model, path: str, kind: str) -> Dict[str, object]:
  from realm_tf.modeling.retriever import Retriever  # pylint: disable=g-import-not-at-top
  proxy = Retriever(model.config.retriever)
  if kind == "export":
    from realm_tf.retrieval import embedder_export  # pylint: disable=g-import-not-at-top
    from realm_tf.modeling.retriever import RetrieverConfig  # pylint: disable=g-import-not-at-top
    meta = embedder_export.read_metadata(path)
    if "retriever_config" in meta:
      proxy = Retriever(RetrieverConfig.from_dict(meta["retriever_config"]))
  used = init_retriever(proxy, path)
  _copy_variables(model.query_encoder.variables, proxy.query_encoder.variables, "query encoder")
  _copy_variables(model.query_projection.variables, proxy.query_projection.variables,
                  "query projection")
  return {"query_tower": used["retriever"]}


def init_openqa_reader(model, source: str) -> Dict[str, object]:
  """Loads the open-QA reader's BERT from a REALM run, a reader warm-up, an hf/tf1/converted
  encoder, or a converted ORQA reader (encoder + span head); the span head otherwise starts fresh."""
  path = resolve_source(source)
  kind = source_kind(path)
  if kind == "trainer":
    run = trainer_run_kind(path)
    ckpt = latest_checkpoint(path)
    if run == "realm":
      _read(tf.train.Checkpoint(model=tf.train.Checkpoint(knowledge_encoder=tf.train.Checkpoint(
          encoder=model.reader.encoder))), ckpt, "reader encoder")
    elif run == "reader_warmup":
      _read(tf.train.Checkpoint(model=tf.train.Checkpoint(encoder=model.reader.encoder)), ckpt,
            "reader encoder")
    elif run == "openqa":
      _read(tf.train.Checkpoint(model=tf.train.Checkpoint(reader=model.reader)), ckpt, "reader")
    else:
      raise WarmStartError(f"{path} is an {run} run; it holds no reader.")
    return {"reader": ckpt}
  if kind == "converted" and _converted_config(path)["target"] == "reader":
    ckpt = os.path.join(path, _converted_config(path).get("checkpoint", "ckpt"))
    _read(tf.train.Checkpoint(reader=model.reader), ckpt, "reader")
    return {"reader": ckpt}
  return {"reader": init_encoder(model.reader.encoder, path)["encoder"]}


def init_openqa(model, source: Optional[str], reader_source: Optional[str] = None
                ) -> Dict[str, object]:
  """Warm-starts an OpenQAModel (built); returns {"query_tower": src, "reader": src}.

  * a REALM run: its query tower and knowledge-augmented encoder (REALM's recipe);
  * an embedder export, ICT run or converted retriever: the query tower only;
  * a fine-tuning run: the query tower and the whole reader (continue on another dataset);
  * a converted reader / knowledge encoder / encoder: the reader only.
  `reader_source` (any source `init_openqa_reader` takes) overrides where the reader comes from.
  """
  used: Dict[str, object] = {}
  if source:
    path = resolve_source(source)
    kind = source_kind(path)
    if kind == "trainer" and trainer_run_kind(path) == "openqa":
      ckpt = latest_checkpoint(path)
      _read(tf.train.Checkpoint(model=model), ckpt, "open-QA model")
      used = {"query_tower": ckpt, "reader": ckpt}
    elif kind == "trainer" and trainer_run_kind(path) == "realm":
      used.update(_init_query_tower(model, path, kind))
      used.update(init_openqa_reader(model, path))
    elif kind in ("export", "trainer") or (
        kind == "converted" and _converted_config(path)["target"] == "retriever"):
      used.update(_init_query_tower(model, path, kind))
    else:
      used.update(init_openqa_reader(model, path))
  if reader_source:
    used.update(init_openqa_reader(model, reader_source))
  logging.info("Warm start: %s", used)
  return used
