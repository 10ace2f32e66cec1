"""Whole-checkpoint conversion: Hugging Face or TF1 BERT/REALM/ORQA → a TF2 object checkpoint.

The output directory (published atomically) holds `ckpt.index` / `ckpt.data-*` written by
`tf.train.Checkpoint(<key>=model).write(...)`, `realm_config.json` (what was converted, the encoder
configuration, which parts were freshly initialised) and the source's `vocab.txt` when it has one.
Checkpoint keys by target:

* `encoder`: `encoder` (BertEncoderV2) and, when the source has one, `mlm_head`.
* `knowledge_encoder`: `knowledge_encoder` (KnowledgeAugmentedEncoder: `.encoder`, `.mlm_head`).
* `retriever`: `retriever` (Retriever: query/doc encoders and projections).
* `reader`: `reader` (`.encoder`, `.span_head.{start_dense,end_dense,layer_norm,score_dense}`).
* `openqa` (TF1 only): a released `orqa_{nq,wq}_model_from_realm` checkpoint over an imported
  index becomes a fine-tuning model dir instead (`config.json` + `checkpoints/`, what evaluate,
  export and the model server take; see realm_tf/release/orqa_model.py).

Restore with e.g. `tf.train.Checkpoint(retriever=my_retriever).read(path).expect_partial()`.
"""
import dataclasses
import json
import os
from typing import List, Optional

import tensorflow as tf
from absl import logging

from realm_tf.checkpoints import hf_bert
from realm_tf.checkpoints import mapping
from realm_tf.checkpoints import tf1_bert
from realm_tf.config_base import ConfigBase
from realm_tf.io import paths
from realm_tf.io import publish
from realm_tf.modeling.encoder_config import EncoderConfig, build_encoder, get_encoder_config
from realm_tf.modeling.layers import MaskedLMHead

FORMATS = ("hf", "tf1")
TARGETS = ("encoder", "retriever", "reader", "knowledge_encoder", "openqa")
CONFIG_NAME = "realm_config.json"
CHECKPOINT_NAME = "ckpt"
DEFAULT_SPAN_HIDDEN_SIZE = 256  # ORQA's span_hidden_size


@dataclasses.dataclass
class ConvertConfig(ConfigBase):
  """One conversion: the arguments of `convert_checkpoint` (see there), as one value the command
  line (realm_tf.launch.convert_checkpoint) builds from its flags and `run` takes.

  `format` is "hf" or "tf1" (FORMATS), `target` one of TARGETS; `input` and `output_dir` are
  paths. The `openqa` target reads the index and corpus of `work_dir` (its `index/` and
  `corpus/`), or of `index_dir` / `corpus_dir` where given.
  """
  format: str  # pylint: disable=redefined-builtin
  input: str  # pylint: disable=redefined-builtin
  output_dir: str
  target: str = "encoder"
  preset: Optional[str] = None
  num_attention_heads: Optional[int] = None
  doc_input: Optional[str] = None
  tf1_prefix: Optional[str] = None
  span_hidden_size: Optional[int] = None
  work_dir: Optional[str] = None
  index_dir: Optional[str] = None
  corpus_dir: Optional[str] = None
  overwrite: bool = False


@dataclasses.dataclass
class ConversionResult:
  """What `convert_checkpoint` published."""
  output_dir: str
  checkpoint_path: str
  config: dict


def _encoder_config(fmt, source, input_path, target, preset, num_attention_heads,
                    tf1_prefix) -> EncoderConfig:
  if preset:
    cfg = get_encoder_config(preset)
    if num_attention_heads:
      cfg = dataclasses.replace(cfg, num_attention_heads=num_attention_heads)
    return cfg
  if fmt == "hf":
    cfg = hf_bert.load_hf_config(input_path)
    if num_attention_heads:
      cfg = dataclasses.replace(cfg, num_attention_heads=num_attention_heads)
    return cfg
  config_json = tf1_bert.find_bert_config_json(input_path)
  if config_json:
    logging.info("Using %s", config_json)
    cfg = tf1_bert.load_bert_config_json(config_json)
    if num_attention_heads:
      cfg = dataclasses.replace(cfg, num_attention_heads=num_attention_heads)
    return cfg
  if target == "reader":
    prefix = tf1_prefix or "reader/module/"
  else:
    prefix = tf1_prefix
  exclude = ("reader/",) if target == "retriever" else ()
  return tf1_bert.infer_encoder_config(source, prefix, num_attention_heads, exclude=exclude)


def _find_vocab(input_path: str) -> Optional[str]:
  """`vocab.txt` of an HF directory, a TF-Hub module (`assets/`) or beside a TF1 checkpoint."""
  folder = input_path if tf.io.gfile.isdir(input_path) else os.path.dirname(input_path)
  for candidate in (os.path.join(folder, "vocab.txt"), os.path.join(folder, "assets", "vocab.txt")):
    if tf.io.gfile.exists(candidate):
      return candidate
  return None


def _tf1_has_mlm(source, prefix: Optional[str]) -> bool:
  prefixes = [prefix] if prefix is not None else tf1_bert.find_bert_prefixes(source.names())
  return len(prefixes) == 1 and (prefixes[0] + "cls/predictions/output_bias") in source


def _build_retriever_variables(retriever):
  dummy = {k: tf.zeros([1, 8], tf.int32) for k in ("input_word_ids", "input_mask", "input_type_ids")}
  retriever.embed_queries(dummy)
  retriever.embed_documents(dummy)


def convert_checkpoint(fmt: str, input_path: str, output_dir: str, target: str,
                       preset: Optional[str] = None, num_attention_heads: Optional[int] = None,
                       doc_input: Optional[str] = None, tf1_prefix: Optional[str] = None,
                       span_hidden_size: Optional[int] = None,
                       overwrite: bool = False) -> ConversionResult:
  """Converts one checkpoint and publishes `output_dir` atomically.

  Args:
    fmt: "hf" (a directory with config.json + model.safetensors) or "tf1" (a checkpoint prefix,
      a directory with a `checkpoint` file, or a TF-Hub module directory).
    input_path: the source.
    output_dir: where the converted checkpoint goes; must not exist unless `overwrite`.
    target: "encoder", "knowledge_encoder", "retriever" or "reader".
    preset: encoder preset name to use instead of the source's configuration.
    num_attention_heads: heads, when the source has no config (TF1 shapes do not tell).
    doc_input: TF1 retriever only: the document tower's checkpoint (default: `input_path`).
    tf1_prefix: TF1 only: the scope before `bert/` when the checkpoint holds several BERTs.
    span_hidden_size: reader only, for sources without a span head (HF); TF1 reads it.
    overwrite: replace an existing `output_dir`.

  Raises:
    CheckpointMismatchError: missing / unused / mis-shaped variables; nothing is written.
  """
  if fmt not in FORMATS:
    raise ValueError(f"Unknown format {fmt!r}; expected one of {FORMATS}")
  if target not in TARGETS:
    raise ValueError(f"Unknown target {target!r}; expected one of {TARGETS}")
  if tf.io.gfile.exists(output_dir) and not overwrite:
    raise FileExistsError(f"Output directory already exists: {output_dir}")
  if doc_input and not (fmt == "tf1" and target == "retriever"):
    raise ValueError("doc_input applies to --format=tf1 --target=retriever only")

  if fmt == "hf":
    if not tf.io.gfile.isdir(input_path):
      raise FileNotFoundError(f"Hugging Face input must be a directory: {input_path}")
    source = None
    arrays = hf_bert.read_hf_arrays(input_path)
  else:
    source = tf1_bert.tf1_source(input_path)
    arrays = None
  cfg = _encoder_config(fmt, source, input_path, target, preset, num_attention_heads, tf1_prefix)
  logging.info("Encoder config: %s", cfg)

  fresh: List[str] = []
  extra_config = {}
  if target in ("encoder", "knowledge_encoder"):
    if target == "knowledge_encoder":
      from realm_tf.modeling.knowledge_encoder import KnowledgeAugmentedEncoder  # pylint: disable=g-import-not-at-top
      model = KnowledgeAugmentedEncoder(cfg)
      encoder, mlm_head = model.encoder, model.mlm_head
    else:
      encoder = build_encoder(cfg, name="encoder")
      mlm_head = MaskedLMHead(encoder.get_embedding_table, activation=cfg.hidden_act,
                              initializer_range=cfg.initializer_range, name="mlm_head")
    mapping.ensure_encoder_built(encoder)
    mapping.ensure_mlm_head_built(mlm_head)
    if fmt == "hf":
      result = hf_bert.load_hf_bert_into_encoder(arrays, encoder, mlm_head)
      used, head_loaded = result.used, result.mlm_head_loaded
    else:
      head_loaded = _tf1_has_mlm(source, tf1_prefix)
      used = tf1_bert.load_tf1_encoder(source, encoder, mlm_head if head_loaded else None,
                                       prefix=tf1_prefix)
    if target == "knowledge_encoder":
      objects = {"knowledge_encoder": model}
      if not head_loaded:
        fresh.append("knowledge_encoder.mlm_head")
    else:
      objects = {"encoder": encoder}
      if head_loaded:
        objects["mlm_head"] = mlm_head
  elif target == "retriever":
    from realm_tf.modeling.retriever import Retriever, RetrieverConfig  # pylint: disable=g-import-not-at-top
    rconfig = RetrieverConfig(encoder=cfg)
    model = Retriever(rconfig, name="retriever")
    _build_retriever_variables(model)
    if fmt == "hf":
      used = {}
      for enc in {id(model.query_encoder): model.query_encoder,
                  id(model.doc_encoder): model.doc_encoder}.values():
        used.update(hf_bert.load_hf_bert_into_encoder(arrays, enc).used)
      fresh += ["retriever.query_projection", "retriever.doc_projection"]
    else:
      doc_source = tf1_bert.tf1_source(doc_input) if doc_input else None
      used = tf1_bert.load_tf1_retriever(source, model, doc_source)
    objects = {"retriever": model}
    extra_config["retriever_config"] = rconfig.to_dict()
  else:  # reader
    if fmt == "tf1":
      size = tf1_bert.infer_span_hidden_size(source)
      if span_hidden_size and span_hidden_size != size:
        raise ValueError(f"span_hidden_size={span_hidden_size} but the checkpoint has {size}")
    else:
      size = span_hidden_size or DEFAULT_SPAN_HIDDEN_SIZE
    model = tf1_bert.ReaderWeights(cfg, span_hidden_size=size)
    mapping.ensure_encoder_built(model.encoder)
    tf1_bert.build_span_head(model.span_head, cfg.hidden_size)
    if fmt == "hf":
      used = hf_bert.load_hf_bert_into_encoder(arrays, model.encoder).used
      fresh.append("reader.span_head")
    else:
      used = tf1_bert.load_tf1_reader(source, model)
    objects = {"reader": model}
    extra_config["span_hidden_size"] = size

  vocab = _find_vocab(input_path)
  config = {
      "format": fmt,
      "input": paths.absolute(input_path),
      "doc_input": paths.absolute(doc_input) if doc_input else None,
      "target": target,
      "checkpoint": CHECKPOINT_NAME,
      "checkpoint_keys": sorted(objects),
      "encoder_config": cfg.to_dict(),
      "fresh": fresh,
      "num_source_variables_used": len(used),
      "vocab_file": "vocab.txt" if vocab else None,
      **extra_config,
  }
  with publish.publish_dir(paths.absolute(output_dir), replace=overwrite) as tmp:
    tf.train.Checkpoint(**objects).write(os.path.join(tmp, CHECKPOINT_NAME))
    if vocab:
      tf.io.gfile.copy(vocab, os.path.join(tmp, "vocab.txt"))
      from realm_tf.text import vocab_fingerprint  # pylint: disable=g-import-not-at-top
      config["vocab_fingerprint"] = vocab_fingerprint(os.path.join(tmp, "vocab.txt"))
    with tf.io.gfile.GFile(os.path.join(tmp, CONFIG_NAME), "w") as f:
      json.dump(config, f, indent=2, sort_keys=True)
  if fresh:
    logging.info("Freshly initialised (not in the source): %s", ", ".join(fresh))
  logging.info("Converted %d source variables → %s", len(used), output_dir)
  return ConversionResult(output_dir=paths.absolute(output_dir),
                          checkpoint_path=os.path.join(paths.absolute(output_dir), CHECKPOINT_NAME),
                          config=config)


def run(config: ConvertConfig) -> ConversionResult:
  """Converts the checkpoint `config` names and publishes it (see `convert_checkpoint`, and
  `realm_tf.release.orqa_model.run` for the `openqa` target, a released open-QA model)."""
  if config.target == "openqa":
    raise ValueError("--target=openqa converts a released open-QA model over an imported index: "
                     "realm_tf.release.orqa_model.run")
  return convert_checkpoint(
      config.format, config.input, config.output_dir, config.target, preset=config.preset,
      num_attention_heads=config.num_attention_heads, doc_input=config.doc_input,
      tf1_prefix=config.tf1_prefix, span_hidden_size=config.span_hidden_size,
      overwrite=config.overwrite)
