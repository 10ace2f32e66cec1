"""TF1 checkpoints in the original BERT / ORQA / REALM variable naming → our TF2 models.

Names (from google-research/bert `modeling.py` / `run_pretraining.py` and
google-research/language `orqa/models/{ict,orqa}_model.py`, `realm/model.py`):

* BERT (and REALM's `cc_news_pretrained/bert`, the knowledge-augmented encoder):
  `bert/embeddings/{word,position,token_type}_embeddings`, `bert/embeddings/LayerNorm/{gamma,beta}`,
  `bert/encoder/layer_N/attention/self/{query,key,value}/{kernel,bias}`,
  `bert/encoder/layer_N/attention/output/{dense/*,LayerNorm/*}`, `bert/encoder/layer_N/intermediate/
  dense/*`, `bert/encoder/layer_N/output/{dense/*,LayerNorm/*}`, `bert/pooler/dense/*`,
  `cls/predictions/transform/{dense/*,LayerNorm/*}`, `cls/predictions/output_bias`
  (`cls/seq_relationship/*`, the next-sentence head, is not used).
* Retriever ("embedder" hub module): `LayerNorm(dense(pooled_output))`. The BERT variables sit one
  hub-module scope deeper than the projection: REALM's `cc_news_pretrained/embedder` holds
  `module/module/module/bert/...` + `module/module/{dense,LayerNorm}/...`; the ORQA fine-tuned
  `orqa_{nq,wq}_model_from_realm` holds the query tower as `module/module/module/module/bert/...` +
  `module/module/module/{dense,LayerNorm}/...`; an ICT export holds `module/bert/...` +
  `dense/...`, `layer_normalization/...`. The converter finds the `bert/embeddings/word_embeddings`
  prefix and takes the projection one `module/` up.
* ORQA reader (`orqa_*_model_from_realm`): `reader/module/bert/...` (+ unused `reader/module/cls/...`),
  span MLP `reader/dense/{kernel,bias}` [H, 2S] (start | end halves, as `tf.split(projection, 2, -1)`),
  `reader/layer_normalization/{gamma,beta}` [S], `reader/dense_1/{kernel,bias}` [S, 1].

Everything is read with a checkpoint reader (`paths.checkpoint_reader`; no TF1 graph needed).
"""
import json
import os
import re
from typing import Dict, List, Optional, Sequence

import tensorflow as tf
import tf_keras
from absl import logging

from realm_tf.checkpoints import mapping
from realm_tf.modeling.encoder_config import EncoderConfig, build_encoder, get_encoder_config

# Google's TF1 BERT (modeling.py), which ORQA's and REALM's modules were built with, computes
# GELU with the tanh approximation.
TF1_BERT_ACTIVATION = "gelu_approximate"

_WORD = "bert/embeddings/word_embeddings"


def resolve_tf1_checkpoint(path: str) -> str:
  """Checkpoint prefix for `path`: a prefix, a directory with a `checkpoint` file, or a TF-Hub
  module / SavedModel directory (`<dir>/variables/variables`)."""
  if tf.io.gfile.exists(path + ".index"):  # first: on ram:// a prefix passes for a directory
    return path
  if tf.io.gfile.isdir(path):
    hub_vars = os.path.join(path, "variables", "variables")
    if tf.io.gfile.exists(hub_vars + ".index"):
      return hub_vars
    latest = tf.train.latest_checkpoint(path)
    if latest:
      return latest
    raise FileNotFoundError(f"No TF checkpoint in directory {path} (no 'checkpoint' file and no "
                            "variables/variables.index)")
  if not tf.io.gfile.exists(path + ".index"):
    raise FileNotFoundError(f"TF checkpoint not found: {path} (no {path}.index)")
  return path


def tf1_source(path: str) -> mapping.ArraySource:
  """ArraySource over the TF1 checkpoint at `path` (see `resolve_tf1_checkpoint`)."""
  return mapping.ArraySource.from_tf_checkpoint(resolve_tf1_checkpoint(path))


def find_bert_prefixes(names: Sequence[str]) -> List[str]:
  """Every scope P with a `P + "bert/embeddings/word_embeddings"` variable, sorted."""
  return sorted(n[: -len(_WORD)] for n in names if n.endswith(_WORD))


def _pick_prefix(source, prefix: Optional[str], exclude: Sequence[str] = (), what: str = "BERT"):
  if prefix is not None:
    if prefix + _WORD not in source:
      raise mapping.CheckpointMismatchError(
          f"{source.description} has no {prefix + _WORD}; BERT prefixes found: "
          f"{find_bert_prefixes(source.names())}")
    return prefix
  found = [p for p in find_bert_prefixes(source.names())
           if not any(p.startswith(e) for e in exclude)]
  if len(found) != 1:
    raise mapping.CheckpointMismatchError(
        f"Cannot tell which {what} to load from {source.description}: found BERT prefixes "
        f"{found or 'none'} (looked for '*{_WORD}'); pass the prefix explicitly.")
  return found[0]


def projection_prefix(bert_prefix: str) -> str:
  """Scope of the retriever projection for a given BERT scope: one hub `module/` up."""
  if bert_prefix.endswith("module/"):
    return bert_prefix[: -len("module/")]
  return bert_prefix


def bert_rules(encoder, prefix: str = "") -> List[mapping.Rule]:
  """Rules `<prefix>bert/...` → BertEncoderV2."""
  return mapping.bert_encoder_rules(encoder, lambda n: f"{prefix}bert/{n}", torch_layout=False)


def mlm_rules(mlm_head, prefix: str = "") -> List[mapping.Rule]:
  """Rules `<prefix>cls/predictions/...` → MaskedLMHead (output matrix tied, no rule)."""
  return mapping.mlm_head_rules(mlm_head, lambda n: f"{prefix}cls/predictions/{n}",
                                torch_layout=False)


def projection_rules(projection, prefix: str, hidden_size: int) -> List[mapping.Rule]:
  """Rules `<prefix>dense/*` and `<prefix>{LayerNorm,layer_normalization}/*` → RetrievalProjection."""
  mapping.ensure_dense_built(projection.dense, hidden_size)
  rules = [mapping.dense_rule(prefix + "dense/kernel", projection.dense.kernel, "kernel:1", False),
           mapping.dense_rule(prefix + "dense/bias", projection.dense.bias, "bias", False)]
  layer_norm = getattr(projection, "layer_norm", None)
  if layer_norm is not None:
    mapping.ensure_dense_built(layer_norm, int(projection.dense.units))
    for ours, theirs in ((layer_norm.gamma, "gamma"), (layer_norm.beta, "beta")):
      rules.append(mapping.dense_rule(
          (f"{prefix}LayerNorm/{theirs}", f"{prefix}layer_normalization/{theirs}"), ours, theirs,
          False))
  return rules


def _bert_ignores(bert_prefix: str, keep_mlm: bool) -> List[str]:
  ignores = ["^" + re.escape(bert_prefix + "cls/seq_relationship/")]
  if not keep_mlm:
    ignores.append("^" + re.escape(bert_prefix + "cls/predictions/"))
  return ignores


def _outside(scope: str) -> List[str]:
  """Ignore everything outside `scope` (other sub-models of a combined checkpoint)."""
  return ["^(?!" + re.escape(scope) + ")"] if scope else []


# ----------------------------------------------------------------------------------------------
# Whole-model loaders.

def load_tf1_encoder(ckpt_or_source, encoder, mlm_head=None, prefix: Optional[str] = None,
                     dry_run: bool = False) -> Dict[str, str]:
  """Loads `<prefix>bert/...` (+ `<prefix>cls/predictions/...` into `mlm_head`) into `encoder`.

  With `prefix=None` the checkpoint must hold exactly one BERT. Variables outside `prefix`
  (other sub-models of a combined checkpoint) are not this model's and are skipped; inside it,
  every variable must be used (the next-sentence head excepted).
  """
  source = _as_source(ckpt_or_source)
  prefix = _pick_prefix(source, prefix)
  rules = bert_rules(encoder, prefix)
  if mlm_head is not None:
    mapping.ensure_mlm_head_built(mlm_head)
    if mlm_head.embedding_table is not encoder.get_embedding_table():
      raise ValueError("mlm_head must be tied to this encoder's word-embedding table.")
    rules += mlm_rules(mlm_head, prefix)
  ignore = _bert_ignores(prefix, keep_mlm=mlm_head is not None) + _outside(prefix)
  return mapping.apply_rules(rules, source, ignore=ignore, dry_run=dry_run)


def load_tf1_retriever(ckpt_or_source, retriever, doc_ckpt_or_source=None,
                       query_prefix: Optional[str] = None, doc_prefix: Optional[str] = None,
                       dry_run: bool = False) -> Dict[str, str]:
  """Loads a REALM/ORQA embedder into a `Retriever`'s query and document towers.

  Args:
    ckpt_or_source: the query tower's checkpoint: REALM `cc_news_pretrained/embedder`, or an
      ORQA fine-tuned model (its `reader/` variables are skipped).
    retriever: a `realm_tf.modeling.retriever.Retriever` (variables are built here).
    doc_ckpt_or_source: the document tower's checkpoint; defaults to the query's (REALM shares one
      embedder for both). For ORQA fine-tuned models pass the pre-trained embedder: ORQA froze the
      document index, so only the query tower was fine-tuned.
    query_prefix, doc_prefix: BERT scopes (e.g. "module/module/module/"); found when None.
  """
  query_source = _as_source(ckpt_or_source)
  doc_source = query_source if doc_ckpt_or_source is None else _as_source(doc_ckpt_or_source)
  hidden = int(retriever.config.encoder_config.hidden_size)
  towers = [("query", query_source, query_prefix, retriever.query_encoder,
             retriever.query_projection)]
  shared = retriever.doc_encoder is retriever.query_encoder
  if shared:
    if doc_source is not query_source or (doc_prefix not in (None, query_prefix)):
      raise ValueError("This retriever shares one tower (share_towers=True); it cannot take "
                       "different query and document checkpoints.")
  else:
    towers.append(("doc", doc_source, doc_prefix, retriever.doc_encoder, retriever.doc_projection))
  per_source = {}
  for what, source, prefix, encoder, projection in towers:
    bert_prefix = _pick_prefix(source, prefix, exclude=("reader/",), what=f"{what} embedder")
    proj_prefix = projection_prefix(bert_prefix)
    rules = bert_rules(encoder, bert_prefix) + projection_rules(projection, proj_prefix, hidden)
    ignore = _bert_ignores(bert_prefix, keep_mlm=False) + _outside(proj_prefix)
    if not proj_prefix:
      ignore.append("^reader/")
    entry = per_source.setdefault(id(source), [source, [], []])
    entry[1] += rules
    entry[2] += ignore
  # Check every source before assigning anything.
  for source, rules, ignore in per_source.values():
    mapping.apply_rules(rules, source, ignore=ignore, dry_run=True)
  used = {}
  if not dry_run:
    for source, rules, ignore in per_source.values():
      used.update(mapping.apply_rules(rules, source, ignore=ignore))
  return used


class SpanHead(tf.Module):
  """Container with ORQA's span-scorer weights under the attribute names `Reader.span_head` uses:
  `start_dense`, `end_dense` (hidden → S), `layer_norm` (S; epsilon 1e-3, tf.keras' default that
  ORQA used) and `score_dense` (S → 1)."""

  def __init__(self, span_hidden_size: int, name: str = "span_head"):
    super().__init__(name=name)
    self.span_hidden_size = span_hidden_size
    self.start_dense = tf_keras.layers.Dense(span_hidden_size, name="start_dense")
    self.end_dense = tf_keras.layers.Dense(span_hidden_size, name="end_dense")
    self.layer_norm = tf_keras.layers.LayerNormalization(axis=-1, epsilon=1e-3, name="layer_norm")
    self.score_dense = tf_keras.layers.Dense(1, name="score_dense")


class ReaderWeights(tf.Module):
  """Stand-in with the weight layout of `realm_tf.modeling.reader.Reader` (`encoder`,
  `span_head`), used when converting without that class. An object checkpoint written from it
  restores into any object with the same attribute names."""

  def __init__(self, encoder_config, span_hidden_size: int = 256, name: str = "reader"):
    super().__init__(name=name)
    self.encoder_config = get_encoder_config(encoder_config)
    self.encoder = build_encoder(self.encoder_config, name="reader_encoder")
    self.span_head = SpanHead(span_hidden_size)


def build_span_head(span_head, hidden_size: int):
  """Creates the span head's variables (Dense/LayerNorm layers built for their input sizes)."""
  size = int(span_head.start_dense.units)
  mapping.ensure_dense_built(span_head.start_dense, hidden_size)
  mapping.ensure_dense_built(span_head.end_dense, hidden_size)
  mapping.ensure_dense_built(span_head.layer_norm, size)
  mapping.ensure_dense_built(span_head.score_dense, size)
  return span_head


def span_head_rules(span_head, hidden_size: int, prefix: str = "reader/") -> List[mapping.Rule]:
  """Rules for ORQA's span MLP: `dense` [H, 2S] split into start | end, `layer_normalization`,
  `dense_1` [S, 1]."""
  build_span_head(span_head, hidden_size)
  s = int(span_head.start_dense.units)
  if int(span_head.end_dense.units) != s:
    raise ValueError("start_dense and end_dense must have the same size.")
  h = hidden_size
  return [
      mapping.Rule(prefix + "dense/kernel", span_head.start_dense.kernel, (h, 2 * s),
                   lambda a: a[:, :s]),
      mapping.Rule(prefix + "dense/kernel", span_head.end_dense.kernel, (h, 2 * s),
                   lambda a: a[:, s:]),
      mapping.Rule(prefix + "dense/bias", span_head.start_dense.bias, (2 * s,), lambda a: a[:s]),
      mapping.Rule(prefix + "dense/bias", span_head.end_dense.bias, (2 * s,), lambda a: a[s:]),
      mapping.Rule(prefix + "layer_normalization/gamma", span_head.layer_norm.gamma, (s,)),
      mapping.Rule(prefix + "layer_normalization/beta", span_head.layer_norm.beta, (s,)),
      mapping.Rule(prefix + "dense_1/kernel", span_head.score_dense.kernel, (s, 1)),
      mapping.Rule(prefix + "dense_1/bias", span_head.score_dense.bias, (1,)),
  ]


def infer_span_hidden_size(ckpt_or_source, prefix: str = "reader/") -> int:
  """S from the `<prefix>dense/kernel` [H, 2S] of an ORQA reader checkpoint."""
  source = _as_source(ckpt_or_source)
  name = prefix + "dense/kernel"
  if name not in source:
    raise mapping.CheckpointMismatchError(f"{source.description} has no {name}: not an ORQA reader")
  shape = source.shape(name)
  if len(shape) != 2 or shape[1] % 2:
    raise mapping.CheckpointMismatchError(f"{name} has shape {shape}; expected [hidden, 2*S]")
  return shape[1] // 2


def load_tf1_reader(ckpt_or_source, reader, prefix: str = "reader/",
                    dry_run: bool = False) -> Dict[str, str]:
  """Loads an ORQA reader (`reader/module/bert/...` + span MLP) into `reader.encoder` and
  `reader.span_head`. The retriever (`module/...`) and the reader's unused MLM head are skipped."""
  source = _as_source(ckpt_or_source)
  bert_prefix = prefix + "module/"
  if bert_prefix + _WORD not in source:
    raise mapping.CheckpointMismatchError(f"{source.description} has no {bert_prefix + _WORD}: "
                                          "not an ORQA reader checkpoint")
  mapping.ensure_encoder_built(reader.encoder)
  hidden = int(reader.encoder.get_embedding_table().shape[-1])
  rules = bert_rules(reader.encoder, bert_prefix) + span_head_rules(reader.span_head, hidden, prefix)
  ignore = _bert_ignores(bert_prefix, keep_mlm=False) + _outside(prefix)
  return mapping.apply_rules(rules, source, ignore=ignore, dry_run=dry_run)


# ----------------------------------------------------------------------------------------------
# Configuration from a TF1 checkpoint.

def find_bert_config_json(path: str) -> Optional[str]:
  """`bert_config.json` beside the checkpoint (or in the directory), when there is one."""
  folder = path if tf.io.gfile.isdir(path) else os.path.dirname(path)
  for candidate in (os.path.join(folder, "bert_config.json"),
                    os.path.join(folder, "assets", "bert_config.json")):
    if tf.io.gfile.exists(candidate):
      return candidate
  return None


def infer_encoder_config(ckpt_or_source, prefix: Optional[str] = None,
                         num_attention_heads: Optional[int] = None,
                         exclude: Sequence[str] = ()) -> EncoderConfig:
  """EncoderConfig from the shapes under `<prefix>bert/`.

  Heads cannot be read from shapes: `num_attention_heads` or, failing that, hidden/64 (BERT's
  convention; MiniLM-style models with other head sizes need the flag).
  """
  source = _as_source(ckpt_or_source)
  prefix = _pick_prefix(source, prefix, exclude=exclude)
  p = prefix + "bert/"
  vocab, hidden = source.shape(p + "embeddings/word_embeddings")
  max_pos = source.shape(p + "embeddings/position_embeddings")[0]
  type_vocab = source.shape(p + "embeddings/token_type_embeddings")[0]
  layers = {int(m.group(1)) for n in source.names()
            for m in [re.match(re.escape(p) + r"encoder/layer_(\d+)/", n)] if m}
  if not layers or sorted(layers) != list(range(len(layers))):
    raise mapping.CheckpointMismatchError(f"{source.description}: bad layer set {sorted(layers)}")
  inner = source.shape(p + "encoder/layer_0/intermediate/dense/kernel")[1]
  if num_attention_heads is None:
    num_attention_heads = max(1, hidden // 64)
    logging.warning("Attention heads not given; assuming hidden/64 = %d.", num_attention_heads)
  if hidden % num_attention_heads:
    raise ValueError(f"hidden size {hidden} is not divisible by {num_attention_heads} heads")
  return EncoderConfig(vocab_size=vocab, hidden_size=hidden, num_layers=len(layers),
                       num_attention_heads=num_attention_heads, intermediate_size=inner,
                       max_position_embeddings=max_pos, type_vocab_size=type_vocab)


def load_bert_config_json(path: str) -> EncoderConfig:
  """EncoderConfig from an original `bert_config.json`."""
  from realm_tf.checkpoints.hf_bert import encoder_config_from_bert_json  # pylint: disable=g-import-not-at-top
  with tf.io.gfile.GFile(path) as f:
    try:
      d = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: invalid JSON ({e})") from None
  return encoder_config_from_bert_json(d, source=path)


def _as_source(ckpt_or_source) -> mapping.ArraySource:
  if isinstance(ckpt_or_source, mapping.ArraySource):
    return ckpt_or_source
  if isinstance(ckpt_or_source, dict):
    return mapping.ArraySource.from_arrays(ckpt_or_source)
  return tf1_source(ckpt_or_source)
