"""Tests of salient-span, random-uniform and random-span masking."""
import os
import tempfile

import numpy as np
import tensorflow as tf

from realm_tf.data import corpus
from realm_tf.data import masking
from realm_tf.text import RealmTokenizer

TEXT = "Café Müller visited 東京 🎉 and naïve Zoë on 4 August 1961. Second sentence here."


def _bytes(text, sub, start=0):
  """Byte (start, limit) of the first occurrence of `sub` (at or after char `start`) in text."""
  i = text.index(sub, start)
  return len(text[:i].encode()), len(text[:i + len(sub)].encode())


def _record(text, spans, sentences=None, block_id=7):
  if sentences is None:
    first = text.index(".") + 1
    sentences = [(0, len(text[:first].encode())), (len(text[:first + 1].encode()),
                                                   len(text.encode()))]
  return {
      "title": tf.constant("t"), "text": tf.constant(text),
      "sentence_starts": tf.constant([s for s, _ in sentences], tf.int64),
      "sentence_limits": tf.constant([e for _, e in sentences], tf.int64),
      "span_starts": tf.constant([s for s, _ in spans], tf.int64),
      "span_limits": tf.constant([e for _, e in spans], tf.int64),
      "span_types": tf.constant(["X"] * len(spans), tf.string),
      "block_id": tf.constant(block_id, tf.int64),
  }


def _many(masker, record, n):
  """masker(i, record) for i < n, with the traced function (eager calls are slow)."""
  return [masker.compiled(tf.constant(i, tf.int64), record) for i in range(n)]


class MaskingTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tok = RealmTokenizer()
    cls.salient = masking.Masker(masking.MaskingConfig(seed=3), cls.tok)

  def _ids(self, text):
    return self.tok.tokenize([text])[0].numpy().tolist()

  def _masked(self, ex):
    n = int(ex["masked_weights"].numpy().sum())
    return ex["masked_positions"].numpy()[:n].tolist(), ex["masked_ids"].numpy()[:n].tolist()

  def test_alignment_with_accents_cjk_and_emoji(self):
    sentence = TEXT[:TEXT.index(".") + 1]
    full = self._ids(sentence)
    for sub, expected in [("Café", ["cafe"]), ("Müller", ["muller"]), ("東京", ["東", "京"]),
                          ("🎉", ["[UNK]"]), ("naïve Zoë", ["naive", "zoe"]),
                          ("4 August 1961", ["4", "august", "1961"])]:
      ex = self.salient.compiled(0, _record(TEXT, [_bytes(TEXT, sub)]))
      self.assertTrue(ex["valid"].numpy(), sub)
      positions, ids = self._masked(ex)
      self.assertEqual([self.tok.vocab[i] for i in ids], expected, sub)
      words = ex["input_word_ids"].numpy()
      n = int(ex["input_mask"].numpy().sum())
      self.assertEqual(n, len(full) + 2)
      self.assertEqual(words[0], self.tok.cls_id)
      self.assertEqual(words[n - 1], self.tok.sep_id)
      for p in range(1, n - 1):  # masked exactly at the span, the original piece elsewhere
        want = self.tok.mask_id if p in positions else full[p - 1]
        self.assertEqual(words[p], want, (sub, p))
      self.assertEqual([full[p - 1] for p in positions], ids)
      self.assertEqual(ex["block_id"].numpy(), 7)
      self.assertEqual(ex["input_word_ids"].shape, [96])
      self.assertEqual(ex["masked_ids"].shape, [10])

  def test_piece_partly_outside_the_span_is_not_masked(self):
    start, limit = _bytes(TEXT, "Müller")
    ex = self.salient.compiled(0, _record(TEXT, [(start, limit - 2)]))  # "Müll": inside one piece
    self.assertFalse(ex["valid"].numpy())
    start, _ = _bytes(TEXT, "Müller")
    _, limit = _bytes(TEXT, "visited 東")  # ends inside nothing: whole pieces muller..東
    ex = self.salient.compiled(0, _record(TEXT, [(start, limit)]))
    self.assertEqual([self.tok.vocab[i] for i in self._masked(ex)[1]],
                     ["muller", "visited", "東"])

  def test_span_picks_its_own_sentence(self):
    ex = self.salient.compiled(0, _record(TEXT, [_bytes(TEXT, "Second")]))
    n = int(ex["input_mask"].numpy().sum())
    self.assertEqual(n, len(self._ids("Second sentence here.")) + 2)
    self.assertEqual(self._masked(ex)[0], [1])

  def test_truncation_rejects(self):
    words = " ".join(f"w{i}" for i in range(150))
    text = words + " Paris end."
    sentences = [(0, len(text.encode()))]
    early = self.salient.compiled(0, _record(text, [_bytes(text, "w3 ")], sentences))
    self.assertTrue(early["valid"].numpy())
    late = self.salient.compiled(0, _record(text, [_bytes(text, "Paris")], sentences))
    self.assertFalse(late["valid"].numpy())
    self.assertEqual(int(late["input_mask"].numpy().sum()), 96)  # query truncated to 96
    # A span of more than max_predictions pieces is rejected too.
    too_long = self.salient.compiled(0, _record(text, [_bytes(text, " ".join(f"w{i}" for i in range(12)))],
                                       sentences))
    self.assertFalse(too_long["valid"].numpy())
    # And a record without spans.
    self.assertFalse(self.salient.compiled(0, _record(text, [], sentences))["valid"].numpy())

  def test_deterministic_per_seed_and_index(self):
    spans = [_bytes(TEXT, s) for s in ("Café", "Müller", "東京", "Zoë", "August", "Second")]
    record = _record(TEXT, spans)
    for mode in masking.MODES:
      m = masking.Masker(masking.MaskingConfig(mode=mode, seed=11), self.tok)
      a = [self._masked(ex) for ex in _many(m, record, 12)]
      b = [self._masked(ex) for ex in _many(m, record, 12)]
      self.assertEqual(a, b, mode)
      self.assertGreater(len({str(x) for x in a}), 2, mode)  # the index changes the draw
      if mode == "salient":
        self.assertEqual(a[5], self._masked(m(5, record)))  # eager == traced
    other = masking.Masker(masking.MaskingConfig(seed=12), self.tok)
    self.assertNotEqual([self._masked(ex) for ex in _many(self.salient, record, 12)],
                        [self._masked(ex) for ex in _many(other, record, 12)])

  def test_salient_draws_every_span(self):
    spans = [_bytes(TEXT, s) for s in ("Café", "Müller", "Zoë")]
    record = _record(TEXT, spans)
    drawn = {tuple(self._masked(ex)[1]) for ex in _many(self.salient, record, 60)}
    self.assertLen(drawn, 3)

  def test_random_uniform(self):
    m = masking.Masker(masking.MaskingConfig(mode="random_uniform", seed=0), self.tok)
    text = " ".join(f"word{i}" for i in range(40)) + "."
    ids = self._ids(text)
    ex = m.compiled(5, _record(text, [_bytes(text, "word1 ")], [(0, len(text))]))
    positions, masked = self._masked(ex)
    self.assertLen(positions, min(round(0.15 * len(ids)), m.config.max_predictions))
    self.assertEqual(positions, sorted(set(positions)))
    self.assertEqual(masked, [ids[p - 1] for p in positions])

  def test_random_span_masks_whole_contiguous_words(self):
    m = masking.Masker(masking.MaskingConfig(mode="random_span", seed=0), self.tok)
    text = "Internationalization of unbelievably extraordinary electroencephalography works well."
    ids = self._ids(text)
    for ex in _many(m, _record(text, [_bytes(text, "works")], [(0, len(text))]), 20):
      positions, masked = self._masked(ex)
      self.assertNotEmpty(positions)
      self.assertEqual(positions, list(range(positions[0], positions[-1] + 1)))
      self.assertEqual(masked, [ids[p - 1] for p in positions])
      self.assertFalse(self.tok.vocab[masked[0]].startswith("##"))
      after = positions[-1]  # the piece after the span starts a new word
      if after < len(ids):
        self.assertFalse(self.tok.vocab[ids[after]].startswith("##"))

  def test_dataset_from_records_and_resume(self):
    spans = [_bytes(TEXT, s) for s in ("Café", "Müller", "東京", "Zoë")]
    first = TEXT.index(".") + 1
    sentences = [(0, len(TEXT[:first].encode())), (len(TEXT[:first + 1].encode()),
                                                   len(TEXT.encode()))]
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "a.tfrecord.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as w:
      for i in range(6):
        w.write(corpus.annotation_example("t", TEXT, sentences, spans if i != 2 else [],
                                          ["X"] * (4 if i != 2 else 0), block_id=i))
    records = corpus.read_annotations(None, paths=[path])
    all_ex = list(self.salient.dataset(records).as_numpy_iterator())
    self.assertEqual([int(e["block_id"]) for e in all_ex], [0, 1, 3, 4, 5])  # 2 has no span
    resumed = list(self.salient.dataset(records.skip(3), start_index=3).as_numpy_iterator())
    self.assertEqual(len(resumed), 3)
    for a, b in zip(all_ex[2:], resumed):
      for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    self.assertEqual(all_ex[0]["masked_weights"].dtype, np.float32)
    self.assertEqual(all_ex[0]["input_word_ids"].dtype, np.int32)


if __name__ == "__main__":
  tf.test.main()
