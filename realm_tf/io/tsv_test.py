"""Tests of realm_tf.io.tsv: rows as csv.reader reads them, a stray quote kept to its line."""
import csv
import io

from realm_tf.io import tsv


def _lines(text: str):
  return list(enumerate(io.StringIO(text, newline=""), start=1))


def test_well_formed_rows_are_csv_readers_rows_with_their_first_lines():
  out = io.StringIO()
  writer = csv.writer(out, delimiter="\t", lineterminator="\n")
  rows = [["1", 'He said "hi".', "T1"], ["2", "two\nlines", "T2"], ["3", "three\n\nlines", "T3"],
          ["4", "last", "T4"]]
  writer.writerows(rows)
  text = out.getvalue()
  assert list(csv.reader(io.StringIO(text), delimiter="\t")) == rows
  assert list(tsv.rows(_lines(text))) == [(1, rows[0]), (2, rows[1]), (4, rows[2]),
                                          (7, rows[3])]


def test_a_stray_quote_is_its_own_line_and_the_rows_after_it_are_kept():
  text = '1\t"never closed\tT1\n2\ttwo\tT2\n3\tthree\tT3\n4\t"x" y\tT4\n5\tfive\tT5\n'
  # csv.reader swallows the lines after the stray quote into one cell, up to the next quote ...
  assert next(csv.reader(io.StringIO(text), delimiter="\t")) == [
      "1", 'never closed\tT1\n2\ttwo\tT2\n3\tthree\tT3\n4\tx" y', "T4"]
  # ... rows reads the broken line alone and goes on.
  assert list(tsv.rows(_lines(text))) == [
      (1, ["1", "never closed\tT1"]), (2, ["2", "two", "T2"]), (3, ["3", "three", "T3"]),
      (4, ["4", "x y", "T4"]), (5, ["5", "five", "T5"])]
  # A well-formed row spanning lines that the caller does not accept is read line by line too.
  text = '1\t"a\nb"\tT\n2\tc\tT\n'
  assert list(tsv.rows(_lines(text), accept=lambda cells: cells[1] != "a\nb")) == [
      (1, ["1", "a"]), (2, ['b"', "T"]), (3, ["2", "c", "T"])]


def test_two_stray_quotes_do_not_swallow_the_rows_between_them():
  """Two stray quotes make a span csv's strict mode reads as one well-formed row whose cells the
  caller may accept (here a DPR question and an answer list), swallowing the questions between
  them; each line that is a row by itself is kept instead."""
  text = ('"\t[\'Jane Austen\']\nwhat is the capital of france\t[\'Paris\']\n'
          '"\t[\'Leonardo da Vinci\']\nhow tall is everest\t[\'8,849 m\']\n')
  def accept(cells):
    return len(cells) == 2 and cells[1].startswith("[")
  swallowed = next(csv.reader(io.StringIO(text), delimiter="\t"))
  assert accept(swallowed) and "what is the capital of france" in swallowed[0]
  got = [cells for _, cells in tsv.rows(_lines(text), accept=accept)]
  assert ["what is the capital of france", "['Paris']"] in got
  assert ["how tall is everest", "['8,849 m']"] in got
  # A legitimate span (a passage over three lines) is still one row.
  text = '1\t"a\n\nb c"\tT\n2\tc\tT\n'
  assert list(tsv.rows(_lines(text), accept=lambda cells: len(cells) == 3)) == [
      (1, ["1", "a\n\nb c", "T"]), (4, ["2", "c", "T"])]


def test_a_cell_over_the_field_limit_is_an_error_row_and_reading_goes_on():
  limit = csv.field_size_limit()
  try:
    csv.field_size_limit(100)
    text = "1\t" + "x" * 200 + "\tT\n" + "2\tok\tT\n"
    got = list(tsv.rows(_lines(text)))
    assert got[0][0] == 1 and isinstance(got[0][1], csv.Error)
    assert got[1:] == [(2, ["2", "ok", "T"])]
  finally:
    csv.field_size_limit(limit)
