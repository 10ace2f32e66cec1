"""A tiny release of Google's REALM/ORQA models, written under the released names and scopes.

Writes, with `tf.compat.v1` graph-mode Savers (the released files' format), BERT-tiny-shaped
(hidden 128, 2 layers, 2 heads, intermediate 512, the uncased 30,522-piece vocabulary):

* `cc_news_pretrained/embedder/`: a TF-Hub-module-like directory whose `variables/variables`
  holds the embedder (`module/module/module/bert/...`, `module/module/{dense,LayerNorm}`), with
  `encoded/encoded.ckpt` holding `block_emb`: the embedder's own embeddings (NumPy reference,
  `orqa_reference.embed_blocks`) of `[CLS] title [SEP] body [SEP]`, so retrieval is meaningful;
* `enwiki-20181220/blocks.tfr` and `titles.tfr` (H1's `orqa_release.write_block_files`);
* `orqa_nq_model_from_realm/export/best_default/checkpoint/model.ckpt-<step>`: the question
  encoder `module/module/module/module/bert/...` (the embedder's weights, moved a little, as
  fine-tuning moves them) with `module/module/module/{dense,LayerNorm}`, the reader
  `reader/module/bert/...` + its unused `reader/module/cls/predictions/...`, the span head
  `reader/dense` [128, 512], `reader/layer_normalization` [256], `reader/dense_1` [256, 1],
  `adam_m` / `adam_v` slots for every weight and `global_step`.

The retriever logits are made to spread over several units (so leaving them out changes which
block is read) while span scores vary less within a block (so reading the title changes the
span). No test logic here.
"""
import dataclasses
import os
import shutil
from typing import Dict, List, Sequence

import numpy as np

from realm_tf.testing import orqa_reference
from realm_tf.testing.orqa_release import write_block_files, write_encoded_checkpoint

HIDDEN, LAYERS, HEADS, INNER, MAX_POSITIONS, SPAN = 128, 2, 2, 512, 512, 256
VOCAB_SIZE = 30522
GLOBAL_STEP = 4321
FINETUNED = "orqa_nq_model_from_realm/export/best_default/checkpoint/model.ckpt-%d" % GLOBAL_STEP
EMBEDDER = "cc_news_pretrained/embedder"
BLOCKS = "enwiki-20181220"

# (title, body): ASCII with hyphens, commas, brackets and words of several wordpieces, so that
# ORQA's answer strings (original tokens joined by spaces, whole words) differ from the text's.
DOCUMENTS = [
    ("Mount Kilimanjaro", "Kilimanjaro is a snow-capped, dormant volcano in north-east Tanzania"),
    ("Amazon River", "The Amazon flows west-to-east through Peru, Colombia and Brazil"),
    ("Marie Curie", "Marie Sklodowska-Curie won two Nobel prizes (1903, 1911) for radioactivity"),
    ("Photosynthesis", "Plants turn sunlight, water and carbon-dioxide into glucose and oxygen"),
    ("Great Wall of China",
     "The wall was built over centuries to protect China's northern frontiers"),
    ("Ludwig van Beethoven",
     "Beethoven composed nine symphonies, although he became deaf in mid-life"),
    ("Mercury planet", "Mercury is the smallest planet and the closest one to the Sun"),
    ("Kangaroo", "Kangaroos are marsupials that carry their young in a pouch in Australia"),
    ("Leonardo da Vinci", "Leonardo painted the Mona Lisa and sketched flying machines"),
    ("Sahara", "The Sahara is the largest hot desert and covers much of north-west Africa"),
    ("Penicillin", "Alexander Fleming discovered penicillin in London in 1928"),
    ("Austria-Hungary", "Austria-Hungary was a dual monarchy in central Europe from 1867 to 1918"),
    ("Honeybee", "Honeybees communicate the location of flowers with a so-called waggle dance"),
    ("Eiffel Tower", "Gustave Eiffel designed the wrought-iron tower for the 1889 World's Fair"),
    ("Chess", "Chess is played on a board of sixty-four squares by two players"),
    ("Volcano", "Magma rises through the crust and erupts as lava and volcanic ash"),
    ("Olympic Games", "The modern Olympics began in Athens in 1896 with thirteen nations"),
    ("Saturn", "Saturn has spectacular rings made of ice and rocky debris"),
    ("Tea", "Tea originated in south-west China and spread along ancient trade routes"),
    ("Telescope", "Galileo improved the telescope and observed the moons of Jupiter"),
]
# The seed of the weights: every reference choice is far from a tie, the top-5 retrieval logits
# are 0.1 apart, both featurisation defects change most answers, and the answers include a
# punctuated span and one starting inside a word (checked by tests/test_released_models_e2e.py).
SEED = 78
QUESTIONS = [
    "what is the highest mountain in africa",
    "who discovered penicillin",
    "which planet has rings of ice",
    "where did the modern olympics begin",
    "how many symphonies did beethoven compose",
    "what does a kangaroo carry in its pouch",
]


@dataclasses.dataclass
class TinyRelease:
  """Paths of a written tiny release and the arrays behind it (for the NumPy reference)."""
  root: str
  blocks_dir: str        # blocks.tfr, titles.tfr
  embedder_dir: str      # variables/, encoded/encoded.ckpt, assets/vocab.txt
  finetuned_checkpoint: str
  titles: List[str]
  bodies: List[str]
  embedder_weights: Dict[str, np.ndarray]
  finetuned_weights: Dict[str, np.ndarray]
  block_emb: np.ndarray
  num_heads: int = HEADS


def _rand(rng, *shape, scale=0.05):
  return (rng.standard_normal(shape) * scale).astype(np.float32)


def bert_weights(rng, prefix: str, mlm: bool = False) -> Dict[str, np.ndarray]:
  """Random BERT-tiny weights under Google's TF1 names `<prefix>bert/...`."""
  p = prefix + "bert/"
  h = HIDDEN
  out = {p + "embeddings/word_embeddings": _rand(rng, VOCAB_SIZE, h, scale=0.5),
         p + "embeddings/position_embeddings": _rand(rng, MAX_POSITIONS, h, scale=0.2),
         p + "embeddings/token_type_embeddings": _rand(rng, 2, h, scale=0.5),
         p + "embeddings/LayerNorm/gamma": 1 + _rand(rng, h), p + "embeddings/LayerNorm/beta":
         _rand(rng, h), p + "pooler/dense/kernel": _rand(rng, h, h, scale=0.15),
         p + "pooler/dense/bias": _rand(rng, h)}
  for i in range(LAYERS):
    base = f"{p}encoder/layer_{i}/"
    for name, shape in {"attention/self/query": (h, h), "attention/self/key": (h, h),
                        "attention/self/value": (h, h), "attention/output/dense": (h, h),
                        "intermediate/dense": (h, INNER), "output/dense": (INNER, h)}.items():
      out[base + name + "/kernel"] = _rand(rng, *shape, scale=0.15)
      out[base + name + "/bias"] = _rand(rng, shape[1])
    for name in ("attention/output/LayerNorm", "output/LayerNorm"):
      out[base + name + "/gamma"] = 1 + _rand(rng, h)
      out[base + name + "/beta"] = _rand(rng, h)
  if mlm:
    c = prefix + "cls/predictions/"
    out.update({c + "transform/dense/kernel": _rand(rng, h, h), c + "transform/dense/bias":
                _rand(rng, h), c + "transform/LayerNorm/gamma": 1 + _rand(rng, h),
                c + "transform/LayerNorm/beta": _rand(rng, h),
                c + "output_bias": _rand(rng, VOCAB_SIZE)})
  return out


def projection_weights(rng, prefix: str) -> Dict[str, np.ndarray]:
  """The retrieval projection `<prefix>dense` [H, 128] + `<prefix>LayerNorm` (REALM's names)."""
  return {prefix + "dense/kernel": _rand(rng, HIDDEN, 128, scale=0.3),
          prefix + "dense/bias": _rand(rng, 128),
          prefix + "LayerNorm/gamma": 1 + _rand(rng, 128), prefix + "LayerNorm/beta":
          _rand(rng, 128)}


def embedder_weights(seed: int) -> Dict[str, np.ndarray]:
  """REALM's `cc_news_pretrained/embedder` layout (BERT with its MLM head, projection)."""
  rng = np.random.default_rng(seed)
  out = bert_weights(rng, "module/module/module/", mlm=True)
  out.update(projection_weights(rng, "module/module/"))
  return out


def finetuned_weights(embedder: Dict[str, np.ndarray], seed: int) -> Dict[str, np.ndarray]:
  """An `orqa_nq_model_from_realm` checkpoint's weights: the question encoder (the embedder's,
  moved by noise), the reader and its span head (random), without optimizer slots."""
  rng = np.random.default_rng(seed)
  out = {}
  for name, value in embedder.items():
    if "/cls/" in name:
      continue  # the question encoder module holds no MLM head
    moved = (value + _rand(rng, *value.shape, scale=0.02)).astype(np.float32)
    out["module/" + name] = moved
  out.update(bert_weights(rng, "reader/module/", mlm=True))
  out.update({"reader/dense/kernel": _rand(rng, HIDDEN, 2 * SPAN, scale=0.2),
              "reader/dense/bias": _rand(rng, 2 * SPAN),
              "reader/layer_normalization/gamma": 1 + _rand(rng, SPAN),
              "reader/layer_normalization/beta": _rand(rng, SPAN),
              "reader/dense_1/kernel": _rand(rng, SPAN, 1, scale=0.06),
              "reader/dense_1/bias": _rand(rng, 1)})
  return out


def write_tf1_checkpoint(arrays: Dict[str, np.ndarray], prefix: str,
                         optimizer_slots: bool = False, global_step=None) -> str:
  """Writes `arrays` as a TF1 checkpoint at `prefix` with a graph-mode `tf.compat.v1` Saver (fed
  through placeholders, never graph constants); with `optimizer_slots`, BERT's AdamWeightDecay
  slots `<name>/adam_m` and `<name>/adam_v` beside every array; `global_step` an int64 scalar."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  v1 = tf.compat.v1
  values = dict(arrays)
  if optimizer_slots:
    for name, value in arrays.items():
      values[name + "/adam_m"] = np.zeros_like(value)
      values[name + "/adam_v"] = np.full_like(value, 1e-6)
  os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
  with tf.Graph().as_default():
    feeds, variables = {}, []
    for name, value in sorted(values.items()):
      ph = v1.placeholder(tf.float32, value.shape)
      variables.append(v1.get_variable(name, initializer=ph))
      feeds[ph] = value
    if global_step is not None:
      variables.append(v1.get_variable("global_step", initializer=np.int64(global_step)))
    with v1.Session() as session:
      session.run([v.initializer for v in variables], feed_dict=feeds)
      v1.train.Saver(variables).save(session, prefix, write_meta_graph=False)
  return prefix


def write_release(root: str, seed: int = SEED, documents: Sequence = DOCUMENTS) -> TinyRelease:
  """Writes the tiny release under `root` (see module docstring) and returns it."""
  from realm_tf.text.tokenizer import default_vocab_path  # pylint: disable=g-import-not-at-top
  titles = [d[0] for d in documents]
  bodies = [d[1] for d in documents]
  blocks_dir = os.path.join(root, BLOCKS)
  write_block_files(blocks_dir, titles, bodies)
  embedder_dir = os.path.join(root, EMBEDDER)
  embedder = embedder_weights(seed)
  write_tf1_checkpoint(embedder, os.path.join(embedder_dir, "variables", "variables"))
  os.makedirs(os.path.join(embedder_dir, "assets"), exist_ok=True)
  shutil.copy(default_vocab_path(), os.path.join(embedder_dir, "assets", "vocab.txt"))
  tokenizer = orqa_reference.WordpieceTokenizer(default_vocab_path())
  block_emb = orqa_reference.embed_blocks(embedder, tokenizer, titles, bodies, HEADS)
  write_encoded_checkpoint(os.path.join(embedder_dir, "encoded", "encoded.ckpt"), block_emb)
  finetuned = finetuned_weights(embedder, seed + 1)
  checkpoint = write_tf1_checkpoint(finetuned, os.path.join(root, FINETUNED),
                                    optimizer_slots=True, global_step=GLOBAL_STEP)
  return TinyRelease(root=root, blocks_dir=blocks_dir, embedder_dir=embedder_dir,
                     finetuned_checkpoint=checkpoint, titles=titles, bodies=bodies,
                     embedder_weights=embedder, finetuned_weights=finetuned, block_emb=block_emb)
