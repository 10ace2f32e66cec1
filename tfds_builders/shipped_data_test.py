"""Each open-QA builder built from the files shipped in the project: ORQA's published split
counts come out exactly, every example is well formed, and the shipped files match their
registered checksums.

`nq_open_orqa` (config `orqa`) ships no NQ-open.train.jsonl, so only the 3,610 test questions
ORQA/REALM report are built (with a warning); the shipped DPR-style file's split (7,920 / 837)
is checked by openqa_common_test and, through TFDS, by the dummy `dpr` test.
"""
import pytest

from tfds_builders import builder_testing

# (builder, ORQA's published split counts, answers are regular expressions)
SHIPPED = [
    ("curated_trec_orqa", {"train": 1353, "dev": 133, "test": 694}, True),
    ("nq_open_orqa", {"test": 3610}, False),
    ("web_questions_orqa", {"train": 3417, "dev": 361, "test": 2032}, False),
]
_IDS = [name for name, _, _ in SHIPPED]


@pytest.mark.parametrize("name,splits,regex", SHIPPED, ids=_IDS)
def test_split_counts_are_exact(shipped_data, name, splits, regex):
  del regex
  builder_testing.check_split_counts_are_exact(shipped_data(name), splits)


@pytest.mark.parametrize("name,splits,regex", SHIPPED, ids=_IDS)
def test_examples_are_well_formed(shipped_data, name, splits, regex):
  builder_testing.check_examples_are_well_formed(shipped_data(name), splits, regex)


@pytest.mark.parametrize("name", _IDS)
def test_shipped_files_match_checksums(name):
  builder_testing.check_shipped_files_match_checksums(name)
