"""Tests of sentence splitting and block building."""
import pytest

from realm_tf.data import blocking
from realm_tf.text import RealmTokenizer


@pytest.fixture(scope="module")
def tok():
  return RealmTokenizer()


@pytest.fixture(scope="module")
def blocker(tok):
  return blocking.Blocker(tok, max_block_length=40, max_title_length=8)


def _retokenize(blocker, text):
  return blocker.tokenize(text)[0].tolist()


def test_boundaries():
  text = ('Dr. Smith went to Washington. He met J. R. R. Tolkien in the U.S. Army! '
          '"Why?" she asked. Pi is 3.14 here.\nNew line')
  got = [text[s:e] for s, e in blocking.split_sentences(text)]
  assert got == ["Dr. Smith went to Washington.",
                 "He met J. R. R. Tolkien in the U.S. Army!",
                 '"Why?" she asked.', "Pi is 3.14 here.", "New line"]


def test_cjk_and_offsets():
  text = "東京は大きい。ここです。 Café é."
  got = [text[s:e] for s, e in blocking.split_sentences(text)]
  assert got == ["東京は大きい。", "ここです。", "Café é."]
  offsets = blocking.char_to_byte_offsets(text)
  assert len(offsets) == len(text) + 1
  assert int(offsets[-1]) == len(text.encode("utf-8"))
  assert blocking.sentence_byte_spans(text)[1] == (21, 36)


def test_blocks_fit_and_follow_sentences(blocker):
  sentences = [f"Sentence number {i} talks about the river Thames and London." for i in range(9)]
  text = " ".join(sentences)
  blocks = blocker.split("A title", text)
  assert len(blocks) > 2
  for i, b in enumerate(blocks):
    assert b.block_index == i
    assert blocking.packed_length(b) <= 40
    assert b.body_ids == _retokenize(blocker, b.body)
    assert b.title_ids == _retokenize(blocker, "A title")
    assert b.body.startswith("Sentence number"), b.body  # whole sentences
    assert b.body.endswith("London."), b.body
    assert text.encode()[b.byte_start:b.byte_limit].decode() == b.body
  # Nothing lost: the blocks' pieces are the document's pieces.
  assert sum((b.body_ids for b in blocks), []) == _retokenize(blocker, text)


def test_long_sentence_is_cut_between_words(tok, blocker):
  text = " ".join(["internationalization"] * 40) + "."
  blocks = blocker.split("T", text)
  assert len(blocks) > 1
  for b in blocks:
    assert blocking.packed_length(b) <= 40
    assert b.body_ids == _retokenize(blocker, b.body)
    assert not tok.vocab[b.body_ids[0]].startswith("##")


def test_long_title_is_shortened(blocker):
  title = "the history of the united kingdom of great britain and northern ireland"
  blocks = blocker.split(title, "Short body.")
  assert len(blocks[0].title_ids) <= 8
  assert blocks[0].title_ids == _retokenize(blocker, blocks[0].title)
  assert title.startswith(blocks[0].title)


def test_default_length_and_empty(tok):
  blocker = blocking.Blocker(tok)
  text = "Word " * 1000
  blocks = blocker.split("Title", text)
  assert [blocking.packed_length(b) for b in blocks[:-1]] == [288] * (len(blocks) - 1)
  assert blocker.split("Title", "   \n ") == []
