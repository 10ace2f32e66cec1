"""Fixtures shared by the tests: generated corpora and small models (no test logic here)."""
