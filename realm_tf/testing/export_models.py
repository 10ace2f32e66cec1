"""Fixtures for the export and serving tests: a micro open-QA model over a real-text corpus.

The corpus, embedder export and index bundle come from `realm_tf.testing.openqa_models` (the real
writers); the model is the real `OpenQAModel` with micro encoders, its query tower copied from
the bundle's embedder export as fine-tuning's warm start does. `write_model_dir` saves it the way
fine-tuning does (config.json + checkpoints/), so `load_finetuned` and the export CLI read it.
"""
import dataclasses
import json
import os
import subprocess
import sys
from typing import Optional, Sequence

import numpy as np

QUESTIONS = (
    "What is the capital of France?",
    "Who wrote Hamlet?",
    "Which is the largest planet in the Solar System?",
    "Who discovered penicillin?",
    "In which city was Mozart born?",
)


@dataclasses.dataclass
class MicroSystem:
  """A built micro open-QA model and the files it came from."""
  model: object
  tokenizer: object
  bundle: object
  corpus_dir: str
  index_dir: str


def build_micro_system(work_dir: str, reader_beam_size: int = 3, seed: int = 0) -> MicroSystem:
  """Corpus (12 facts) → micro retriever bundle → OpenQAModel (reader seeded with `seed`)."""
  import tf_keras  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import finetune  # pylint: disable=g-import-not-at-top
  from realm_tf.testing import openqa_models as oqt  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.openqa_model import OpenQAConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
  corpus_dir = os.path.join(work_dir, "corpus")
  oqt.make_text_corpus(corpus_dir)
  index_dir, _ = oqt.make_bundle(work_dir, corpus_dir, seed=seed)
  tokenizer = RealmTokenizer()
  bundle, index = finetune.load_index(index_dir, corpus_dir)
  config = OpenQAConfig(retriever=oqt.micro_retriever_config(), reader=oqt.micro_reader_config(),
                        reader_beam_size=reader_beam_size, retriever_beam_size=8)
  tf_keras.utils.set_random_seed(seed + 1)
  model = finetune.build_model(config, index, tokenizer)
  from realm_tf.training import warm_start  # pylint: disable=g-import-not-at-top
  warm_start.init_openqa(model, os.path.join(bundle.path, bundle_lib.QUERY_EMBEDDER))
  return MicroSystem(model, tokenizer, bundle, corpus_dir, index_dir)


def write_model_dir(system: MicroSystem, model_dir: str) -> str:
  """Saves the model as a fine-tuning run would (config.json + checkpoints/ckpt-1)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realm_tf.stages.finetune import FinetuneConfig  # pylint: disable=g-import-not-at-top
  os.makedirs(model_dir, exist_ok=True)
  config = dict(FinetuneConfig(model=system.model.config).to_dict(),
                index_bundle=system.bundle.path, corpus_dir=os.path.abspath(system.corpus_dir))
  with open(os.path.join(model_dir, "config.json"), "w", encoding="utf-8") as f:
    json.dump(config, f, indent=2, sort_keys=True)
  tf.train.Checkpoint(model=system.model).save(os.path.join(model_dir, "checkpoints", "ckpt"))
  return model_dir


# Loads SavedModels in a fresh interpreter and saves each signature's outputs to an .npz:
# argv = out.npz, then (export_dir, signature, inputs.npz, import_scann) quadruples. Op types are
# checked against the registry first with TensorFlow alone, then with TF.Text (which
# tensorflow_model_server links in since 2.12), then ScaNN where asked.
_FRESH_SCRIPT = r"""
import sys
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry
out_path, rest = sys.argv[1], sys.argv[2:]
calls = [rest[i:i + 4] for i in range(0, len(rest), 4)]
results = {}
op_sets = []
for i, (path, _, _, _) in enumerate(calls):
  sm = saved_model_pb2.SavedModel()
  with open(path + "/saved_model.pb", "rb") as f:
    sm.ParseFromString(f.read())
  ops = {n.op for mg in sm.meta_graphs for n in mg.graph_def.node}
  ops |= {n.op for mg in sm.meta_graphs for fn in mg.graph_def.library.function
          for n in fn.node_def}
  op_sets.append(ops)
  results[f"{i}/non_core_ops"] = np.array(
      sorted(op for op in ops if op_def_registry.get(op) is None) + [""], dtype=object)
import tensorflow_text  # noqa: F401
for i, (path, signature, inputs_path, scann) in enumerate(calls):
  if scann == "1":
    import scann  # noqa: F401  (registers Scann>* ops)
  results[f"{i}/unregistered_ops"] = np.array(
      sorted(op for op in op_sets[i] if op_def_registry.get(op) is None) + [""], dtype=object)
  loaded = tf.saved_model.load(path)
  fn = loaded.signatures[signature]
  specs = fn.structured_input_signature[1]
  with np.load(inputs_path) as data:
    feeds = {k: tf.constant(data[k], dtype=specs[k].dtype) for k in data.files}
  for k, v in fn(**feeds).items():
    results[f"{i}/{k}"] = v.numpy()
def _plain_array(a):
  # Fixed-width bytes/str instead of object arrays, so the .npz needs no pickle. (Kept local:
  # importing realm_tf here would register ops this check must not see.)
  a = np.asarray(a)
  if a.dtype != object:
    return a
  flat = a.ravel().tolist()
  return np.array(flat, dtype="S" if flat and isinstance(flat[0], bytes) else "U").reshape(a.shape)
np.savez(out_path, **{k: _plain_array(v) for k, v in results.items()})
"""


def _plain_array(value) -> np.ndarray:
  """Object (string) arrays as fixed-width bytes/str, so .npz files need no pickle."""
  a = np.asarray(value)
  if a.dtype != object:
    return a
  flat = a.ravel().tolist()
  kind = "S" if flat and isinstance(flat[0], bytes) else "U"
  return np.array(flat, dtype=kind).reshape(a.shape)


def run_in_fresh_process(work_dir: str, calls: Sequence, timeout: float = 300.0):
  """Runs signatures of exported SavedModels in a new Python process (nothing shared with this
  one: no Keras objects, no registered ScaNN ops unless asked).

  Args:
    calls: (export_dir, signature_name, inputs dict of numpy arrays, import_scann bool) tuples.

  Returns:
    One dict per call: output name → numpy array, plus `non_core_ops` (op types that plain
    TensorFlow does not register) and `unregistered_ops` (op types still unregistered with
    TF.Text, and ScaNN if asked, imported), both "" terminated.
  """
  os.makedirs(work_dir, exist_ok=True)
  argv = []
  for i, (path, signature, inputs, scann) in enumerate(calls):
    inputs_path = os.path.join(work_dir, f"inputs_{i}.npz")
    np.savez(inputs_path, **{k: _plain_array(v) for k, v in inputs.items()})
    argv += [path, signature, inputs_path, "1" if scann else "0"]
  out_path = os.path.join(work_dir, "outputs.npz")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  proc = subprocess.run([sys.executable, "-c", _FRESH_SCRIPT, out_path, *argv], env=env,
                        capture_output=True, text=True, timeout=timeout, check=False)
  if proc.returncode:
    raise RuntimeError(f"fresh process failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
  results = [dict() for _ in calls]
  with np.load(out_path) as data:
    for key in data.files:
      i, name = key.split("/", 1)
      results[int(i)][name] = data[key]
  return results


def strings(values: Sequence[str], shape: Optional[Sequence[int]] = None) -> np.ndarray:
  """str values → object array of UTF-8 bytes (optionally reshaped)."""
  array = np.array([v.encode("utf-8") for v in values], dtype=object)
  return array.reshape(shape) if shape is not None else array


# Three blocks (ids 30, 10, 20: not in id order) for the BlockTable and answer-selection tests;
# "Zürich" has a two-byte character, so byte and character offsets differ.
BLOCK_TEXTS = ("Zürich lies on the Limmat river.", "Paris is the capital of France.",
               "The Danube flows to the Black Sea.")
BLOCK_TITLES = ("Zürich", "Paris", "Danube")
BLOCK_IDS = (30, 10, 20)


def small_block_table():
  """A BlockTable of BLOCK_TITLES / BLOCK_TEXTS (rows 0..2 = block ids 30, 10, 20)."""
  from realm_tf.export.block_table import BlockTable  # pylint: disable=g-import-not-at-top
  return BlockTable.from_texts(np.array(BLOCK_IDS), list(BLOCK_TITLES), list(BLOCK_TEXTS))


def pieces(tokenizer, text: str):
  """(wordpiece ids, byte starts, byte limits) of one text, as lists."""
  ids, starts, limits = tokenizer.tokenize_with_offsets([text])
  return ids.to_list()[0], starts.to_list()[0], limits.to_list()[0]
