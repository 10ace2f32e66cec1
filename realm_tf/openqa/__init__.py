"""Open-domain QA: metrics (EM, regex, recall@k), dataset loading, model, fine-tuning, eval."""
