"""A tiny release of Google's ORQA/REALM evidence index, written in the original file formats.

Google publishes the evidence index as three files that share one row order:
`blocks.tfr` and `titles.tfr` (uncompressed TFRecord files whose records are raw UTF-8 strings,
not tf.Examples: the block's body text and its page title) and `encoded.ckpt` (a TF1 checkpoint
whose one variable `block_emb` is float32 [num_blocks, 128]). These writers produce the same
formats, so the import (`realm_tf.release`) and the parity tests read what they would read from
`gs://orqa-data` / `gs://realm-data`. No test logic here.
"""
import os
from typing import Iterable, Tuple

import numpy as np

BLOCKS_FILE = "blocks.tfr"
TITLES_FILE = "titles.tfr"
EMBEDDINGS_VARIABLE = "block_emb"


def _encode(text) -> bytes:
  return text if isinstance(text, bytes) else text.encode("utf-8")


def write_records(path: str, records: Iterable) -> int:
  """Writes raw strings (str or bytes) as an uncompressed TFRecord file; returns the count."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  n = 0
  with tf.io.TFRecordWriter(path) as writer:
    for record in records:
      writer.write(_encode(record))
      n += 1
  return n


def write_block_files(directory: str, titles: Iterable, bodies: Iterable) -> Tuple[str, str]:
  """Writes `<directory>/blocks.tfr` (bodies) and `<directory>/titles.tfr` (titles), row i the
  same block in both, as the released files are; returns (blocks path, titles path).

  `titles` and `bodies` may be generators (the benchmark streams a million rows through them).
  """
  os.makedirs(directory, exist_ok=True)
  blocks_path = os.path.join(directory, BLOCKS_FILE)
  titles_path = os.path.join(directory, TITLES_FILE)
  write_records(blocks_path, bodies)
  write_records(titles_path, titles)
  return blocks_path, titles_path


def write_encoded_checkpoint(path: str, block_emb: np.ndarray,
                             variable_name: str = EMBEDDINGS_VARIABLE) -> str:
  """Writes `block_emb` (float32 [N, D]) as a TF1 checkpoint at prefix `path` with one variable,
  named `block_emb` like the released `encoded.ckpt`, saved by a graph-mode `tf.compat.v1`
  Saver; returns the prefix.

  The array is fed through a placeholder at initialisation, so it is never a graph constant
  (graphs are capped at 2 GB). `variable_name` exists only to write a malformed release.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  v1 = tf.compat.v1
  block_emb = np.asarray(block_emb, np.float32)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with tf.Graph().as_default():
    value = v1.placeholder(tf.float32, block_emb.shape)
    variable = v1.get_variable(variable_name, initializer=value)
    saver = v1.train.Saver([variable])
    with v1.Session() as session:
      session.run(variable.initializer, feed_dict={value: block_emb})
      saver.save(session, path, write_meta_graph=False)
  return path


def write_tiny_embedder(path: str, seed: int = 1) -> str:
  """Writes a tiny REALM embedder hub module at `path` (`variables/variables`): a 1-layer BERT of
  hidden size 16 over the project's 30,522-word vocabulary under `module/module/module/bert/`, and
  the 16 -> 128 projection + LayerNorm under `module/module/{dense,LayerNorm}`, the names of
  `cc_news_pretrained/embedder`. Its size does not grow with a release's rows."""
  from realm_tf.testing import bert_checkpoints  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.encoder_config import EncoderConfig  # pylint: disable=g-import-not-at-top
  tiny = EncoderConfig(vocab_size=30522, hidden_size=16, num_layers=1, num_attention_heads=2,
                       intermediate_size=32, max_position_embeddings=512, type_vocab_size=2)
  arrays = bert_checkpoints.bert_arrays(tiny, seed, prefix="module/module/module/")
  arrays.update(bert_checkpoints.projection_arrays(seed + 1, "module/module/", tiny.hidden_size))
  bert_checkpoints.write_tf1_checkpoint(arrays, os.path.join(path, "variables", "variables"))
  return path
