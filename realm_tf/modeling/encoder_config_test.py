"""Tests for EncoderConfig, the presets and build_encoder."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.modeling.encoder_config import (PRESETS, EncoderConfig, build_encoder,
                                              get_encoder_config)

EXPECTED = {"tiny": (2, 128, 2), "mini": (4, 256, 4), "minilm": (6, 384, 12),
            "base": (12, 768, 12)}


def _bert_param_count(c: EncoderConfig) -> int:
  h, i = c.hidden_size, c.intermediate_size
  embeddings = (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) * h + 2 * h
  layer = 4 * (h * h + h) + 2 * h + (h * i + i) + (i * h + h) + 2 * h
  return embeddings + c.num_layers * layer + h * h + h


def test_presets_have_the_issue_sizes():
  assert set(PRESETS) == set(EXPECTED)
  for name, (layers, hidden, heads) in EXPECTED.items():
    c = PRESETS[name]
    assert (c.num_layers, c.hidden_size, c.num_attention_heads) == (layers, hidden, heads)
    assert c.intermediate_size == 4 * hidden and c.vocab_size == 30522


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_preset_builds_and_runs_a_forward_pass(name):
  cfg = PRESETS[name]
  encoder = build_encoder(name)
  inputs = {"input_word_ids": tf.constant([[101, 7592, 1010, 2088, 999, 102, 0, 0]]),
            "input_mask": tf.constant([[1, 1, 1, 1, 1, 1, 0, 0]]),
            "input_type_ids": tf.zeros([1, 8], tf.int32)}
  out = encoder(inputs)
  assert out["sequence_output"].shape == (1, 8, cfg.hidden_size)
  assert out["pooled_output"].shape == (1, cfg.hidden_size)
  assert len(out["encoder_outputs"]) == cfg.num_layers
  assert np.all(np.isfinite(out["sequence_output"].numpy()))
  # Same architecture as BERT: the parameter count follows the BERT formula exactly.
  assert sum(int(np.prod(v.shape)) for v in encoder.variables) == _bert_param_count(cfg)
  # Inference is deterministic; the pooled output is tanh-bounded.
  again = encoder(inputs)["pooled_output"].numpy()
  np.testing.assert_array_equal(out["pooled_output"].numpy(), again)
  assert np.abs(again).max() <= 1.0


def test_padding_does_not_change_real_positions():
  encoder = build_encoder("tiny")
  short = {"input_word_ids": tf.constant([[101, 2000, 102]]), "input_mask": tf.ones([1, 3], tf.int32),
           "input_type_ids": tf.zeros([1, 3], tf.int32)}
  padded = {"input_word_ids": tf.constant([[101, 2000, 102, 0, 0]]),
            "input_mask": tf.constant([[1, 1, 1, 0, 0]]), "input_type_ids": tf.zeros([1, 5], tf.int32)}
  a = encoder(short)["sequence_output"].numpy()
  b = encoder(padded)["sequence_output"].numpy()[:, :3]
  np.testing.assert_allclose(a, b, atol=1e-5)


def test_config_round_trip_and_errors():
  cfg = dataclasses.replace(PRESETS["tiny"], dropout_rate=0.0)
  assert EncoderConfig.from_dict(cfg.to_dict()) == cfg
  with pytest.raises(ValueError, match="hidden_sise"):
    EncoderConfig.from_dict({"hidden_sise": 3})
  with pytest.raises(ValueError, match="huge"):
    get_encoder_config("huge")
  assert get_encoder_config(cfg) is cfg
  assert get_encoder_config("mini") is PRESETS["mini"]


def test_gelu_is_exact_erf_gelu():
  # Large weights, so the FFN sees inputs where the two GELUs differ by more than float noise.
  cfg = EncoderConfig(vocab_size=10, hidden_size=8, num_layers=1, num_attention_heads=2,
                      intermediate_size=16, initializer_range=1.0)
  approx = dataclasses.replace(cfg, hidden_act="gelu_approximate")
  inputs = {"input_word_ids": tf.constant([[1, 2, 3]]), "input_mask": tf.ones([1, 3], tf.int32),
            "input_type_ids": tf.zeros([1, 3], tf.int32)}
  exact_enc, approx_enc = build_encoder(cfg), build_encoder(approx)
  exact_enc(inputs)
  approx_enc(inputs)
  approx_enc.set_weights(exact_enc.get_weights())
  a = exact_enc(inputs)["sequence_output"].numpy()
  b = approx_enc(inputs)["sequence_output"].numpy()
  assert 0 < np.abs(a - b).max() < 0.1  # same weights, slightly different activation
