"""WebQuestions with ORQA's train/dev/test splits (TFDS builder `web_questions_orqa`)."""
