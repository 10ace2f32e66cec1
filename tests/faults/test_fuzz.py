"""Fuzzed input (benchmarks/faults/fuzz.py) at the fast subset's size: mutated corpus files,
question files and gRPC request protos, each case checked (no traceback, no hang, one-line skips
naming the file, unmutated records kept)."""
from benchmarks.faults import FaultConfig
from benchmarks.faults import fuzz


def test_fuzzed_files_and_requests_are_refused_cleanly(tmp_path):
  config = FaultConfig.fast(str(tmp_path))
  rows = fuzz.run(config)
  assert [r.fault.split(":")[0] for r in rows] == ["corpus files", "question files",
                                                   "gRPC PredictRequest protos"]
  for row in rows:
    assert row.survived, (row.fault, row.reason, row.figures)
    assert row.tries == config.fuzz_cases and row.failures == 0
  corpus, questions, protos = rows
  assert set(corpus.figures["per_format"]) == set(fuzz.LINE_FORMATS + fuzz.WHOLE_FORMATS)
  assert set(questions.figures["per_format"]) == set(fuzz.QUESTION_FORMATS)
  for row in (corpus, questions):
    assert row.figures["records_unmutated"] > config.fuzz_cases  # several per case
    assert row.figures["records_kept"] == row.figures["records_unmutated"]
    assert row.figures["skips"] > 0
  assert sum(protos.figures["statuses"].values()) == config.fuzz_cases
  assert protos.figures["statuses"].get("INVALID_ARGUMENT", 0) > 0
