"""The retriever's projection of the [CLS] vector to the 128-d retrieval space."""
import tf_keras


@tf_keras.utils.register_keras_serializable(package="realm_tf")
class RetrievalProjection(tf_keras.layers.Layer):
  """Dense map of a tower's pooled [CLS] state to `output_dim` (128), then a layer norm.

  The original ICT/REALM embedder (language/orqa/models/ict_model.py) computes
  `LayerNorm(Dense(pooled_output))`; the released REALM/ORQA checkpoints hold both weights
  (`dense/*` and `LayerNorm/*`), so the layer norm is on by default. `use_layer_norm=False`
  gives a plain linear projection.
  """

  def __init__(self, output_dim: int = 128, initializer_range: float = 0.02,
               use_layer_norm: bool = True, layer_norm_eps: float = 1e-12,
               scale_init: float = 1.0, **kwargs):
    super().__init__(**kwargs)
    self.output_dim = output_dim
    self.initializer_range = initializer_range
    self.use_layer_norm = use_layer_norm
    self.layer_norm_eps = layer_norm_eps
    self.scale_init = scale_init
    self.dense = tf_keras.layers.Dense(
        output_dim,
        kernel_initializer=tf_keras.initializers.TruncatedNormal(stddev=initializer_range),
        name="dense")
    # The layer norm's initial scale sets the initial spread of inner products (±output_dim at
    # 1.0): a small value starts a from-scratch retriever with a soft prior over candidates.
    self.layer_norm = (tf_keras.layers.LayerNormalization(
        axis=-1, epsilon=layer_norm_eps, dtype="float32",
        gamma_initializer=tf_keras.initializers.Constant(scale_init), name="layer_norm")
                       if use_layer_norm else None)

  def call(self, cls_hidden):
    x = self.dense(cls_hidden)
    if self.layer_norm is not None:
      x = self.layer_norm(x)
    return x

  def rescale(self, factor: float) -> None:
    """Multiplies every output by `factor` (a temperature on the inner products it feeds).

    A warm start from a sentence encoder keeps its cosine geometry but the layer norm puts the
    inner products at ±output_dim: far too peaked a softmax over retrieved blocks. Rescaling
    the query side alone sets the softmax temperature without re-embedding the index."""
    last = self.layer_norm if self.layer_norm is not None else self.dense
    weights = ((last.gamma, last.beta) if self.layer_norm is not None
               else (last.kernel, last.bias))
    for w in weights:
      w.assign(w * factor)

  def get_config(self):
    return dict(super().get_config(), output_dim=self.output_dim,
                initializer_range=self.initializer_range, use_layer_norm=self.use_layer_norm,
                layer_norm_eps=self.layer_norm_eps, scale_init=self.scale_init)
