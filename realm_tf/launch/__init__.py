"""Command-line entry points (absl flags): `python -m realm_tf.launch.<job>`."""
