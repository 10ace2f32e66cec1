"""The retriever's projection of the [CLS] vector to the 128-d retrieval space."""
import tf_keras


@tf_keras.utils.register_keras_serializable(package="realm_tf")
class RetrievalProjection(tf_keras.layers.Layer):
  """Linear map of a tower's [CLS] hidden state to the `output_dim` (128) embedding space."""

  def __init__(self, output_dim: int = 128, initializer_range: float = 0.02, **kwargs):
    super().__init__(**kwargs)
    self.output_dim = output_dim
    self.initializer_range = initializer_range
    self.dense = tf_keras.layers.Dense(
        output_dim,
        kernel_initializer=tf_keras.initializers.TruncatedNormal(stddev=initializer_range),
        name="dense")

  def call(self, cls_hidden):
    return self.dense(cls_hidden)

  def get_config(self):
    return dict(super().get_config(), output_dim=self.output_dim,
                initializer_range=self.initializer_range)
