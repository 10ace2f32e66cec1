"""TFDS builder `curated_trec_orqa`: CuratedTREC with ORQA's train/dev/test splits.

Source: DrQA's `CuratedTrec-{train,test}.txt` (JSON lines `{"question": ..., "answer": [regex]}`).
Every answer is a regular expression, matched case-insensitively at the start of the predicted
answer (`re.match`, see `realm_tf.openqa.metrics.regex_match`); each example carries
`answers_are_regex = True` and the dataset metadata says so too. Splits (ORQA / REALM): train
1,353, dev 133 (hash rule of `tfds_builders.openqa_common`), test 694. One train pattern ends in
a lone backslash and does not compile; it is kept verbatim, with a warning, and never matches.

Offline: put `CuratedTrec-train.txt` and `CuratedTrec-test.txt` (or `.gz` copies) in
`manual_dir`; the project ships them in `tfds_builders/curated_trec_orqa/data/`.
"""
from tfds_builders import openqa_common

# DrQA's data files as committed in CfaBotTeam/stanford (data/datasets/) at commit b6c09791 (only
# the abbreviated id is recorded, by the provenance note of the shipped copies; GitHub resolves
# abbreviated commit ids). The sha256 sums in checksums.tsv are those of the shipped copies, so a
# download that differs fails TFDS's checksum check rather than building different data.
_BASE_URL = "https://raw.githubusercontent.com/CfaBotTeam/stanford/b6c09791/data/datasets/"


class Builder(openqa_common.OrqaTrainTestBuilder):
  """CuratedTREC (Baudis & Sedivy, 2015), answers as regular expressions, ORQA's splits."""

  TRAIN_FILE = "CuratedTrec-train.txt"
  TEST_FILE = "CuratedTrec-test.txt"
  TRAIN_URL = _BASE_URL + TRAIN_FILE
  TEST_URL = _BASE_URL + TEST_FILE
  ANSWERS_ARE_REGEX = True
  HOMEPAGE = "https://github.com/brmson/dataset-factoid-curated"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Optional (offline use). Place CuratedTrec-train.txt and CuratedTrec-test.txt, DrQA's
  JSON-lines files (plain or .gz), in manual_dir. The project ships them in
  tfds_builders/curated_trec_orqa/data/. Without a manual_dir holding files the builder
  downloads them from the pinned URLs in checksums.tsv.
  """
