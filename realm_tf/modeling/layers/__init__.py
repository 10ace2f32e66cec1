"""Reusable tf_keras layers: the retrieval projection head and the tied MLM head."""
from realm_tf.modeling.layers.projection import RetrievalProjection
from realm_tf.modeling.layers.mlm_head import MaskedLMHead
