"""The uncased BERT wordpiece tokenizer with byte offsets into the original UTF-8 text.

Salient-span masking aligns NER byte spans to wordpieces, so every wordpiece carries the
[start, limit) byte range of the original (not normalised) text it came from. Built on
`tensorflow_text.FastBertTokenizer`, a stock TF.Text op, so it runs inside tf.data and
inside exported SavedModels (TF Serving ships TF.Text ops).
"""
import functools
import hashlib
import os
from typing import Optional

import tensorflow as tf
import tensorflow_text as tf_text

_VOCAB_NAME = "uncased_vocab.txt"


def default_vocab_path() -> str:
  """Path of the shipped uncased 30,522-entry BERT vocabulary (see vocab/ATTRIBUTION.md)."""
  return os.path.join(os.path.dirname(os.path.abspath(__file__)), "vocab", _VOCAB_NAME)


@functools.lru_cache(maxsize=16)
def _read_vocab(path: str) -> tuple:
  with tf.io.gfile.GFile(path, "r") as f:
    tokens = tuple(line.rstrip("\n") for line in f)
  if not tokens:
    raise ValueError(f"Vocabulary file {path!r} is empty.")
  return tokens


def vocab_fingerprint(path: Optional[str] = None) -> str:
  """sha256 of the vocabulary's tokens: corpora, indexes and exports record it to detect mismatches."""
  tokens = _read_vocab(path or default_vocab_path())
  return hashlib.sha256("\n".join(tokens).encode("utf-8")).hexdigest()


class RealmTokenizer(tf.Module):
  """Lower-cases, strips accents and splits text into wordpiece ids with byte offsets.

  Attributes `cls_id`, `sep_id`, `mask_id`, `pad_id` and `unk_id` name the special tokens.
  """

  def __init__(self, vocab_path: Optional[str] = None, lower_case: bool = True,
               name: str = "realm_tokenizer"):
    super().__init__(name=name)
    self.vocab_path = vocab_path or default_vocab_path()
    if not tf.io.gfile.exists(self.vocab_path):
      raise FileNotFoundError(f"Vocabulary file not found: {self.vocab_path}")
    # Not tracked: wrapping 30,522 strings for tf.Module's dependency tracking took most of the
    # constructor's time, and the list holds no TensorFlow state to save.
    self.vocab = self._no_dependency(list(_read_vocab(self.vocab_path)))
    self.vocab_size = len(self.vocab)
    index = {tok: i for i, tok in enumerate(self.vocab)}
    for special in ("[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]"):
      if special not in index:
        raise ValueError(f"Vocabulary {self.vocab_path} lacks the special token {special}.")
    self.cls_id = index["[CLS]"]
    self.sep_id = index["[SEP]"]
    self.mask_id = index["[MASK]"]
    self.pad_id = index["[PAD]"]
    self.unk_id = index["[UNK]"]
    self.fingerprint = vocab_fingerprint(self.vocab_path)
    self._tokenizer = tf_text.FastBertTokenizer(
        vocab=self.vocab, token_out_type=tf.int32,
        lower_case_nfd_strip_accents=lower_case, unknown_token="[UNK]",
        support_detokenization=True)  # `detokenize` fails without it.
    self._id_to_token = tf.constant(self.vocab)

  def tokenize(self, text) -> tf.RaggedTensor:
    """Strings [B] → wordpiece ids, RaggedTensor int32 [B, (n)]."""
    return self._tokenizer.tokenize(tf.convert_to_tensor(text, tf.string))

  def tokenize_with_offsets(self, text):
    """Strings [B] → (ids, starts, limits): ragged [B, (n)]; offsets are int64 byte positions."""
    ids, starts, limits = self._tokenizer.tokenize_with_offsets(
        tf.convert_to_tensor(text, tf.string))
    return ids, tf.cast(starts, tf.int64), tf.cast(limits, tf.int64)

  def tokens(self, ids) -> tf.Tensor:
    """Ids (any shape, dense or ragged) → wordpiece strings, for debugging and detokenization."""
    if isinstance(ids, tf.RaggedTensor):
      return tf.ragged.map_flat_values(tf.gather, self._id_to_token, ids)
    return tf.gather(self._id_to_token, ids)

  def detokenize(self, ids) -> tf.Tensor:
    """Ragged ids [B, (n)] → strings [B], wordpieces re-joined (## continuations merged)."""
    return self._tokenizer.detokenize(ids)
