"""Evaluation of retrieval quality: zero-shot recall@k on masked sentences and SQuAD-open."""
