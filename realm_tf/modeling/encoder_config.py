"""Encoder configuration dataclass, named presets, and the BertEncoderV2 builder.

One `EncoderConfig` describes a BERT tower; presets name the sizes the project uses
(`tiny` and `mini` for tests and the CPU demo, `minilm` for the shipped pretrained weights,
`base` for the paper's BERT-base towers).
"""
import dataclasses
from typing import Dict

import tf_keras
from official.nlp.modeling import networks
from realm_tf.config_base import ConfigBase


@dataclasses.dataclass(frozen=True)
class EncoderConfig(ConfigBase):
  """Hyper-parameters of one BERT encoder tower."""
  vocab_size: int = 30522
  hidden_size: int = 768
  num_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  initializer_range: float = 0.02
  layer_norm_eps: float = 1e-12

  @classmethod
  def resolve(cls, value) -> "EncoderConfig":
    """A preset name or a config → the config (nested encoder fields hold either)."""
    return get_encoder_config(value)


PRESETS: Dict[str, EncoderConfig] = {
    "tiny": EncoderConfig(hidden_size=128, num_layers=2, num_attention_heads=2,
                          intermediate_size=512),
    "mini": EncoderConfig(hidden_size=256, num_layers=4, num_attention_heads=4,
                          intermediate_size=1024),
    "minilm": EncoderConfig(hidden_size=384, num_layers=6, num_attention_heads=12,
                            intermediate_size=1536),
    "base": EncoderConfig(hidden_size=768, num_layers=12, num_attention_heads=12,
                          intermediate_size=3072),
}


def get_encoder_config(name_or_config) -> EncoderConfig:
  """Returns the preset called `name`, or the config itself when given one."""
  if isinstance(name_or_config, EncoderConfig):
    return name_or_config
  if name_or_config not in PRESETS:
    raise ValueError(f"Unknown encoder preset {name_or_config!r}; known: {sorted(PRESETS)}")
  return PRESETS[name_or_config]


@tf_keras.utils.register_keras_serializable(package="realm_tf")
def gelu_exact(x):
  """BERT's erf-based GELU (the checkpoints we load were trained with it)."""
  return tf_keras.activations.gelu(x, approximate=False)


@tf_keras.utils.register_keras_serializable(package="realm_tf")
def gelu_approximate(x):
  """The tanh approximation of GELU."""
  return tf_keras.activations.gelu(x, approximate=True)


def _activation(name: str):
  """Activation by name; "gelu" is BERT's exact erf GELU, "gelu_approximate" the tanh form."""
  if name == "gelu":
    return gelu_exact
  if name == "gelu_approximate":
    return gelu_approximate
  return tf_keras.activations.get(name)


def build_encoder(config, name: str = "encoder") -> networks.BertEncoderV2:
  """Builds a Model Garden `BertEncoderV2` (tf_keras) from a config or preset name."""
  config = get_encoder_config(config)
  return networks.BertEncoderV2(
      vocab_size=config.vocab_size,
      hidden_size=config.hidden_size,
      num_layers=config.num_layers,
      num_attention_heads=config.num_attention_heads,
      max_sequence_length=config.max_position_embeddings,
      type_vocab_size=config.type_vocab_size,
      inner_dim=config.intermediate_size,
      inner_activation=_activation(config.hidden_act),
      output_dropout=config.dropout_rate,
      attention_dropout=config.attention_dropout_rate,
      initializer=tf_keras.initializers.TruncatedNormal(stddev=config.initializer_range),
      name=name)
