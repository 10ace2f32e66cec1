"""File input/output shared by every stage: atomic single-file writes (`realm_tf.io.atomic`)."""
