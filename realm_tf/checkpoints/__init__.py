"""Checkpoint conversion: Hugging Face BERT and TF1 BERT/REALM/ORQA checkpoints → our TF2 models."""
from realm_tf.checkpoints.mapping import ArraySource, CheckpointMismatchError, Rule, apply_rules
from realm_tf.checkpoints.hf_bert import (default_minilm_dir, load_hf_bert_into_encoder,
                                          load_hf_config)
from realm_tf.checkpoints.tf1_bert import (ReaderWeights, load_tf1_encoder, load_tf1_reader,
                                           load_tf1_retriever)
