"""Readers of raw documents with bad-input reports: JSONL, SQuAD JSON, WikiText raw, plain text,
and the open-QA field's corpus files (DPR's `psgs_w100.tsv`, BEIR's `corpus.jsonl`, Pyserini's
`{"id", "contents"}` JSON lines), read as they are: no conversion script.

Every reader yields `Document`s and, for records it cannot use, `BadRecord`s naming the file, the
1-based line and the kind of problem, so a pipeline can count and report them and go on with the
rest of the corpus (or stop at the first one in strict mode). Kinds:

- `malformed_json`: a JSONL line or a SQuAD file that is not valid JSON (record skipped);
- `malformed_record`: valid JSON without the expected fields (skipped);
- `non_utf8`: bytes that are not UTF-8 (the line, or the whole SQuAD file, is skipped);
- `empty_document`: no text (skipped);
- `oversized_document`: text of `max_document_bytes` (default 1,000,000) bytes or more (skipped);
- `bad_title`: a title containing tabs, newlines or other control characters (the title's white
  space is collapsed and the document is kept);
- `duplicate_doc_id`: raised later by the corpus builder when two documents share an id;
- `unreadable_file`: a compressed stream that fails part way (the documents before the damage are
  kept, the rest of the file is skipped).

Document ids are deterministic: JSONL `id` field (else `<file name>:<line>`), SQuAD
`<article title>#<paragraph index>`, WikiText the article title, plain text the file name, DPR TSV
the `id` column, BEIR `_id`, Pyserini `id`.

The field's formats (`FORMATS`; `auto` detects each file by its content, never by its name alone):

- `dpr_tsv`: `id \t text \t title` rows, as DPR's `psgs_w100.tsv`; detected by its header row
  `id\ttext\ttitle` (a file without it needs `dpr_tsv` named). Rows are read as DPR reads them
  (Python's csv over the file, tab-delimited: a cell that starts with `"` is quoted, may span
  lines, and `""` inside becomes `"`), streamed a row at a time (`realm_tf.io.tsv`); then the
  text loses its surrounding quotes (DPR's `strip('"')`); the header row is skipped wherever it
  appears; a row of other than 3 cells is a `malformed_record` at the line where it starts.
- `beir`: BEIR's `corpus.jsonl`, `{"_id", "title", "text"}`; detected by `_id` with `text` and no
  `id`; a null title reads as "".
- `pyserini`: `{"id", "contents"}` (Pyserini's JsonCollection); the contents are the text and the
  title is empty (Pyserini's own default, one `text` field); detected by `contents` without `text`.
- `pyserini_title`: the same with `contents` = `title\ntext`, Pyserini's DPR-Wikipedia corpora
  (what its `--fields title text` reads): the first line is the title, the rest the text, each
  losing surrounding quotes and doubled `""` as a DPR TSV cell does. Detected only where the first
  record shows that convention plainly: its contents are two lines and the first is in quotes
  (`"Aaron"\nAaron Aaron ...`); otherwise name it.

Every format reads a file that starts with a UTF-8 byte order mark (the mark is dropped) and
lines that end in `\r\n` as one that does not.
"""
import csv
import dataclasses
import gzip
import io
import json
import os
import re
import zlib
from typing import BinaryIO, Iterator, Optional, Union

import tensorflow as tf

from realm_tf.io import tsv

FORMATS = ("jsonl", "squad", "wikitext", "text", "dpr_tsv", "beir", "pyserini", "pyserini_title")
# What a format setting may name: a format, or "auto" (detect it per file; None means the same).
FORMAT_CHOICES = ("auto", *FORMATS)
MAX_DOCUMENT_BYTES = 1_000_000
BAD_KINDS = ("malformed_json", "malformed_record", "non_utf8", "empty_document",
             "oversized_document", "bad_title", "duplicate_doc_id", "unreadable_file")
# A damaged compressed stream: the records read before the damage are kept, the rest of the file
# is one `unreadable_file` record.
_DAMAGED_STREAM = (EOFError, zlib.error, gzip.BadGzipFile)

_WIKITEXT_TITLE = re.compile(r"^ = ([^=].*?) = $")
_WIKITEXT_SECTION = re.compile(r"^ (= )+.*?( =)+ $")
_WIKITEXT_UNESCAPE = ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."))
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
DPR_TSV_HEADER = ("id", "text", "title")
# Pyserini's DPR-Wikipedia contents: a quoted title line, then the text (one more line).
_PYSERINI_TITLE = re.compile(r'^"[^\n]*"\n[^\n]*$')


@dataclasses.dataclass(frozen=True)
class Document:
  """One document: deterministic id, title, text, and where it came from (file, 1-based line)."""
  doc_id: str
  title: str
  text: str
  source: str
  line: int


@dataclasses.dataclass(frozen=True)
class BadRecord:
  """A record that was skipped or repaired: file, 1-based line, kind (see BAD_KINDS), detail."""
  source: str
  line: int
  kind: str
  message: str

  def __str__(self):
    return f"{self.source}:{self.line}: {self.kind}: {self.message}"

  def to_json(self) -> str:
    """One JSON line for the bad-records report."""
    return json.dumps(dataclasses.asdict(self), ensure_ascii=False, sort_keys=True)


class BadInputError(ValueError):
  """Strict mode: the first bad record stops the run; the message names file, line and kind."""

  def __init__(self, record: BadRecord):
    super().__init__(f"Bad input (strict mode): {record}")
    self.record = record


Item = Union[Document, BadRecord]


def _strip_gz(path: str) -> str:
  return path[:-3] if path.endswith(".gz") else path


def _json_lines_kind(line: str) -> Optional[str]:
  """The JSON-lines format one record shows (jsonl, beir, pyserini, pyserini_title), or None."""
  try:
    rec = json.loads(line)
  except (json.JSONDecodeError, RecursionError):
    return None
  if not isinstance(rec, dict):
    return None
  if "text" not in rec and isinstance(rec.get("contents"), str):
    return "pyserini_title" if _PYSERINI_TITLE.match(rec["contents"]) else "pyserini"
  if "text" in rec and "_id" in rec and "id" not in rec:
    return "beir"
  return "jsonl" if "text" in rec else None


def detect_format(path: str, head: bytes = b"") -> str:
  """Guesses the format from the file's first bytes (`head`) and its name."""
  name = _strip_gz(os.path.basename(path)).lower()
  text = _without_bom(head.decode("utf-8", "replace"))
  lines = text.split("\n")
  if tuple(lines[0].rstrip("\r").split("\t")) == DPR_TSV_HEADER:
    return "dpr_tsv"
  stripped = text.lstrip()
  first = stripped.split("\n", 1)
  kind = _json_lines_kind(first[0]) if len(first) == 2 or name.endswith(
      (".jsonl", ".ndjson")) else None  # a whole first line: one JSON object shows the format
  if name.endswith((".jsonl", ".ndjson")):
    return kind or "jsonl"
  if name.endswith(".json") or stripped.startswith("{"):
    if kind:
      return kind
    if re.search(r'"(data|paragraphs|context)"\s*:', text):
      return "squad"
    return "jsonl"
  for line in lines[:50]:
    if _WIKITEXT_TITLE.match(line.rstrip("\r")):
      return "wikitext"
  return "text"


def open_path(path: str) -> BinaryIO:
  """Opens a local or tf.io.gfile path for binary reading, un-gzipping `*.gz`."""
  f = tf.io.gfile.GFile(path, "rb")
  if path.endswith(".gz"):
    return gzip.GzipFile(fileobj=f, mode="rb")
  return f


def clean_title(title: str, source: str, line: int):
  """(title with white space collapsed, BadRecord or None when it held tabs/newlines/controls)."""
  if _CONTROL.search(title):
    fixed = " ".join(_CONTROL.sub(" ", title).split())
    return fixed, BadRecord(source, line, "bad_title",
                            f"title {title[:80]!r} has tabs, newlines or control characters; "
                            f"kept as {fixed[:80]!r}")
  return title.strip(), None


def check_document(doc: Document, max_document_bytes: int = MAX_DOCUMENT_BYTES
                   ) -> Optional[BadRecord]:
  """The BadRecord for a document that must be skipped (empty, oversized, unencodable), else None."""
  try:
    size = len(doc.text.encode("utf-8"))
    doc.title.encode("utf-8")
  except UnicodeEncodeError as e:
    return BadRecord(doc.source, doc.line, "non_utf8", f"document {doc.doc_id!r}: {e}")
  if not doc.text.strip():
    return BadRecord(doc.source, doc.line, "empty_document", f"document {doc.doc_id!r} has no text")
  if size >= max_document_bytes:
    return BadRecord(doc.source, doc.line, "oversized_document",
                     f"document {doc.doc_id!r} has {size} bytes (limit {max_document_bytes - 1})")
  return None


def _finish(doc: Document, max_document_bytes: int) -> Iterator[Item]:
  title, bad = clean_title(doc.title, doc.source, doc.line)
  if bad:
    yield bad
    doc = dataclasses.replace(doc, title=title)
  elif title != doc.title:
    doc = dataclasses.replace(doc, title=title)
  bad = check_document(doc, max_document_bytes)
  yield bad if bad else doc


def _without_bom(text: str) -> str:
  """`text` without a leading UTF-8 byte order mark (Windows editors write one)."""
  return text[1:] if text.startswith("\ufeff") else text


def _decode_lines(stream: BinaryIO, source: str, keep_ends: bool = False
                  ) -> Iterator[Union[tuple, BadRecord]]:
  """(line number, text) per line, or a non_utf8 BadRecord for an undecodable line. The file's
  byte order mark is dropped; a line's end (`\n` or `\r\n`) is dropped too, or with
  `keep_ends` kept as `\n` (as Python's text mode reads it)."""
  for n, raw in enumerate(stream, start=1):
    try:
      text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
      yield BadRecord(source, n, "non_utf8", f"byte {e.start}: {e.reason}")
      continue
    text = _without_bom(text) if n == 1 else text
    if keep_ends and text.endswith("\n"):
      yield n, (text[:-2] + "\n" if text.endswith("\r\n") else text)
    else:
      yield n, text.rstrip("\r\n")


def _record_lines(stream: BinaryIO, source: str) -> Iterator[Union[tuple, BadRecord]]:
  """`_decode_lines` without blank lines: the lines of a one-record-a-line format."""
  for item in _decode_lines(stream, source):
    if isinstance(item, BadRecord) or item[1].strip():
      yield item


def _read_json_lines(stream: BinaryIO, source: str, max_document_bytes: int, to_document
                     ) -> Iterator[Item]:
  """Documents of a JSON-lines file: `to_document(record, line)` gives a Document, or a string
  saying why the record is a malformed_record. Blank lines are ignored."""
  for item in _record_lines(stream, source):
    if isinstance(item, BadRecord):
      yield item
      continue
    n, line = item
    try:
      rec = json.loads(line)
    except json.JSONDecodeError as e:
      yield BadRecord(source, n, "malformed_json", f"column {e.colno}: {e.msg}")
      continue
    except RecursionError:
      yield BadRecord(source, n, "malformed_json", "values nested too deeply to parse")
      continue
    doc = to_document(rec, n) if isinstance(rec, dict) else "expected a JSON object"
    if isinstance(doc, str):
      yield BadRecord(source, n, "malformed_record", doc)
    else:
      yield from _finish(doc, max_document_bytes)


def _id_of(value) -> Optional[str]:
  """A record's id as a string (a string or an integer id), or None when it has none."""
  if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
    return None
  return str(value)


def read_jsonl(stream: BinaryIO, source: str, max_document_bytes: int = MAX_DOCUMENT_BYTES
               ) -> Iterator[Item]:
  """`{"title", "text"[, "id"]}` per line; blank lines are ignored."""
  base = os.path.basename(source)

  def to_document(rec, n):
    if not isinstance(rec.get("text"), str) or not isinstance(rec.get("title", ""), str):
      return 'expected an object with a string "text" (and optional string "title")'
    doc_id = str(rec["id"]) if rec.get("id") not in (None, "") else f"{base}:{n}"
    return Document(doc_id, rec.get("title", ""), rec["text"], source, n)

  return _read_json_lines(stream, source, max_document_bytes, to_document)


def read_beir(stream: BinaryIO, source: str, max_document_bytes: int = MAX_DOCUMENT_BYTES
              ) -> Iterator[Item]:
  """BEIR's `corpus.jsonl`: `{"_id", "title", "text"}` per line; the doc id is `_id`."""

  def to_document(rec, n):
    doc_id, title = _id_of(rec.get("_id")), rec.get("title")
    if doc_id is None or not isinstance(rec.get("text"), str) or \
        not isinstance(title, (str, type(None))):
      return ('expected a BEIR corpus object: "_id" (a string or an integer), a string "text" '
              'and a string (or null) "title"')
    return Document(doc_id, title or "", rec["text"], source, n)

  return _read_json_lines(stream, source, max_document_bytes, to_document)


def _unquote_cell(cell: str) -> str:
  """A DPR TSV cell's value: a quoted cell loses its quotes and `""` becomes `"` (csv's rule);
  then any surrounding quotes go (DPR's `strip('"')`)."""
  if len(cell) >= 2 and cell[0] == cell[-1] == '"':
    cell = cell[1:-1].replace('""', '"')
  return cell.strip('"')


def _read_pyserini(stream: BinaryIO, source: str, max_document_bytes: int, split_title: bool
                   ) -> Iterator[Item]:
  def to_document(rec, n):
    doc_id, contents = _id_of(rec.get("id")), rec.get("contents")
    if doc_id is None or not isinstance(contents, str):
      return 'expected a Pyserini object: "id" (a string or an integer) and a string "contents"'
    title, text = "", contents
    if split_title and "\n" in contents:
      title, text = contents.split("\n", 1)
      title, text = _unquote_cell(title), _unquote_cell(text)
    return Document(doc_id, title, text, source, n)

  return _read_json_lines(stream, source, max_document_bytes, to_document)


def read_pyserini(stream: BinaryIO, source: str, max_document_bytes: int = MAX_DOCUMENT_BYTES
                  ) -> Iterator[Item]:
  """Pyserini's `{"id", "contents"}` per line: the contents are the text, the title is empty."""
  return _read_pyserini(stream, source, max_document_bytes, split_title=False)


def read_pyserini_title(stream: BinaryIO, source: str,
                        max_document_bytes: int = MAX_DOCUMENT_BYTES) -> Iterator[Item]:
  """Pyserini's DPR-Wikipedia `{"id", "contents": "title\\ntext"}`: the first line of the
  contents is the title, the rest the text, each unquoted as a DPR TSV cell."""
  return _read_pyserini(stream, source, max_document_bytes, split_title=True)


def read_dpr_tsv(stream: BinaryIO, source: str, max_document_bytes: int = MAX_DOCUMENT_BYTES
                 ) -> Iterator[Item]:
  """DPR's passages TSV (`psgs_w100.tsv`): `id \t text \t title` rows; see the module docstring.

  Rows are read as csv.reader reads the file (a quoted cell may span lines; a row that would
  span lines but is not a well-formed row of three cells is its first line alone, so a stray
  quote does not swallow the rows after it), one row in memory at a time; a row's line is the
  one it starts on. The doc id is the id column.
  """
  # csv refuses cells over its field limit (131,072 characters by default); documents up to
  # max_document_bytes are this module's to accept or report, so the limit is raised to that.
  csv.field_size_limit(max(csv.field_size_limit(), max_document_bytes))
  for n, cells in _csv_rows(stream, source):
    if isinstance(cells, BadRecord):
      yield cells
      continue
    if isinstance(cells, csv.Error):
      yield BadRecord(source, n, "malformed_record", f"not a TSV row ({cells})")
      continue
    if tuple(cells) == DPR_TSV_HEADER or not any(cell.strip() for cell in cells):
      continue  # the header row, blank lines
    if not _dpr_row(cells):
      yield BadRecord(source, n, "malformed_record",
                      f"expected 3 tab-separated cells (id, text, title) with an id, got "
                      f"{len(cells)} cell{'s' if len(cells) != 1 else ''}"
                      f"{'' if len(cells) != 3 else ' and an empty id'}")
      continue
    doc_id, text, title = cells
    yield from _finish(Document(doc_id, title, text.strip('"'), source, n), max_document_bytes)


def _dpr_row(cells) -> bool:
  """Whether cells make a DPR TSV row: three, with an id."""
  return len(cells) == 3 and bool(cells[0].strip())


def _csv_rows(stream: BinaryIO, source: str) -> Iterator[tuple]:
  """(line the row starts on, its cells or the csv.Error it raised) for each tab-separated row
  of `stream` as csv.reader reads the file (`realm_tf.io.tsv.rows`: a quoted cell may span lines
  in a well-formed DPR row), with (line, BadRecord) for each undecodable line, which csv never
  sees, before the row it falls in. Streams: one row in memory at a time."""
  bad = []

  def decoded():
    for item in _decode_lines(stream, source, keep_ends=True):
      if isinstance(item, BadRecord):
        bad.append(item)
      else:
        yield item

  for n, row in tsv.rows(decoded(), accept=_dpr_row):
    for record in bad:
      yield record.line, record
    bad.clear()
    yield n, row
  for record in bad:
    yield record.line, record


def _line_of(data: bytes, pos: int) -> int:
  return data.count(b"\n", 0, pos) + 1


def read_squad(stream: BinaryIO, source: str, max_document_bytes: int = MAX_DOCUMENT_BYTES
               ) -> Iterator[Item]:
  """Each paragraph of a SQuAD JSON file is a document titled by its article."""
  data = stream.read()
  try:
    text = _without_bom(data.decode("utf-8"))
  except UnicodeDecodeError as e:
    yield BadRecord(source, _line_of(data, e.start), "non_utf8",
                    f"byte {e.start}: {e.reason}; SQuAD file skipped")
    return
  try:
    root = json.loads(text)
  except json.JSONDecodeError as e:
    yield BadRecord(source, e.lineno, "malformed_json", f"column {e.colno}: {e.msg}; "
                    "SQuAD file skipped")
    return
  except RecursionError:
    yield BadRecord(source, 1, "malformed_json", "values nested too deeply to parse; SQuAD "
                    "file skipped")
    return
  if not isinstance(root, dict) or not isinstance(root.get("data"), list):
    yield BadRecord(source, 1, "malformed_record", 'SQuAD JSON lacks a "data" list')
    return
  # Line numbers: find each context string in order in the raw text (best effort).
  cursor, line, counted = 0, 1, 0
  for article in root["data"]:
    title = str(article.get("title", "")) if isinstance(article, dict) else ""
    paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
    if not isinstance(paragraphs, list):
      yield BadRecord(source, _line_of(data, cursor), "malformed_record",
                      f'article {title!r} lacks a "paragraphs" list')
      continue
    for i, para in enumerate(paragraphs):
      context = para.get("context") if isinstance(para, dict) else None
      pos = text.find('"context"', cursor)
      cursor = pos + 1 if pos >= 0 else cursor
      line += text.count("\n", counted, cursor)
      counted = cursor
      if not isinstance(context, str):
        yield BadRecord(source, line, "malformed_record",
                        f'paragraph {i} of {title!r} lacks a string "context"')
        continue
      doc = Document(f"{title}#{i}", title.replace("_", " "), context, source, line)
      yield from _finish(doc, max_document_bytes)


def _unescape_wikitext(line: str) -> str:
  for a, b in _WIKITEXT_UNESCAPE:
    line = line.replace(a, b)
  return line.strip()


def read_wikitext(stream: BinaryIO, source: str, max_document_bytes: int = MAX_DOCUMENT_BYTES
                  ) -> Iterator[Item]:
  """WikiText raw: ` = Title = ` starts an article, ` = = Section = = ` lines are dropped."""
  title, start, paragraphs = None, 0, []
  seen = {}

  def flush():
    if title is None:
      return
    k = seen.get(title, 0)
    seen[title] = k + 1
    doc_id = title if k == 0 else f"{title}#{k}"
    yield from _finish(Document(doc_id, title, "\n".join(paragraphs), source, start),
                       max_document_bytes)

  for item in _decode_lines(stream, source):
    if isinstance(item, BadRecord):
      yield item
      continue
    n, line = item
    m = _WIKITEXT_TITLE.match(line)
    if m:
      yield from flush()
      title, start, paragraphs = m.group(1).strip(), n, []
    elif _WIKITEXT_SECTION.match(line) or not line.strip():
      continue
    elif title is not None:
      paragraphs.append(_unescape_wikitext(line))
  yield from flush()


def read_text(stream: BinaryIO, source: str, max_document_bytes: int = MAX_DOCUMENT_BYTES
              ) -> Iterator[Item]:
  """A plain text file is one document titled by its file name (without extensions)."""
  base = os.path.basename(source)
  title = _strip_gz(base)
  title = os.path.splitext(title)[0] if "." in title else title
  lines = []
  for item in _decode_lines(stream, source):
    if isinstance(item, BadRecord):
      yield item
    else:
      lines.append(item[1])
  yield from _finish(Document(base, title.replace("_", " "), "\n".join(lines), source, 1),
                     max_document_bytes)


class _Prefixed(io.RawIOBase):
  """A binary stream of `head` followed by the rest of `stream` (format sniffing reads ahead)."""

  def __init__(self, head: bytes, stream: BinaryIO):
    super().__init__()
    self._head, self._stream = head, stream

  def readable(self):
    return True

  def readinto(self, buffer):
    if self._head:
      n = min(len(buffer), len(self._head))
      buffer[:n] = self._head[:n]
      self._head = self._head[n:]
      return n
    data = self._stream.read(len(buffer))
    buffer[:len(data)] = data
    return len(data)


_READERS = {"jsonl": read_jsonl, "squad": read_squad, "wikitext": read_wikitext,
            "text": read_text, "dpr_tsv": read_dpr_tsv, "beir": read_beir,
            "pyserini": read_pyserini, "pyserini_title": read_pyserini_title}


def parse_stream(stream: BinaryIO, source: str, fmt: Optional[str] = None,
                 max_document_bytes: int = MAX_DOCUMENT_BYTES) -> Iterator[Item]:
  """Documents and BadRecords of one (already decompressed) binary stream named `source`.

  A stream whose decompression fails part way (a damaged or truncated `.gz`) ends with one
  `unreadable_file` BadRecord after the records read before the damage.
  """
  if fmt not in (None, "", "auto") and fmt not in _READERS:
    raise ValueError(f"Unknown document format {fmt!r} for {source}; expected one of {FORMATS}.")
  try:
    head = stream.read(8192)
  except _DAMAGED_STREAM as e:
    return iter([_unreadable(source, 1, e)])
  if fmt in (None, "", "auto"):
    fmt = detect_format(source, head)
  stream = io.BufferedReader(_Prefixed(head, stream), buffer_size=1 << 20)
  return _until_damaged(_READERS[fmt](stream, source, max_document_bytes), source)


def _unreadable(source: str, line: int, error: BaseException) -> BadRecord:
  return BadRecord(source, line, "unreadable_file",
                   f"damaged compressed stream ({type(error).__name__}: {error}); the rest of "
                   "the file is skipped")


def _until_damaged(items: Iterator[Item], source: str) -> Iterator[Item]:
  """`items`, ending with an `unreadable_file` record where the stream under them fails."""
  line = 0
  try:
    for item in items:
      line = max(line, item.line)
      yield item
  except _DAMAGED_STREAM as e:
    yield _unreadable(source, line + 1, e)


def read_documents(path: str, fmt: Optional[str] = None,
                   max_document_bytes: int = MAX_DOCUMENT_BYTES) -> Iterator[Item]:
  """Documents and BadRecords of one file (any tf.io.gfile path; `*.gz` is decompressed)."""
  with open_path(path) as f:
    yield from parse_stream(f, path, fmt, max_document_bytes)


def default_corpus_path() -> str:
  """The shipped SQuAD v1.1 dev set (2,067 paragraphs; CC BY-SA 4.0, see default_corpus/)."""
  from realm_tf.data import default_corpus  # pylint: disable=g-import-not-at-top
  return default_corpus.default_corpus_path()
