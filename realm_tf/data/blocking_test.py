"""Tests of sentence splitting and block building."""
from absl.testing import absltest

from realm_tf.data import blocking
from realm_tf.text import RealmTokenizer


class SentenceSplitterTest(absltest.TestCase):

  def test_boundaries(self):
    text = ('Dr. Smith went to Washington. He met J. R. R. Tolkien in the U.S. Army! '
            '"Why?" she asked. Pi is 3.14 here.\nNew line')
    got = [text[s:e] for s, e in blocking.split_sentences(text)]
    self.assertEqual(got, ["Dr. Smith went to Washington.",
                           "He met J. R. R. Tolkien in the U.S. Army!",
                           '"Why?" she asked.', "Pi is 3.14 here.", "New line"])

  def test_cjk_and_offsets(self):
    text = "東京は大きい。ここです。 Café é."
    got = [text[s:e] for s, e in blocking.split_sentences(text)]
    self.assertEqual(got, ["東京は大きい。", "ここです。", "Café é."])
    offsets = blocking.char_to_byte_offsets(text)
    self.assertLen(offsets, len(text) + 1)
    self.assertEqual(int(offsets[-1]), len(text.encode("utf-8")))
    self.assertEqual(blocking.sentence_byte_spans(text)[1], (21, 36))


class BlockerTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tok = RealmTokenizer()
    cls.blocker = blocking.Blocker(cls.tok, max_block_length=40, max_title_length=8)

  def _retokenize(self, text):
    return self.blocker.tokenize(text)[0].tolist()

  def test_blocks_fit_and_follow_sentences(self):
    sentences = [f"Sentence number {i} talks about the river Thames and London." for i in range(9)]
    text = " ".join(sentences)
    blocks = self.blocker.split("A title", text)
    self.assertGreater(len(blocks), 2)
    for i, b in enumerate(blocks):
      self.assertEqual(b.block_index, i)
      self.assertLessEqual(blocking.packed_length(b), 40)
      self.assertEqual(b.body_ids, self._retokenize(b.body))
      self.assertEqual(b.title_ids, self._retokenize("A title"))
      self.assertTrue(b.body.startswith("Sentence number"), b.body)  # whole sentences
      self.assertTrue(b.body.endswith("London."), b.body)
      self.assertEqual(text.encode()[b.byte_start:b.byte_limit].decode(), b.body)
    # Nothing lost: the blocks' pieces are the document's pieces.
    self.assertEqual(sum((b.body_ids for b in blocks), []), self._retokenize(text))

  def test_long_sentence_is_cut_between_words(self):
    text = " ".join(["internationalization"] * 40) + "."
    blocks = self.blocker.split("T", text)
    self.assertGreater(len(blocks), 1)
    for b in blocks:
      self.assertLessEqual(blocking.packed_length(b), 40)
      self.assertEqual(b.body_ids, self._retokenize(b.body))
      self.assertFalse(self.tok.vocab[b.body_ids[0]].startswith("##"))

  def test_long_title_is_shortened(self):
    title = "the history of the united kingdom of great britain and northern ireland"
    blocks = self.blocker.split(title, "Short body.")
    self.assertLessEqual(len(blocks[0].title_ids), 8)
    self.assertEqual(blocks[0].title_ids, self._retokenize(blocks[0].title))
    self.assertTrue(title.startswith(blocks[0].title))

  def test_default_length_and_empty(self):
    blocker = blocking.Blocker(self.tok)
    text = "Word " * 1000
    blocks = blocker.split("Title", text)
    self.assertEqual([blocking.packed_length(b) for b in blocks[:-1]], [288] * (len(blocks) - 1))
    self.assertEqual(blocker.split("Title", "   \n "), [])


if __name__ == "__main__":
  absltest.main()
