"""BERT's masked-LM head: transform + layer norm + output bias, tied to the word embeddings."""
import tensorflow as tf
import tf_keras

from realm_tf.modeling.encoder_config import gelu_approximate, gelu_exact


@tf_keras.utils.register_keras_serializable(package="realm_tf")
class MaskedLMHead(tf_keras.layers.Layer):
  """Maps hidden states at masked positions to vocabulary logits.

  Weights: `transform` (Dense hidden→hidden, gelu), `layer_norm`, `output_bias` [vocab]; the
  output matrix is the encoder's word-embedding table (passed in, not owned), as in BERT.
  `embedding_table` is the table variable or a zero-argument callable returning it, for
  encoders that create their variables lazily.
  """

  def __init__(self, embedding_table, activation="gelu", initializer_range=0.02,
               layer_norm_eps=1e-12, **kwargs):
    super().__init__(**kwargs)
    self.embedding_table = embedding_table
    self.activation = activation
    self.initializer_range = initializer_range
    self.layer_norm_eps = layer_norm_eps

  def build(self, input_shape):
    if callable(self.embedding_table) and not isinstance(self.embedding_table, tf.Variable):
      self.embedding_table = self.embedding_table()
    vocab_size, hidden_size = self.embedding_table.shape
    if self.activation == "gelu":
      act = gelu_exact
    elif self.activation == "gelu_approximate":
      act = gelu_approximate
    else:
      act = self.activation
    self.transform = tf_keras.layers.Dense(
        hidden_size, activation=act,
        kernel_initializer=tf_keras.initializers.TruncatedNormal(stddev=self.initializer_range),
        name="transform")
    self.layer_norm = tf_keras.layers.LayerNormalization(
        axis=-1, epsilon=self.layer_norm_eps, name="layer_norm")
    self.output_bias = self.add_weight("output_bias", shape=[vocab_size], initializer="zeros")
    super().build(input_shape)

  def call(self, sequence_output, masked_positions=None):
    """sequence_output [B, T, H] (+ masked_positions [B, M]) → logits [B, M or T, vocab]."""
    if masked_positions is not None:
      sequence_output = tf.gather(sequence_output, masked_positions, batch_dims=1)
    h = self.layer_norm(self.transform(sequence_output))
    # A 2-D matmul: multiplying the 3-D [B, M, H] by the table broadcasts it, and the broadcast
    # matmul's gradient for the table materialises [B, vocab, H] before reducing it (here 7x the
    # time of the whole step, and gigabytes for a BERT-base reader).
    shape = tf.shape(h)
    flat = tf.reshape(h, [-1, shape[-1]])
    logits = tf.matmul(flat, tf.cast(self.embedding_table, h.dtype), transpose_b=True)
    logits = tf.nn.bias_add(logits, tf.cast(self.output_bias, logits.dtype))
    logits = tf.reshape(logits, tf.concat([shape[:-1], [-1]], axis=0))
    logits.set_shape(h.shape[:-1].concatenate([self.embedding_table.shape[0]]))
    return logits
