"""Tests of salient-span, random-uniform and random-span masking."""
import numpy as np
import pytest
import tensorflow as tf

from realm_tf.data import corpus
from realm_tf.data import masking

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


@pytest.fixture(scope="module")
def salient(tok):
  return masking.Masker(masking.MaskingConfig(seed=3), tok)


def _ids(tok, text):
  return tok.tokenize([text])[0].numpy().tolist()


def _masked(ex):
  n = int(ex["masked_weights"].numpy().sum())
  return ex["masked_positions"].numpy()[:n].tolist(), ex["masked_ids"].numpy()[:n].tolist()


def test_alignment_with_accents_cjk_and_emoji(tok, salient):
  sentence = TEXT[:TEXT.index(".") + 1]
  full = _ids(tok, sentence)
  for sub, expected in [("Café", ["cafe"]), ("Müller", ["muller"]), ("東京", ["東", "京"]),
                        ("🎉", ["[UNK]"]), ("naïve Zoë", ["naive", "zoe"]),
                        ("4 August 1961", ["4", "august", "1961"])]:
    ex = salient.compiled(0, _record(TEXT, [_bytes(TEXT, sub)]))
    assert ex["valid"].numpy(), sub
    positions, ids = _masked(ex)
    assert [tok.vocab[i] for i in ids] == expected, sub
    words = ex["input_word_ids"].numpy()
    n = int(ex["input_mask"].numpy().sum())
    assert n == len(full) + 2
    assert words[0] == tok.cls_id
    assert words[n - 1] == tok.sep_id
    for p in range(1, n - 1):  # masked exactly at the span, the original piece elsewhere
      want = tok.mask_id if p in positions else full[p - 1]
      assert words[p] == want, (sub, p)
    assert [full[p - 1] for p in positions] == ids
    assert ex["block_id"].numpy() == 7
    assert ex["input_word_ids"].shape == [96]
    assert ex["masked_ids"].shape == [10]


def test_piece_partly_outside_the_span_is_not_masked(tok, salient):
  start, limit = _bytes(TEXT, "Müller")
  ex = salient.compiled(0, _record(TEXT, [(start, limit - 2)]))  # "Müll": inside one piece
  assert not ex["valid"].numpy()
  start, _ = _bytes(TEXT, "Müller")
  _, limit = _bytes(TEXT, "visited 東")  # ends inside nothing: whole pieces muller..東
  ex = salient.compiled(0, _record(TEXT, [(start, limit)]))
  assert [tok.vocab[i] for i in _masked(ex)[1]] == ["muller", "visited", "東"]


def test_span_picks_its_own_sentence(tok, salient):
  ex = salient.compiled(0, _record(TEXT, [_bytes(TEXT, "Second")]))
  n = int(ex["input_mask"].numpy().sum())
  assert n == len(_ids(tok, "Second sentence here.")) + 2
  assert _masked(ex)[0] == [1]


def test_truncation_rejects(salient):
  words = " ".join(f"w{i}" for i in range(150))
  text = words + " Paris end."
  sentences = [(0, len(text.encode()))]
  early = salient.compiled(0, _record(text, [_bytes(text, "w3 ")], sentences))
  assert early["valid"].numpy()
  late = salient.compiled(0, _record(text, [_bytes(text, "Paris")], sentences))
  assert not late["valid"].numpy()
  assert int(late["input_mask"].numpy().sum()) == 96  # query truncated to 96
  # A span of more than max_predictions pieces is rejected too.
  too_long = salient.compiled(0, _record(text, [_bytes(text, " ".join(f"w{i}" for i in range(12)))],
                                    sentences))
  assert not too_long["valid"].numpy()
  # And a record without spans.
  assert not salient.compiled(0, _record(text, [], sentences))["valid"].numpy()


def test_deterministic_per_seed_and_index(tok, salient):
  spans = [_bytes(TEXT, s) for s in ("Café", "Müller", "東京", "Zoë", "August", "Second")]
  record = _record(TEXT, spans)
  for mode in masking.MODES:
    m = masking.Masker(masking.MaskingConfig(mode=mode, seed=11), tok)
    a = [_masked(ex) for ex in _many(m, record, 12)]
    b = [_masked(ex) for ex in _many(m, record, 12)]
    assert a == b, mode
    assert len({str(x) for x in a}) > 2, mode  # the index changes the draw
    if mode == "salient":
      assert a[5] == _masked(m(5, record))  # eager == traced
  other = masking.Masker(masking.MaskingConfig(seed=12), tok)
  assert ([_masked(ex) for ex in _many(salient, record, 12)]
          != [_masked(ex) for ex in _many(other, record, 12)])


def test_salient_draws_every_span(salient):
  spans = [_bytes(TEXT, s) for s in ("Café", "Müller", "Zoë")]
  record = _record(TEXT, spans)
  drawn = {tuple(_masked(ex)[1]) for ex in _many(salient, record, 60)}
  assert len(drawn) == 3


def test_random_uniform(tok):
  m = masking.Masker(masking.MaskingConfig(mode="random_uniform", seed=0), tok)
  text = " ".join(f"word{i}" for i in range(40)) + "."
  ids = _ids(tok, text)
  ex = m.compiled(5, _record(text, [_bytes(text, "word1 ")], [(0, len(text))]))
  positions, masked = _masked(ex)
  assert len(positions) == min(round(0.15 * len(ids)), m.config.max_predictions)
  assert positions == sorted(set(positions))
  assert masked == [ids[p - 1] for p in positions]


def test_random_span_masks_whole_contiguous_words(tok):
  m = masking.Masker(masking.MaskingConfig(mode="random_span", seed=0), tok)
  text = "Internationalization of unbelievably extraordinary electroencephalography works well."
  ids = _ids(tok, text)
  for ex in _many(m, _record(text, [_bytes(text, "works")], [(0, len(text))]), 20):
    positions, masked = _masked(ex)
    assert positions
    assert positions == list(range(positions[0], positions[-1] + 1))
    assert masked == [ids[p - 1] for p in positions]
    assert not tok.vocab[masked[0]].startswith("##")
    after = positions[-1]  # the piece after the span starts a new word
    if after < len(ids):
      assert not tok.vocab[ids[after]].startswith("##")


def test_dataset_from_records_and_resume(tmp_path, salient):
  spans = [_bytes(TEXT, s) for s in ("Café", "Müller", "東京", "Zoë")]
  first = TEXT.index(".") + 1
  sentences = [(0, len(TEXT[:first].encode())), (len(TEXT[:first + 1].encode()),
                                                 len(TEXT.encode()))]
  path = str(tmp_path / "a.tfrecord.gz")
  with tf.io.TFRecordWriter(path, options="GZIP") as w:
    for i in range(6):
      w.write(corpus.annotation_example("t", TEXT, sentences, spans if i != 2 else [],
                                        ["X"] * (4 if i != 2 else 0), block_id=i))
  records = corpus.read_annotations(None, paths=[path])
  all_ex = list(salient.dataset(records).as_numpy_iterator())
  assert [int(e["block_id"]) for e in all_ex] == [0, 1, 3, 4, 5]  # 2 has no span
  resumed = list(salient.dataset(records.skip(3), start_index=3).as_numpy_iterator())
  assert len(resumed) == 3
  for a, b in zip(all_ex[2:], resumed):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  assert all_ex[0]["masked_weights"].dtype == np.float32
  assert all_ex[0]["input_word_ids"].dtype == np.int32
