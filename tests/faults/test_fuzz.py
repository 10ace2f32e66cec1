"""Fuzzed input (benchmarks/faults/fuzz.py) at the fast subset's size: mutated corpus files,
question files and gRPC request protos, each case checked (no traceback, no hang, one-line skips
naming the file, unmutated records kept), and every file format given the full case count."""
from benchmarks.faults import FaultConfig
from benchmarks.faults import fuzz


def test_fuzzed_files_and_requests_are_refused_cleanly(tmp_path):
  config = FaultConfig.fast(str(tmp_path))
  rows = fuzz.run(config)
  assert [r.fault.split(":")[0] for r in rows] == ["corpus files", "question files",
                                                   "gRPC PredictRequest protos"]
  for row in rows:
    assert row.survived, (row.fault, row.reason, row.figures)
    assert row.failures == 0
  corpus, questions, protos = rows
  for row, formats in ((corpus, fuzz.LINE_FORMATS + fuzz.WHOLE_FORMATS),
                       (questions, fuzz.QUESTION_FORMATS)):
    per_format = row.figures["per_format"]
    assert set(per_format) == set(formats)
    # Each parser gets the full count (not the row's count shared out between the formats).
    assert {f: s["cases"] for f, s in per_format.items()} == dict.fromkeys(
        formats, config.fuzz_cases)
    assert row.tries == config.fuzz_cases * len(formats)
    assert row.figures["records_unmutated"] > row.tries  # several per case
    assert row.figures["records_kept"] == row.figures["records_unmutated"]
    assert row.figures["skips"] > 0
    assert sum(s["records_kept"] for s in per_format.values()) == row.figures["records_kept"]
    for fmt in fuzz.LINE_FORMATS if row is corpus else formats:  # record-level formats
      assert per_format[fmt]["records_kept"] == per_format[fmt]["records_unmutated"] > 0, fmt
  assert protos.tries == protos.figures["cases"] == config.fuzz_cases
  assert sum(protos.figures["statuses"].values()) == config.fuzz_cases
  assert protos.figures["statuses"].get("INVALID_ARGUMENT", 0) > 0


def test_full_run_fuzzes_every_parser_at_least_a_thousand_times():
  """The matrix's own settings (`python -m benchmarks.fault_bench --groups=fuzz`): >= 1,000 cases
  for each corpus format, each question format and the gRPC decoder."""
  assert FaultConfig().fuzz_cases >= 1000
