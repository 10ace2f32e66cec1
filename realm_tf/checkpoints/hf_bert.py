"""Hugging Face BERT checkpoints (config.json + model.safetensors + vocab.txt) → our encoders.

Reads the safetensors file with `safetensors.numpy` (no PyTorch) and maps the Hugging Face names
(`embeddings.word_embeddings.weight`, `encoder.layer.N.attention.self.query.weight`,
`pooler.dense.weight`, optionally under a `bert.` prefix, and `cls.predictions.*`) onto a Model
Garden `BertEncoderV2` and, when present, our `MaskedLMHead`. PyTorch `Linear.weight` is
[out, in]; Keras kernels are [in, out] and attention kernels are [hidden, heads, head_dim]
(query/key/value) or [heads, head_dim, hidden] (attention output), hence transposes and reshapes.
"""
import dataclasses
import json
import os
import re
import struct
import sys
from typing import Dict, List, Mapping, Union

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.checkpoints import mapping
from realm_tf.io import paths
from realm_tf.modeling.encoder_config import EncoderConfig

_SUPPORTED_ACTS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_approximate",
                   "gelu_pytorch_tanh": "gelu_approximate", "gelu_approximate": "gelu_approximate"}
_EXPECTED_LN_EPS = 1e-12

# Source names that are never model weights here: buffers and the next-sentence head.
HF_IGNORE = (r"(^|\.)embeddings\.position_ids$", r"(^|\.)cls\.seq_relationship\.")


def default_minilm_dir() -> str:
  """Where `make install` unpacks the all-MiniLM-L6-v2 weights: `<sys.prefix>/share/realm_tf/minilm`."""
  return os.path.join(sys.prefix, "share", "realm_tf", "minilm")


def encoder_config_from_bert_json(d: Mapping, source: str = "config") -> EncoderConfig:
  """EncoderConfig from a BERT config dict (HF `config.json` or original `bert_config.json`)."""
  model_type = d.get("model_type", "bert")
  if model_type != "bert":
    raise ValueError(f"{source}: model_type {model_type!r} is not a BERT model.")
  if d.get("position_embedding_type", "absolute") != "absolute":
    raise ValueError(f"{source}: position_embedding_type {d['position_embedding_type']!r} "
                     "is not supported (only absolute).")
  act = d.get("hidden_act", "gelu")
  if act not in _SUPPORTED_ACTS:
    raise ValueError(f"{source}: hidden_act {act!r} not supported; known: {sorted(_SUPPORTED_ACTS)}")
  eps = float(d.get("layer_norm_eps", _EXPECTED_LN_EPS))
  if not np.isclose(eps, _EXPECTED_LN_EPS, rtol=0.5, atol=0):
    logging.warning("%s: layer_norm_eps=%g but BertEncoderV2 uses 1e-12; outputs will differ "
                    "slightly.", source, eps)
  try:
    return EncoderConfig(
        vocab_size=int(d["vocab_size"]),
        hidden_size=int(d["hidden_size"]),
        num_layers=int(d["num_hidden_layers"]),
        num_attention_heads=int(d["num_attention_heads"]),
        intermediate_size=int(d["intermediate_size"]),
        hidden_act=_SUPPORTED_ACTS[act],
        dropout_rate=float(d.get("hidden_dropout_prob", 0.1)),
        attention_dropout_rate=float(d.get("attention_probs_dropout_prob", 0.1)),
        max_position_embeddings=int(d.get("max_position_embeddings", 512)),
        type_vocab_size=int(d.get("type_vocab_size", 2)),
        initializer_range=float(d.get("initializer_range", 0.02)),
        layer_norm_eps=eps)
  except KeyError as e:
    raise ValueError(f"{source}: missing field {e.args[0]!r}") from None


def load_hf_config(model_dir: str) -> EncoderConfig:
  """Reads `<model_dir>/config.json` into an EncoderConfig."""
  path = os.path.join(model_dir, "config.json")
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"No config.json in {model_dir}")
  with tf.io.gfile.GFile(path) as f:
    try:
      d = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: invalid JSON ({e})") from None
  return encoder_config_from_bert_json(d, source=path)


def _safetensors_files(model_dir: str) -> List[str]:
  """`model.safetensors`, or the shards a `model.safetensors.index.json` lists."""
  single = os.path.join(model_dir, "model.safetensors")
  index = os.path.join(model_dir, "model.safetensors.index.json")
  if tf.io.gfile.exists(single):
    files = [single]
  elif tf.io.gfile.exists(index):
    with tf.io.gfile.GFile(index) as f:
      files = sorted({os.path.join(model_dir, v) for v in json.load(f)["weight_map"].values()})
  else:
    hint = " (PyTorch .bin checkpoints need torch; convert them to safetensors first)" if \
        tf.io.gfile.exists(os.path.join(model_dir, "pytorch_model.bin")) else ""
    raise FileNotFoundError(f"No model.safetensors in {model_dir}{hint}")
  return files


def read_hf_tensor_names(model_dir: str) -> List[str]:
  """The tensor names of a Hugging Face checkpoint, read from the safetensors headers alone (the
  8-byte header length and the JSON header), so a remote checkpoint is not copied for them."""
  names = []
  for path in _safetensors_files(model_dir):
    with tf.io.gfile.GFile(path, "rb") as f:
      try:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
      except (struct.error, ValueError) as e:
        raise ValueError(f"Cannot read safetensors file {path}: {e}") from e
    names += [n for n in header if n != "__metadata__"]
  return sorted(names)


def read_hf_arrays(model_dir: str) -> Dict[str, np.ndarray]:
  """All tensors of `model.safetensors` (or the shards a `model.safetensors.index.json` lists).

  `model_dir` may be on any TensorFlow filesystem: the safetensors reader takes local files only,
  so a remote file is copied to a local temporary once and read there (`paths.local_copy`).
  """
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  arrays = {}
  for path in _safetensors_files(model_dir):
    try:
      with paths.local_copy(path) as local:
        arrays.update(load_file(local))
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(f"Cannot read safetensors file {path}: {e}") from e
  return arrays


def find_hf_prefix(names) -> str:
  """The prefix before `embeddings.word_embeddings.weight` ('' for BertModel, 'bert.' for heads)."""
  suffix = "embeddings.word_embeddings.weight"
  found = sorted(n[: -len(suffix)] for n in names if n.endswith(suffix))
  if len(found) != 1:
    raise mapping.CheckpointMismatchError(
        f"Expected exactly one '*{suffix}' in the checkpoint, found {len(found)}: {found}")
  return found[0]


def _hf_name_fn(prefix: str):
  """Logical TF1-style name (below `bert/` or `cls/predictions/`) → Hugging Face name(s)."""
  def name_fn(logical: str):
    path = re.sub(r"layer_(\d+)", r"layer.\1", logical).replace("/", ".")
    head, _, last = path.rpartition(".")
    base = prefix + head + "." if head else prefix
    if last == "gamma":
      return (base + "weight", base + "gamma")
    if last == "beta":
      return (base + "bias", base + "beta")
    if last == "kernel":
      return base + "weight"
    if last == "output_bias":
      return base + "bias"
    if last == "bias":
      return base + "bias"
    return prefix + path + ".weight"  # embedding tables
  return name_fn


def _cls_prefix(prefix: str) -> str:
  return (prefix[: -len("bert.")] if prefix.endswith("bert.") else prefix) + "cls.predictions."


def hf_encoder_rules(encoder, prefix: str = ""):
  """Mapping rules from Hugging Face BERT names (under `prefix`) to a BertEncoderV2."""
  return mapping.bert_encoder_rules(encoder, _hf_name_fn(prefix), torch_layout=True)


def hf_mlm_head_rules(mlm_head, prefix: str = ""):
  """Mapping rules from `cls.predictions.*` to a MaskedLMHead."""
  return mapping.mlm_head_rules(mlm_head, _hf_name_fn(_cls_prefix(prefix)), torch_layout=True)


@dataclasses.dataclass
class HfLoadResult:
  """What `load_hf_bert_into_encoder` did."""
  prefix: str
  mlm_head_loaded: bool
  used: Dict[str, str]


def load_hf_bert_into_encoder(dir_or_arrays: Union[str, Mapping[str, np.ndarray]], encoder,
                              mlm_head=None, dry_run: bool = False) -> HfLoadResult:
  """Loads Hugging Face BERT weights into `encoder` (+ `mlm_head` when the checkpoint has one).

  Args:
    dir_or_arrays: a directory with `model.safetensors`, or a {name: array} dict.
    encoder: a BertEncoderV2 whose config matches the checkpoint (see `load_hf_config`).
    mlm_head: optional MaskedLMHead tied to `encoder`'s word embeddings. Loaded from
      `cls.predictions.*` when the checkpoint has them; otherwise it keeps its fresh initialisation.
    dry_run: check names and shapes only.

  Raises:
    CheckpointMismatchError: missing / unused / mis-shaped variables (nothing is assigned).
  """
  if isinstance(dir_or_arrays, str):
    source = mapping.ArraySource.from_arrays(read_hf_arrays(dir_or_arrays),
                                             f"Hugging Face checkpoint {dir_or_arrays}")
  else:
    source = mapping.ArraySource.from_arrays(dir_or_arrays, "Hugging Face arrays")
  names = source.names()
  prefix = find_hf_prefix(names)
  rules = hf_encoder_rules(encoder, prefix)
  cls_prefix = _cls_prefix(prefix)
  has_head = any(n.startswith(cls_prefix) for n in names)
  ignore = list(HF_IGNORE) + [re.escape(cls_prefix + "decoder.")]
  if mlm_head is not None:
    mapping.ensure_mlm_head_built(mlm_head)
    if mlm_head.embedding_table is not encoder.get_embedding_table():
      raise ValueError("mlm_head must be tied to this encoder's word-embedding table.")
    if has_head:
      rules += hf_mlm_head_rules(mlm_head, prefix)
    else:
      logging.info("No %s* in the checkpoint: the MLM head keeps its fresh initialisation.",
                   cls_prefix)
  elif has_head:
    logging.info("Ignoring the checkpoint's MLM head (%s*): no mlm_head given.", cls_prefix)
    ignore.append("^" + re.escape(cls_prefix))
  decoder = cls_prefix + "decoder.weight"
  if mlm_head is not None and has_head and decoder in source:
    word = source.get(prefix + "embeddings.word_embeddings.weight")
    dec = source.get(decoder)
    if dec.shape != word.shape or not np.allclose(dec, word):
      raise mapping.CheckpointMismatchError(
          f"{decoder} {dec.shape} differs from the word embeddings {word.shape}: our MLM head is "
          "tied to the word embeddings and cannot hold an untied output matrix.")
  used = mapping.apply_rules(rules, source, ignore=ignore, dry_run=dry_run)
  return HfLoadResult(prefix=prefix, mlm_head_loaded=mlm_head is not None and has_head, used=used)
