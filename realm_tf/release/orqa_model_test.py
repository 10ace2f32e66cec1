"""Tests for the released-ORQA-model configuration (the whole conversion runs in
tests/test_released_models_e2e.py, over a tiny release imported into a work dir)."""
import dataclasses

import numpy as np
import pytest

from realm_tf.checkpoints import mapping
from realm_tf.release import orqa_model
from realm_tf.modeling.encoder_config import EncoderConfig
from realm_tf.modeling.reader import ReaderConfig
from realm_tf.modeling.retriever import RetrieverConfig
from realm_tf.modeling.openqa_model import OpenQAConfig


def _reader_shapes(hidden=32, layers=2, inner=64, span=24, vocab=50):
  """An ArraySource with only the shapes of an ORQA reader (`reader/module/bert/...`)."""
  p = "reader/module/bert/"
  shapes = {p + "embeddings/word_embeddings": (vocab, hidden),
            p + "embeddings/position_embeddings": (512, hidden),
            p + "embeddings/token_type_embeddings": (2, hidden),
            "reader/dense/kernel": (hidden, 2 * span)}
  for i in range(layers):
    shapes[f"{p}encoder/layer_{i}/intermediate/dense/kernel"] = (hidden, inner)
  return mapping.ArraySource.from_arrays({k: np.zeros(v, np.float32) for k, v in shapes.items()})


def test_released_model_config_is_orqa_featurisation_with_tf1_gelu():
  retriever = RetrieverConfig(encoder=EncoderConfig(hidden_size=32, num_layers=1,
                                                    num_attention_heads=2, intermediate_size=64))
  config = orqa_model.orqa_model_config(_reader_shapes(), retriever, num_attention_heads=2)
  assert config.featurization == "orqa" and not config.word_boundary_spans
  assert config.reader_beam_size == 5
  assert config.reader.span_hidden_size == 24 and config.reader.max_span_width == 10
  assert config.reader.encoder_config.num_layers == 2
  # Google's TF1 BERT computes GELU with tanh; both towers follow.
  assert config.reader.encoder_config.hidden_act == "gelu_approximate"
  assert config.retriever.encoder_config.hidden_act == "gelu_approximate"
  # The question is not cut: the reader's question part is the whole input.
  assert config.reader.query_length == config.reader.seq_length == 320
  assert config.feature_config.reader_query_length == 320


def test_mean_pooling_index_is_refused():
  retriever = RetrieverConfig(encoder="tiny", pooling="mean")
  with pytest.raises(mapping.CheckpointMismatchError, match="pools with 'mean'"):
    orqa_model.orqa_model_config(_reader_shapes(), retriever)


def test_featurization_setting_leaves_defaults_alone():
  default = OpenQAConfig()
  assert default.featurization == "realm_tf" and default.word_boundary_spans
  assert default.reader.query_length == 64
  orqa = dataclasses.replace(default, featurization="orqa")
  assert orqa.reader.query_length == orqa.reader.seq_length
  assert OpenQAConfig.from_dict(orqa.to_dict()).to_dict() == orqa.to_dict()
  with pytest.raises(ValueError, match="featurization must be one of"):
    OpenQAConfig(featurization="dpr")
  # A reader config written with another length keeps its length outside the orqa setting.
  assert OpenQAConfig(reader=ReaderConfig(query_length=32)).reader.query_length == 32
