"""Tests of sentence splitting and block building."""
import numpy as np
import pytest

from realm_tf.data import blocking


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
  # 1,000 wordpieces in bodies of at most 288 - 3 - 1: four blocks of 250, not 3 × 284 + 148.
  assert [len(b.body_ids) for b in blocks] == [250] * 4
  assert max(blocking.packed_length(b) for b in blocks) <= 288
  assert blocker.split("Title", "   \n ") == []


def test_a_documents_tail_is_not_left_as_a_block_of_a_few_words(blocker):
  # Sentences of 13, 17, 8 and 3 wordpieces; bodies of at most 40 - 3 - 2 = 35. Greedy packing
  # gives [30, 11], a tail block of a few words of the kind a REALM retriever learns to return for
  # every query (docs/LEARNING.md, "Hub blocks"); the same two blocks with the smallest largest
  # block are [13, 28].
  sentences = ["Alpha beta gamma delta epsilon zeta eta theta iota kappa lambda.",
               "Mu nu xi omicron pi rho sigma tau upsilon phi chi.",
               "Psi omega and some more words here.", "It ends."]
  lengths = [len(_retokenize(blocker, s)) for s in sentences]
  assert lengths == [13, 17, 8, 3]
  units = list(zip(np.cumsum([0] + lengths[:-1]).tolist(), np.cumsum(lengths).tolist()))
  greedy = blocking._greedy_groups(units, 35)  # pylint: disable=protected-access
  assert [g[-1][1] - g[0][0] for g in greedy] == [30, 11]
  text = " ".join(sentences)
  blocks = blocker.split("A title", text)
  assert [len(b.body_ids) for b in blocks] == [13, 28]
  assert [b.body for b in blocks] == [sentences[0], " ".join(sentences[1:])]
  assert sum((b.body_ids for b in blocks), []) == _retokenize(blocker, text)


def test_a_long_sentence_is_cut_into_near_equal_parts(tok, blocker):
  text = " ".join(["river"] * 80) + "."  # 81 wordpieces, budget 35: 27 + 27 + 27, not 35 + 35 + 11
  blocks = blocker.split("T", text)
  assert [len(b.body_ids) for b in blocks] == [27, 27, 27]
