"""File input/output shared by every stage: atomic single-file writes (`realm_tf.io.atomic`),
atomic directory publishing (`realm_tf.io.publish`) and the work-directory layout
(`realm_tf.io.work_dir`)."""
