"""CuratedTREC with ORQA's train/dev/test splits (TFDS builder `curated_trec_orqa`)."""
