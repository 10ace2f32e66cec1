"""Name-mapping core shared by the checkpoint converters.

A converter describes a model as a list of `Rule`s: "checkpoint array `source` (shape S) becomes
variable `variable` after `convert`". `apply_rules` checks the whole list against a source
(missing names, unused names, shape mismatches) before it assigns anything, so a bad checkpoint
leaves the model untouched and the error names every offending variable with both shapes.
"""
import dataclasses
import re
from typing import Callable, Dict, Iterable, List, Mapping, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from realm_tf.io import paths

# Optimizer slots and bookkeeping that training checkpoints carry; never model weights.
OPTIMIZER_PATTERNS = (
    r"(^|/)global_step$",
    r"(^|/)(adam_m|adam_v)$",
    r"(^|/)Adam(_\d+)?$",
    r"(^|/)(beta1_power|beta2_power)$",
    r"AdamWeightDecayOptimizer",
    r"(^|/)Momentum$",
)

_MAX_LISTED = 25


class CheckpointMismatchError(ValueError):
  """The source checkpoint does not fit the model: missing, unused or mis-shaped variables."""


def _fmt_shape(shape) -> str:
  return "(" + ", ".join(str(int(d)) for d in shape) + ")"


def _identity(x):
  return x


@dataclasses.dataclass(frozen=True)
class Rule:
  """One checkpoint array → one model variable.

  Attributes:
    source: the checkpoint name, or a tuple of alternative names (the first one present is used;
      errors quote the first).
    variable: the target `tf.Variable`.
    source_shape: the shape the checkpoint array must have.
    convert: maps the source array (of `source_shape`) to the variable's shape.
  """
  source: Union[str, Tuple[str, ...]]
  variable: tf.Variable
  source_shape: Tuple[int, ...]
  convert: Callable[[np.ndarray], np.ndarray] = _identity

  @property
  def names(self) -> Tuple[str, ...]:
    return (self.source,) if isinstance(self.source, str) else tuple(self.source)


class ArraySource:
  """Read access to named arrays: a dict of NumPy arrays or a TF checkpoint reader."""

  def __init__(self, description: str, shapes: Mapping[str, Sequence[int]],
               getter: Callable[[str], np.ndarray]):
    self.description = description
    self._shapes = {k: tuple(int(d) for d in v) for k, v in shapes.items()}
    self._getter = getter

  @classmethod
  def from_arrays(cls, arrays: Mapping[str, np.ndarray], description: str = "arrays"):
    """Wraps an in-memory {name: array} dict."""
    arrays = dict(arrays)
    return cls(description, {k: np.shape(v) for k, v in arrays.items()},
               lambda k: np.asarray(arrays[k]))

  @classmethod
  def from_tf_checkpoint(cls, path: str):
    """Wraps the checkpoint at prefix `path` (TF1 name-based or TF2 object checkpoints)."""
    reader = paths.checkpoint_reader(path)
    return cls(f"checkpoint {path}", reader.get_variable_to_shape_map(), reader.get_tensor)

  def names(self) -> List[str]:
    return sorted(self._shapes)

  def __contains__(self, name: str) -> bool:
    return name in self._shapes

  def shape(self, name: str) -> Tuple[int, ...]:
    return self._shapes[name]

  def get(self, name: str) -> np.ndarray:
    return np.asarray(self._getter(name))


def name_map(rules: Sequence[Rule]) -> Dict[str, List[tf.Variable]]:
  """{source name: [target variables]} of a rule list (a source array may feed several variables,
  e.g. ORQA's span projection split into start and end halves)."""
  out: Dict[str, List[tf.Variable]] = {}
  for rule in rules:
    out.setdefault(rule.names[0], []).append(rule.variable)
  return out


def _listing(names: Iterable[str]) -> str:
  names = list(names)
  shown = names[:_MAX_LISTED]
  more = f"\n  ... and {len(names) - len(shown)} more" if len(names) > len(shown) else ""
  return "\n  " + "\n  ".join(shown) + more


def apply_rules(rules: Sequence[Rule], source: ArraySource,
                ignore: Sequence[str] = (), dry_run: bool = False) -> Dict[str, str]:
  """Checks `rules` against `source`, then assigns every variable.

  Args:
    rules: the model's complete mapping.
    source: where the arrays come from.
    ignore: regular expressions (re.search) of source names that are known not to belong to this
      model (e.g. an MLM head when converting a retriever). Optimizer slots are always ignored.
    dry_run: check only, assign nothing.

  Returns:
    {source name: target variable name} for the names used.

  Raises:
    CheckpointMismatchError: when a rule's name is absent, a source name is used by no rule and not
      ignored, or a shape differs. All problems are reported together; nothing is assigned.
  """
  ignore_res = [re.compile(p) for p in tuple(ignore) + OPTIMIZER_PATTERNS]
  problems = []
  chosen = []
  used = set()
  missing = []
  for rule in rules:
    present = [n for n in rule.names if n in source]
    if not present:
      alts = f" (or {', '.join(rule.names[1:])})" if len(rule.names) > 1 else ""
      missing.append(f"{rule.names[0]}{alts} — needed for {rule.variable.name} "
                     f"{_fmt_shape(rule.variable.shape)}")
      continue
    name = present[0]
    used.add(name)
    chosen.append((rule, name))
  if missing:
    problems.append(f"{len(missing)} variable(s) missing from {source.description}:"
                    + _listing(missing))
  extra = [n for n in source.names()
           if n not in used and not any(r.search(n) for r in ignore_res)]
  if extra:
    problems.append(f"{len(extra)} variable(s) in {source.description} used by no model weight:"
                    + _listing(f"{n} {_fmt_shape(source.shape(n))}" for n in extra))
  mismatched = []
  for rule, name in chosen:
    got = source.shape(name)
    if tuple(got) != tuple(rule.source_shape):
      mismatched.append(f"{name}: checkpoint shape {_fmt_shape(got)} vs model shape "
                        f"{_fmt_shape(rule.source_shape)} (for {rule.variable.name} "
                        f"{_fmt_shape(rule.variable.shape)})")
  if mismatched:
    problems.append(f"{len(mismatched)} shape mismatch(es) in {source.description}:"
                    + _listing(mismatched))
  if problems:
    raise CheckpointMismatchError("Cannot load " + source.description + ":\n"
                                  + "\n".join(problems))

  values = []
  for rule, name in chosen:
    value = rule.convert(source.get(name))
    if tuple(value.shape) != tuple(rule.variable.shape):
      raise CheckpointMismatchError(
          f"{name}: converted shape {_fmt_shape(value.shape)} vs variable {rule.variable.name} "
          f"shape {_fmt_shape(rule.variable.shape)}")
    values.append((rule.variable, value))
  if not dry_run:
    for variable, value in values:
      variable.assign(value.astype(variable.dtype.as_numpy_dtype))
  return {name: rule.variable.name for rule, name in chosen}


# ----------------------------------------------------------------------------------------------
# Model-side helpers: where the weights live in our tf_keras models.

_ENCODER_SUFFIX = re.compile(
    r"(word_embeddings/embeddings|position_embedding/embeddings|type_embeddings/embeddings|"
    r"embeddings/layer_norm/(?:gamma|beta)|transformer/layer_\d+/[^:]+|pooler_transform/(?:kernel|bias))"
    r"(?::\d+)?$")


def ensure_encoder_built(encoder, seq_length: int = 8):
  """Runs `encoder` once on a dummy batch so that all its variables exist."""
  if not encoder.built or not encoder.variables:
    dummy = {k: tf.zeros([1, seq_length], tf.int32)
             for k in ("input_word_ids", "input_mask", "input_type_ids")}
    encoder(dummy)
  return encoder


def encoder_variables(encoder) -> Dict[str, tf.Variable]:
  """BertEncoderV2 variables keyed by their name below the encoder's scope.

  Keys look like `word_embeddings/embeddings`, `embeddings/layer_norm/gamma`,
  `transformer/layer_0/self_attention/query/kernel`, `pooler_transform/bias`, whatever the outer
  name scopes (`query_encoder/`, `retriever/doc_encoder/`, ...) are.
  """
  ensure_encoder_built(encoder)
  out = {}
  for v in encoder.variables:
    m = _ENCODER_SUFFIX.search(v.name)
    if not m:
      raise ValueError(f"Unexpected encoder variable {v.name}: the converters know BertEncoderV2 "
                       "without an embedding projection only.")
    key = m.group(1)
    if key in out:
      raise ValueError(f"Two encoder variables map to {key}: {out[key].name}, {v.name}")
    out[key] = v
  return out


def ensure_mlm_head_built(mlm_head):
  """Calls the MLM head once (on zeros) so that its variables exist."""
  if not mlm_head.built:
    table = mlm_head.embedding_table
    if callable(table) and not isinstance(table, tf.Variable):
      table = table()  # MaskedLMHead accepts a callable returning the table.
    mlm_head(tf.zeros([1, 1, int(table.shape[-1])]))
  return mlm_head


def ensure_dense_built(layer, input_dim: int):
  """Builds a Dense/LayerNormalization layer for inputs with last dimension `input_dim`."""
  if not layer.built:
    layer.build(tf.TensorShape([None, input_dim]))
  return layer






def num_layers_of(variables: Mapping[str, tf.Variable]) -> int:
  """Number of transformer layers among `encoder_variables(...)` keys."""
  idx = {int(m.group(1)) for k in variables for m in [re.match(r"transformer/layer_(\d+)/", k)] if m}
  return len(idx)




# ----------------------------------------------------------------------------------------------
# BERT encoder rules, shared by the TF1 (`bert/encoder/layer_0/...`) and Hugging Face
# (`encoder.layer.0....`) converters. Logical names follow the original TF1 BERT layout below the
# `bert/` scope; `name_fn` turns one into the source's name(s).

_LAYER_PARTS = (
    # (logical suffix, our suffix, kind) where kind is "kernel:<in-dims>", "bias", "gamma", "beta".
    ("attention/self/query/kernel", "self_attention/query/kernel", "kernel:1"),
    ("attention/self/query/bias", "self_attention/query/bias", "bias"),
    ("attention/self/key/kernel", "self_attention/key/kernel", "kernel:1"),
    ("attention/self/key/bias", "self_attention/key/bias", "bias"),
    ("attention/self/value/kernel", "self_attention/value/kernel", "kernel:1"),
    ("attention/self/value/bias", "self_attention/value/bias", "bias"),
    ("attention/output/dense/kernel", "self_attention/attention_output/kernel", "kernel:2"),
    ("attention/output/dense/bias", "self_attention/attention_output/bias", "bias"),
    ("attention/output/LayerNorm/gamma", "self_attention_layer_norm/gamma", "gamma"),
    ("attention/output/LayerNorm/beta", "self_attention_layer_norm/beta", "beta"),
    ("intermediate/dense/kernel", "intermediate/kernel", "kernel:1"),
    ("intermediate/dense/bias", "intermediate/bias", "bias"),
    ("output/dense/kernel", "output/kernel", "kernel:1"),
    ("output/dense/bias", "output/bias", "bias"),
    ("output/LayerNorm/gamma", "output_layer_norm/gamma", "gamma"),
    ("output/LayerNorm/beta", "output_layer_norm/beta", "beta"),
)

_EMBEDDING_PARTS = (
    ("embeddings/word_embeddings", "word_embeddings/embeddings", "table"),
    ("embeddings/position_embeddings", "position_embedding/embeddings", "table"),
    ("embeddings/token_type_embeddings", "type_embeddings/embeddings", "table"),
    ("embeddings/LayerNorm/gamma", "embeddings/layer_norm/gamma", "gamma"),
    ("embeddings/LayerNorm/beta", "embeddings/layer_norm/beta", "beta"),
    ("pooler/dense/kernel", "pooler_transform/kernel", "kernel:1"),
    ("pooler/dense/bias", "pooler_transform/bias", "bias"),
)


def _prod(dims) -> int:
  out = 1
  for d in dims:
    out *= int(d)
  return out


def dense_rule(source, variable: tf.Variable, kind: str, torch_layout: bool) -> Rule:
  """Rule for one Dense/EinsumDense/LayerNorm/embedding weight.

  `kind` is "table" or "gamma"/"beta" (copied as is), "bias" (flattened in the source), or
  "kernel:<k>" — a kernel whose first k dimensions are its input: the source holds it as a 2-D
  [in, out] matrix (TF1) or [out, in] (PyTorch `weight`), reshaped to e.g. [H, heads, head_dim].
  """
  shape = tuple(int(d) for d in variable.shape)
  if kind.startswith("kernel:"):
    k = int(kind.split(":")[1])
    n_in, n_out = _prod(shape[:k]), _prod(shape[k:])
    if torch_layout:
      return Rule(source, variable, (n_out, n_in), lambda a, s=shape: a.T.reshape(s))
    return Rule(source, variable, (n_in, n_out), lambda a, s=shape: a.reshape(s))
  if kind == "bias":
    return Rule(source, variable, (_prod(shape),), lambda a, s=shape: a.reshape(s))
  return Rule(source, variable, shape)


def bert_encoder_rules(encoder, name_fn: Callable[[str], Union[str, Tuple[str, ...]]],
                       torch_layout: bool) -> List[Rule]:
  """Rules for every variable of a BertEncoderV2, named through `name_fn(logical_name)`."""
  variables = encoder_variables(encoder)
  rules = []
  for logical, ours, kind in _EMBEDDING_PARTS:
    rules.append(dense_rule(name_fn(logical), variables[ours], kind, torch_layout))
  for i in range(num_layers_of(variables)):
    for logical, ours, kind in _LAYER_PARTS:
      rules.append(dense_rule(name_fn(f"encoder/layer_{i}/{logical}"),
                              variables[f"transformer/layer_{i}/{ours}"], kind, torch_layout))
  covered = {id(r.variable) for r in rules}
  left = [v.name for v in variables.values() if id(v) not in covered]
  if left:
    raise ValueError(f"Encoder variables without a mapping rule: {left}")
  return rules


def mlm_head_rules(mlm_head, name_fn: Callable[[str], Union[str, Tuple[str, ...]]],
                   torch_layout: bool) -> List[Rule]:
  """Rules for a MaskedLMHead; logical names are TF1's below `cls/predictions/`.

  The output matrix is the (tied) word-embedding table, so it has no rule of its own.
  """
  ensure_mlm_head_built(mlm_head)
  parts = (
      ("transform/dense/kernel", mlm_head.transform.kernel, "kernel:1"),
      ("transform/dense/bias", mlm_head.transform.bias, "bias"),
      ("transform/LayerNorm/gamma", mlm_head.layer_norm.gamma, "gamma"),
      ("transform/LayerNorm/beta", mlm_head.layer_norm.beta, "beta"),
      ("output_bias", mlm_head.output_bias, "bias"),
  )
  return [dense_rule(name_fn(logical), var, kind, torch_layout) for logical, var, kind in parts]
