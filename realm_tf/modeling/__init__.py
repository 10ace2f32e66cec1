"""Keras (tf_keras) models for REALM: encoders, heads, retriever, knowledge-augmented encoder, reader."""
