"""realm_tf: REALM (Guu et al., 2020) retrieval-augmented LM pre-training in TensorFlow 2 / Keras."""
import os as _os

# tf-models-official's encoders are tf_keras (Keras 2) layers; keep every model on tf_keras.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"
