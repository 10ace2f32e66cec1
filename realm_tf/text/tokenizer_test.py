"""Tests for RealmTokenizer: wordpiece ids and byte offsets into the original UTF-8 text."""
import os

import pytest
import tensorflow as tf

from realm_tf.text import RealmTokenizer, default_vocab_path, vocab_fingerprint


def _one(tok, text):
  ids, starts, limits = tok.tokenize_with_offsets([text])
  return ids[0].numpy().tolist(), starts[0].numpy().tolist(), limits[0].numpy().tolist()


def test_special_ids_and_vocab(tok):
  assert tok.vocab_size == 30522
  assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 100, 101, 102, 103)
  assert tok.fingerprint == vocab_fingerprint(default_vocab_path())
  assert len(tok.fingerprint) == 64


def test_ascii_ids_and_offsets(tok):
  ids, starts, limits = _one(tok, "Hello, world! unaffable")
  # Standard uncased BERT ids: hello , world ! una ##ffa ##ble
  assert ids == [7592, 1010, 2088, 999, 14477, 20961, 3468]
  assert starts == [0, 5, 7, 12, 14, 17, 20]
  assert limits == [5, 6, 12, 13, 17, 20, 23]
  assert tok.tokens(tf.constant(ids)).numpy().tolist() == [
      b"hello", b",", b"world", b"!", b"una", b"##ffa", b"##ble"]


def test_accents_are_stripped_but_offsets_count_original_bytes(tok):
  text = "Café naïve Zürich"
  ids, starts, limits = _one(tok, text)
  assert ids == _one(tok, "cafe naive zurich")[0] == [7668, 15743, 10204]
  raw = text.encode("utf-8")
  # é, ï, ü are two bytes each: every word's span covers them.
  assert [raw[s:l] for s, l in zip(starts, limits)] == [
      "Café".encode(), "naïve".encode(), "Zürich".encode()]
  assert limits[-1] == len(raw) == 20


def test_cjk_characters_are_single_tokens_with_three_byte_spans(tok):
  text = "北京大学 中文"
  ids, starts, limits = _one(tok, text)
  assert len(ids) == 6 and tok.unk_id not in ids
  assert starts == [0, 3, 6, 9, 13, 16] and limits == [3, 6, 9, 12, 16, 19]
  raw = text.encode("utf-8")
  assert [raw[s:l].decode() for s, l in zip(starts, limits)] == list("北京大学中文")


def test_emoji_become_unk_covering_all_their_bytes(tok):
  text = "I ❤️ pizza 🍕!"
  ids, starts, limits = _one(tok, text)
  assert ids == [1045, tok.unk_id, 10733, tok.unk_id, 999]
  raw = text.encode("utf-8")
  assert raw[starts[1]:limits[1]].decode() == "❤️"  # U+2764 U+FE0F, 6 bytes
  assert raw[starts[3]:limits[3]].decode() == "🍕"  # 4 bytes
  assert (limits[3] - starts[3], limits[1] - starts[1]) == (4, 6)


def test_empty_and_whitespace_strings_give_empty_rows(tok):
  ids, starts, limits = tok.tokenize_with_offsets(["", "   ", "a"])
  assert ids.row_lengths().numpy().tolist() == [0, 0, 1]
  assert starts.row_lengths().numpy().tolist() == [0, 0, 1]
  assert ids.dtype == tf.int32 and starts.dtype == tf.int64 and limits.dtype == tf.int64
  assert tok.tokenize([""]).shape[0] == 1


def test_offsets_slice_back_to_wordpieces(tok):
  text = "The Eiffel Tower was completed in 1889, according to Gustave Eiffel's records."
  ids, starts, limits = _one(tok, text)
  pieces = [p.decode() for p in tok.tokens(tf.constant(ids)).numpy()]
  raw = text.encode("utf-8")
  for piece, s, l in zip(pieces, starts, limits):
    assert raw[s:l].decode().lower() == piece.replace("##", "")


def test_detokenize_round_trip(tok):
  out = tok.detokenize(tok.tokenize(["Café naïve Zürich", "unaffable"]))
  assert out.numpy().tolist() == [b"cafe naive zurich", b"unaffable"]


def test_runs_in_tf_data_and_a_saved_model(tok, tmp_path):
  texts = ["Hello, world!", "Café", ""]
  ds = tf.data.Dataset.from_tensor_slices(texts).batch(3).map(
      lambda t: tok.tokenize_with_offsets(t))
  ids, starts, _ = next(iter(ds))
  assert ids.to_list() == [[7592, 1010, 2088, 999], [7668], []]
  assert starts.to_list() == [[0, 5, 7, 12], [0], []]

  class Wrapper(tf.Module):
    def __init__(self):
      super().__init__()
      self.tok = tok

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, text):
      ids, starts, limits = self.tok.tokenize_with_offsets(text)
      return {"ids": ids.to_tensor(-1), "limits": limits.to_tensor(-1)}

  path = str(tmp_path / "tok_model")
  tf.saved_model.save(Wrapper(), path)
  loaded = tf.saved_model.load(path)
  out = loaded(tf.constant(["Zürich 🍕"]))
  assert out["ids"].numpy().tolist() == [[10204, tok.unk_id]]
  assert out["limits"].numpy().tolist() == [[7, 12]]


def test_missing_vocab_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.txt"):
    RealmTokenizer(str(tmp_path / "nope.txt"))
  bad = tmp_path / "bad.txt"
  bad.write_text("[PAD]\n[UNK]\nhello\n")
  with pytest.raises(ValueError, match=r"\[CLS\]"):
    RealmTokenizer(str(bad))
  assert os.path.exists(default_vocab_path())
