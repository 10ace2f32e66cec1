"""NaturalQuestions-Open with ORQA's train/dev/test splits (TFDS builder `nq_open_orqa`)."""
