"""Open-domain QA: metrics (EM, regex match, recall@k), dataset loading, model, fine-tuning, eval."""
