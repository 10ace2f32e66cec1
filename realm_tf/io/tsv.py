"""Tab-separated rows read as Python's csv reads a file, streamed, with their line numbers.

The field's TSV files (DPR's `psgs_w100.tsv`, its `*.qa.csv` question files) are written and
read with Python's csv (`csv.reader(f, delimiter="\t")`): a cell that starts with `"` is quoted,
`""` inside it is one `"`, and a quoted cell may hold line breaks, so one row may span lines.
`rows` reads them so, one row in memory at a time, naming the line each row starts on.

One thing differs from csv.reader, and only for broken input: a stray `"` (a cell that opens a
quote and never closes it where a row could end) makes csv.reader swallow the lines after it into
one cell. `rows` keeps a row that spans lines only when it is well-formed, as csv's strict mode
reads it (every quote closed, each closing quote followed by a tab or the line's end), the
caller's `accept` takes its cells, and no line strictly inside it is, read alone, a row of
several cells `accept` takes (two stray quotes make a well-formed span that swallows the rows
between them);
otherwise the row's first line is read alone, as a one-line row, and reading goes on at its
second line, so one broken row never costs the rows after it.
"""
import collections
import csv
from typing import Callable, Deque, Iterable, Iterator, List, Sequence, Tuple, Union

Line = Tuple[int, str]  # (1-based line number, text ending in "\n" except perhaps the last)
Row = Union[List[str], csv.Error]


class _Feed:
  """The text of `lines` for csv.reader, noting the lines the current row took (`row`) and able
  to hand lines back (`push_back`) to be read again."""

  def __init__(self, lines: Iterable[Line]):
    self._lines = iter(lines)
    self._back: Deque[Line] = collections.deque()
    self.row: List[Line] = []

  def __iter__(self):
    return self

  def __next__(self) -> str:
    line = self._back.popleft() if self._back else next(self._lines)
    self.row.append(line)
    return line[1]

  def push_back(self, lines: Sequence[Line]) -> None:
    self._back.extendleft(reversed(lines))


def _one_line(text: str, delimiter: str) -> Row:
  """The cells of one line read alone (its line end dropped), or the csv.Error it raises."""
  text = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
  try:
    return next(csv.reader([text], delimiter=delimiter), [])
  except csv.Error as e:
    return e


def _well_formed(lines: Sequence[Line], cells: Row, accept, delimiter: str) -> bool:
  """Whether a row read over several lines is one csv's strict mode reads the same way and the
  caller accepts."""
  if isinstance(cells, csv.Error):
    return False
  try:
    strict = list(csv.reader([text for _, text in lines], delimiter=delimiter, strict=True))
  except csv.Error:
    return False
  if strict != [cells] or not accept(cells):
    return False
  # A line strictly inside the span (neither the one that opens the quote nor the one that
  # closes it) that is by itself a row of several cells the caller accepts was swallowed by a
  # stray quote: two stray quotes make a well-formed span over the rows between them.
  return not any(isinstance(alone, list) and len(alone) > 1 and accept(alone)
                 for alone in (_one_line(text, delimiter) for _, text in lines[1:-1]))


def rows(lines: Iterable[Line], accept: Callable[[List[str]], bool] = lambda cells: True,
         delimiter: str = "\t") -> Iterator[Tuple[int, Row]]:
  """(line the row starts on, its cells or the csv.Error csv raised for it) for each row of
  `lines`, (line number, text with its line end) pairs, as csv.reader reads the file; a row
  that spans lines is kept only when well-formed and `accept`ed (see the module docstring). A
  blank line is a row of no cells. csv's field size limit applies to every cell."""
  feed = _Feed(lines)
  reader = csv.reader(feed, delimiter=delimiter)
  while True:
    feed.row = []
    try:
      cells: Row = next(reader)
    except StopIteration:
      return
    except csv.Error as e:
      cells = e
    taken = feed.row
    if not taken:
      continue
    if len(taken) > 1 and not _well_formed(taken, cells, accept, delimiter):
      feed.push_back(taken[1:])
      cells = _one_line(taken[0][1], delimiter)
    yield taken[0][0], cells
