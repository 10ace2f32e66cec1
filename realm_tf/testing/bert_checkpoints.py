"""Small synthetic BERT checkpoints in the formats the converters read, and an independent
NumPy BERT to check them against: Hugging Face safetensors directories (`make_hf_arrays`,
`write_hf_dir`) and TF1 Saver checkpoints under the original variable names (`bert_arrays`,
`write_tf1_checkpoint`, REALM's and ORQA's parts). Shared by the converter, warm-start, import
and remote-storage tests."""
import json
import math
import os

import numpy as np
import tensorflow as tf
from scipy import special

from realm_tf.modeling.encoder_config import EncoderConfig

# A small BERT for synthetic checkpoints (runs in milliseconds).
SMALL = EncoderConfig(vocab_size=97, hidden_size=32, num_layers=2, num_attention_heads=4,
                      intermediate_size=48, max_position_embeddings=40, type_vocab_size=2)


def layer_norm(x, gamma, beta, eps=1e-12):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * gamma + beta


def gelu(x):
  return 0.5 * x * (1.0 + special.erf(x / math.sqrt(2.0)))


def numpy_bert(params, ids, mask, type_ids, num_heads):
  """BERT forward pass → (sequence_output [B,T,H], pooled_output [B,H])."""
  ids, mask, type_ids = (np.asarray(a) for a in (ids, mask, type_ids))
  b, t = ids.shape
  x = params["word"][ids] + params["position"][:t][None] + params["type"][type_ids]
  x = layer_norm(x, *params["emb_ln"])
  hidden = x.shape[-1]
  d = hidden // num_heads
  adder = (1.0 - mask[:, None, None, :].astype(np.float64)) * -1e9
  for layer in params["layers"]:
    def split(w, bias):
      return (x @ w + bias).reshape(b, t, num_heads, d).transpose(0, 2, 1, 3)
    q, k, v = split(*layer["q"]), split(*layer["k"]), split(*layer["v"])
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + adder
    scores = scores - scores.max(-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(-1, keepdims=True)
    ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, t, hidden)
    x = layer_norm(x + ctx @ layer["o"][0] + layer["o"][1], *layer["ln1"])
    h = gelu(x @ layer["i"][0] + layer["i"][1])
    x = layer_norm(x + h @ layer["out"][0] + layer["out"][1], *layer["ln2"])
  pooled = np.tanh(x[:, 0] @ params["pooler"][0] + params["pooler"][1])
  return x, pooled


def numpy_mlm_logits(params, head, sequence_output):
  """BERT MLM head: gelu(dense) → LayerNorm → tied output matrix + bias."""
  h = gelu(sequence_output @ head["dense"][0] + head["dense"][1])
  h = layer_norm(h, *head["ln"])
  return h @ params["word"].T + head["bias"]


def params_from_hf(arrays, prefix, num_layers):
  """Reference params from Hugging Face names (PyTorch weights are [out, in])."""
  a = {k: np.asarray(v, np.float64) for k, v in arrays.items() if v.dtype.kind == "f"}
  p = prefix

  def lin(name):
    return a[name + ".weight"].T, a[name + ".bias"]

  def ln(name):
    return a[name + ".weight"], a[name + ".bias"]

  layers = []
  for i in range(num_layers):
    base = f"{p}encoder.layer.{i}."
    layers.append(dict(
        q=lin(base + "attention.self.query"), k=lin(base + "attention.self.key"),
        v=lin(base + "attention.self.value"), o=lin(base + "attention.output.dense"),
        ln1=ln(base + "attention.output.LayerNorm"), i=lin(base + "intermediate.dense"),
        out=lin(base + "output.dense"), ln2=ln(base + "output.LayerNorm")))
  return dict(word=a[p + "embeddings.word_embeddings.weight"],
              position=a[p + "embeddings.position_embeddings.weight"],
              type=a[p + "embeddings.token_type_embeddings.weight"],
              emb_ln=ln(p + "embeddings.LayerNorm"), layers=layers, pooler=lin(p + "pooler.dense"))


def make_hf_arrays(cfg, seed=0, prefix="", with_head=False):
  """Random BERT weights in Hugging Face naming, big enough to make every term matter."""
  rng = np.random.default_rng(seed)
  h, inner = cfg.hidden_size, cfg.intermediate_size

  def w(*shape, scale=0.2):
    return (rng.standard_normal(shape) * scale).astype(np.float32)

  out = {
      prefix + "embeddings.word_embeddings.weight": w(cfg.vocab_size, h, scale=0.5),
      prefix + "embeddings.position_embeddings.weight": w(cfg.max_position_embeddings, h),
      prefix + "embeddings.token_type_embeddings.weight": w(cfg.type_vocab_size, h),
      prefix + "embeddings.LayerNorm.weight": 1.0 + w(h, scale=0.1),
      prefix + "embeddings.LayerNorm.bias": w(h, scale=0.1),
      prefix + "embeddings.position_ids": np.arange(cfg.max_position_embeddings)[None],
      prefix + "pooler.dense.weight": w(h, h), prefix + "pooler.dense.bias": w(h),
  }
  for i in range(cfg.num_layers):
    base = f"{prefix}encoder.layer.{i}."
    for name, (o, n_in) in {"attention.self.query": (h, h), "attention.self.key": (h, h),
                            "attention.self.value": (h, h), "attention.output.dense": (h, h),
                            "intermediate.dense": (inner, h), "output.dense": (h, inner)}.items():
      out[base + name + ".weight"] = w(o, n_in)
      out[base + name + ".bias"] = w(o, scale=0.1)
    for name in ("attention.output.LayerNorm", "output.LayerNorm"):
      out[base + name + ".weight"] = 1.0 + w(h, scale=0.1)
      out[base + name + ".bias"] = w(h, scale=0.1)
  if with_head:
    cls = (prefix[: -len("bert.")] if prefix.endswith("bert.") else prefix) + "cls.predictions."
    out[cls + "transform.dense.weight"] = w(h, h)
    out[cls + "transform.dense.bias"] = w(h, scale=0.1)
    out[cls + "transform.LayerNorm.weight"] = 1.0 + w(h, scale=0.1)
    out[cls + "transform.LayerNorm.bias"] = w(h, scale=0.1)
    out[cls + "bias"] = w(cfg.vocab_size, scale=0.1)
    out[cls + "decoder.weight"] = out[prefix + "embeddings.word_embeddings.weight"]
    out[cls + "decoder.bias"] = out[cls + "bias"]
  return out


def small_inputs(cfg, seed=1, batch=3, length=12):
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, cfg.vocab_size, size=(batch, length)).astype(np.int32)
  mask = np.ones((batch, length), np.int32)
  mask[1, 7:] = 0
  mask[2, 4:] = 0
  types = np.zeros((batch, length), np.int32)
  types[:, 6:] = 1
  return ids, mask, types


def write_hf_dir(path, cfg, arrays):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  os.makedirs(path)
  save_file(arrays, os.path.join(path, "model.safetensors"))
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump({"model_type": "bert", "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
               "num_hidden_layers": cfg.num_layers,
               "num_attention_heads": cfg.num_attention_heads,
               "intermediate_size": cfg.intermediate_size, "hidden_act": "gelu",
               "max_position_embeddings": cfg.max_position_embeddings,
               "type_vocab_size": cfg.type_vocab_size}, f)
  with open(os.path.join(path, "vocab.txt"), "w") as f:
    f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                      + [f"w{i}" for i in range(cfg.vocab_size - 5)]) + "\n")


PROJ = 128  # REALM's retrieval projection size


SPAN = 6    # ORQA's span_hidden_size (256 in the paper; small here)


def rand(rng, *shape, scale=0.2):
  return (rng.standard_normal(shape) * scale).astype(np.float32)


def bert_arrays(cfg, seed, prefix="", mlm=False, nsp=False):
  """Random weights under the original BERT names (`<prefix>bert/...`, `<prefix>cls/...`)."""
  rng = np.random.default_rng(seed)
  h, inner = cfg.hidden_size, cfg.intermediate_size
  p = prefix + "bert/"
  out = {
      p + "embeddings/word_embeddings": rand(rng, cfg.vocab_size, h, scale=0.5),
      p + "embeddings/position_embeddings": rand(rng, cfg.max_position_embeddings, h),
      p + "embeddings/token_type_embeddings": rand(rng, cfg.type_vocab_size, h),
      p + "embeddings/LayerNorm/gamma": 1 + rand(rng, h, scale=0.1),
      p + "embeddings/LayerNorm/beta": rand(rng, h, scale=0.1),
      p + "pooler/dense/kernel": rand(rng, h, h), p + "pooler/dense/bias": rand(rng, h),
  }
  for i in range(cfg.num_layers):
    base = f"{p}encoder/layer_{i}/"
    for name, shape in {"attention/self/query": (h, h), "attention/self/key": (h, h),
                        "attention/self/value": (h, h), "attention/output/dense": (h, h),
                        "intermediate/dense": (h, inner), "output/dense": (inner, h)}.items():
      out[base + name + "/kernel"] = rand(rng, *shape)
      out[base + name + "/bias"] = rand(rng, shape[1], scale=0.1)
    for name in ("attention/output/LayerNorm", "output/LayerNorm"):
      out[base + name + "/gamma"] = 1 + rand(rng, h, scale=0.1)
      out[base + name + "/beta"] = rand(rng, h, scale=0.1)
  if mlm:
    c = prefix + "cls/predictions/"
    out[c + "transform/dense/kernel"] = rand(rng, h, h)
    out[c + "transform/dense/bias"] = rand(rng, h, scale=0.1)
    out[c + "transform/LayerNorm/gamma"] = 1 + rand(rng, h, scale=0.1)
    out[c + "transform/LayerNorm/beta"] = rand(rng, h, scale=0.1)
    out[c + "output_bias"] = rand(rng, cfg.vocab_size, scale=0.1)
  if nsp:
    out[prefix + "cls/seq_relationship/output_weights"] = rand(rng, 2, h)
    out[prefix + "cls/seq_relationship/output_bias"] = rand(rng, 2)
  return out


def projection_arrays(seed, prefix, hidden, layer_norm_name="LayerNorm"):
  rng = np.random.default_rng(seed)
  return {prefix + "dense/kernel": rand(rng, hidden, PROJ), prefix + "dense/bias": rand(rng, PROJ),
          f"{prefix}{layer_norm_name}/gamma": 1 + rand(rng, PROJ, scale=0.1),
          f"{prefix}{layer_norm_name}/beta": rand(rng, PROJ, scale=0.1)}


def realm_embedder_arrays(seed=10):
  """Layout of REALM's cc_news_pretrained/embedder hub module."""
  out = bert_arrays(SMALL, seed, prefix="module/module/module/", mlm=True)
  out.update(projection_arrays(seed + 1, "module/module/", SMALL.hidden_size))
  return out


def orqa_arrays(seed=20):
  """Layout of orqa_{nq,wq}_model_from_realm: fine-tuned query tower + reader + global_step."""
  out = bert_arrays(SMALL, seed, prefix="module/module/module/module/", mlm=True)
  out.update(projection_arrays(seed + 1, "module/module/module/", SMALL.hidden_size))
  out.update(bert_arrays(SMALL, seed + 2, prefix="reader/module/", mlm=True))
  rng = np.random.default_rng(seed + 3)
  h = SMALL.hidden_size
  out.update({"reader/dense/kernel": rand(rng, h, 2 * SPAN), "reader/dense/bias": rand(rng, 2 * SPAN),
              "reader/layer_normalization/gamma": 1 + rand(rng, SPAN, scale=0.1),
              "reader/layer_normalization/beta": rand(rng, SPAN, scale=0.1),
              "reader/dense_1/kernel": rand(rng, SPAN, 1), "reader/dense_1/bias": rand(rng, 1),
              "global_step": np.array(12345, np.int64)})
  return out


def write_tf1_checkpoint(arrays, path):
  """Saves `arrays` as TF1 variables with exactly these names (tf.compat.v1 Saver, graph mode)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.Graph().as_default():
    variables = [tf.compat.v1.get_variable(name, initializer=tf.constant(value))
                 for name, value in arrays.items()]
    saver = tf.compat.v1.train.Saver(var_list=variables)
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      return saver.save(sess, path, write_meta_graph=False)


def params_from_tf1(arrays, prefix):
  """NumPy reference params from TF1 names (kernels already [in, out])."""
  a = {k: np.asarray(v, np.float64) for k, v in arrays.items()}
  p = prefix + "bert/"

  def lin(name):
    return a[name + "/kernel"], a[name + "/bias"]

  def ln(name):
    return a[name + "/gamma"], a[name + "/beta"]

  layers = []
  i = 0
  while f"{p}encoder/layer_{i}/output/dense/kernel" in a:
    base = f"{p}encoder/layer_{i}/"
    layers.append(dict(q=lin(base + "attention/self/query"), k=lin(base + "attention/self/key"),
                       v=lin(base + "attention/self/value"), o=lin(base + "attention/output/dense"),
                       ln1=ln(base + "attention/output/LayerNorm"),
                       i=lin(base + "intermediate/dense"), out=lin(base + "output/dense"),
                       ln2=ln(base + "output/LayerNorm")))
    i += 1
  return dict(word=a[p + "embeddings/word_embeddings"], position=a[p + "embeddings/position_embeddings"],
              type=a[p + "embeddings/token_type_embeddings"], emb_ln=ln(p + "embeddings/LayerNorm"),
              layers=layers, pooler=lin(p + "pooler/dense"))
