"""Tests of the ORQA span reader: span grid, block-only spans, scores, checkpoint names."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from realm_tf.modeling.encoder_config import EncoderConfig
from realm_tf.modeling.reader import (NEG_INF, Reader, ReaderConfig, best_spans, block_token_mask,
                                      span_mask)
from realm_tf.text import RealmTokenizer, pack_query_block

MICRO = EncoderConfig(vocab_size=30522, hidden_size=32, num_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=128)
SEQ = 48
W = 10


@pytest.fixture(scope="module")
def tokenizer():
  return RealmTokenizer()


@pytest.fixture(scope="module")
def reader(tokenizer):
  tf_keras.utils.set_random_seed(0)
  cfg = ReaderConfig(encoder=MICRO, span_hidden_size=8, max_span_width=W, seq_length=SEQ,
                     query_length=16)
  return Reader(cfg, vocab=tokenizer.vocab).build_all()


def _packed(tokenizer, questions, blocks, seq=SEQ, query_length=16):
  q = tokenizer.tokenize(questions)
  b = tokenizer.tokenize(blocks)
  return pack_query_block(q, b, query_length, seq, tokenizer.cls_id, tokenizer.sep_id)


def test_block_token_mask_is_exactly_the_block_pieces():
  # [CLS] q q [SEP] b b b [SEP] pad pad
  ids = tf.constant([[101, 7, 8, 102, 20, 21, 22, 102, 0, 0]])
  mask = tf.constant([[1, 1, 1, 1, 1, 1, 1, 1, 0, 0]])
  types = tf.constant([[0, 0, 0, 0, 1, 1, 1, 1, 0, 0]])
  got = block_token_mask(mask, types).numpy()[0]
  np.testing.assert_array_equal(got, [0, 0, 0, 0, 1, 1, 1, 0, 0, 0])
  spans = span_mask(ids, mask, types, max_span_width=4).numpy()[0]
  # Valid spans: starts 4..6, ends ≤ 6 → widths (4: 0,1,2), (5: 0,1), (6: 0) = 6 spans.
  assert spans.sum() == 6
  for t, w in zip(*np.nonzero(spans)):
    assert 4 <= t and t + w <= 6


def test_span_mask_respects_word_boundaries(tokenizer):
  feats = _packed(tokenizer, ["who?"], ["Axolotls and quokkas played"])
  ids = feats["input_word_ids"].numpy()[0]
  pieces = tokenizer.tokens(tf.constant(ids)).numpy()
  cont = tf.constant(np.array([t.startswith("##") for t in tokenizer.vocab]))
  spans = span_mask(feats["input_word_ids"], feats["input_mask"], feats["input_type_ids"], W,
                    cont).numpy()[0]
  assert spans.any()
  assert any(p.startswith(b"##") for p in pieces)  # the block has words of several pieces
  for t, w in zip(*np.nonzero(spans)):
    assert not pieces[t].startswith(b"##"), pieces[t]
    assert not pieces[t + w + 1].startswith(b"##"), (pieces[t], pieces[t + w + 1])
  # Without the vocabulary, continuation pieces may start spans.
  loose = span_mask(feats["input_word_ids"], feats["input_mask"], feats["input_type_ids"], W)
  assert loose.numpy().sum() > spans.sum()


def test_best_span_never_leaves_the_block(reader, tokenizer):
  rng = np.random.default_rng(0)
  words = "the river flows north through old cities and green valleys to a quiet sea".split()
  questions, blocks = [], []
  for _ in range(12):
    questions.append(" ".join(rng.choice(words, size=int(rng.integers(0, 20)))))
    blocks.append(" ".join(rng.choice(words, size=int(rng.integers(1, 60)))))
  feats = _packed(tokenizer, questions, blocks)
  # Random retriever logits must not move spans either.
  out = reader(feats, tf.constant(rng.normal(size=12) * 100, tf.float32))
  logits = out["span_logits"].numpy()
  in_block = block_token_mask(feats["input_mask"], feats["input_type_ids"]).numpy()
  start, end, score = best_spans(out["span_logits"])
  for i in range(12):
    s, e = int(start[i]), int(end[i])
    assert in_block[i, s] and in_block[i, e] and 0 <= e - s < W, (i, s, e)
    assert score[i] > NEG_INF / 2
    # every valid logit is finite, every invalid one is NEG_INF
    valid = out["span_mask"].numpy()[i]
    assert np.all(logits[i][~valid] == NEG_INF)
    assert np.all(logits[i][valid] > NEG_INF / 2)
    starts, widths = np.nonzero(valid)
    assert np.all(in_block[i, starts]) and np.all(in_block[i, starts + widths])


def test_span_score_formula_and_retrieval_logit(reader, tokenizer):
  feats = _packed(tokenizer, ["what is the capital?"], ["Paris is the capital of France."])
  base = reader(feats)["span_logits"].numpy()[0]
  shifted = reader(feats, tf.constant([3.5]))["span_logits"].numpy()[0]
  valid = reader.span_mask(feats).numpy()[0]
  np.testing.assert_allclose(shifted[valid] - base[valid], 3.5, atol=1e-4)
  # w·LayerNorm(ReLU(W_s h_s + W_e h_e)) + b, by hand for one span.
  h = reader.encoder({k: feats[k] for k in ("input_word_ids", "input_mask", "input_type_ids")})[
      "sequence_output"].numpy()[0]
  head = reader.span_head
  t, w = [int(x[0]) for x in np.nonzero(valid)]
  x = h[t] @ head.start_dense.kernel.numpy() + head.start_dense.bias.numpy() + \
      h[t + w] @ head.end_dense.kernel.numpy() + head.end_dense.bias.numpy()
  x = np.maximum(x, 0)
  x = (x - x.mean()) / np.sqrt(x.var() + 1e-3) * head.layer_norm.gamma.numpy() + \
      head.layer_norm.beta.numpy()
  want = float(x @ head.score_dense.kernel.numpy()[:, 0] + head.score_dense.bias.numpy()[0])
  assert base[t, w] == pytest.approx(want, abs=1e-4)


def test_sublayer_names_match_the_checkpoint_converter(reader, tmp_path):
  from realm_tf.checkpoints import tf1_bert  # pylint: disable=g-import-not-at-top
  names = {a: getattr(reader.span_head, a).name
           for a in ("start_dense", "end_dense", "layer_norm", "score_dense")}
  assert names == {a: a for a in names}
  # An object checkpoint written by the converter's stand-in restores into the Reader.
  stand_in = tf1_bert.ReaderWeights(MICRO, span_hidden_size=8)
  tf1_bert.build_span_head(stand_in.span_head, MICRO.hidden_size)
  dummy = {k: tf.zeros([1, 8], tf.int32) for k in ("input_word_ids", "input_mask",
                                                    "input_type_ids")}
  stand_in.encoder(dummy)
  stand_in.span_head.score_dense.bias.assign([0.25])
  path = tf.train.Checkpoint(reader=stand_in).write(str(tmp_path / "ckpt"))
  tf.train.Checkpoint(reader=reader).read(path).assert_existing_objects_matched()
  assert float(reader.span_head.score_dense.bias.numpy()[0]) == 0.25
  np.testing.assert_array_equal(reader.encoder.get_embedding_table().numpy(),
                                stand_in.encoder.get_embedding_table().numpy())


def test_vocab_size_mismatch_is_rejected():
  with pytest.raises(ValueError, match="vocab_size"):
    Reader(ReaderConfig(encoder=MICRO), vocab=["[PAD]", "a"])
