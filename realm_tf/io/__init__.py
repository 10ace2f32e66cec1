"""File input/output shared by every stage: atomic single-file writes (`realm_tf.io.atomic`) and
the work-directory layout (`realm_tf.io.work_dir`)."""
