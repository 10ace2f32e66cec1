"""Readers of raw documents (JSONL, SQuAD JSON, WikiText raw, plain text) with bad-input reports.

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
- `duplicate_doc_id`: raised later by the corpus builder when two documents share an id.

Document ids are deterministic: JSONL `id` field (else `<file name>:<line>`), SQuAD
`<article title>#<paragraph index>`, WikiText the article title, plain text the file name.
"""
import dataclasses
import gzip
import io
import json
import os
import re
from typing import BinaryIO, Iterator, Optional, Union

import tensorflow as tf

FORMATS = ("jsonl", "squad", "wikitext", "text")
# What a format setting may name: a format, or "auto" (detect it per file; None means the same).
FORMAT_CHOICES = ("auto", *FORMATS)
MAX_DOCUMENT_BYTES = 1_000_000
BAD_KINDS = ("malformed_json", "malformed_record", "non_utf8", "empty_document",
             "oversized_document", "bad_title", "duplicate_doc_id")

_WIKITEXT_TITLE = re.compile(r"^ = ([^=].*?) = $")
_WIKITEXT_SECTION = re.compile(r"^ (= )+.*?( =)+ $")
_WIKITEXT_UNESCAPE = ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."))
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


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


def detect_format(path: str, head: bytes = b"") -> str:
  """Guesses the format from the file name, then from its first bytes (`head`)."""
  name = _strip_gz(os.path.basename(path)).lower()
  if name.endswith((".jsonl", ".ndjson")):
    return "jsonl"
  text = head.decode("utf-8", "replace")
  if name.endswith(".json") or text.lstrip().startswith("{"):
    first = text.lstrip().split("\n", 1)
    if len(first) == 2:  # a whole first line: one JSON object with "text" means JSONL
      try:
        rec = json.loads(first[0])
        if isinstance(rec, dict) and "text" in rec:
          return "jsonl"
      except json.JSONDecodeError:
        pass
    if re.search(r'"(data|paragraphs|context)"\s*:', text):
      return "squad"
    return "jsonl"
  for line in text.splitlines()[:50]:
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


def _decode_lines(stream: BinaryIO, source: str) -> Iterator[Union[tuple, BadRecord]]:
  """(line number, text) per line, or a non_utf8 BadRecord for an undecodable line."""
  for n, raw in enumerate(stream, start=1):
    try:
      yield n, raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as e:
      yield BadRecord(source, n, "non_utf8", f"byte {e.start}: {e.reason}")


def read_jsonl(stream: BinaryIO, source: str, max_document_bytes: int = MAX_DOCUMENT_BYTES
               ) -> Iterator[Item]:
  """`{"title", "text"[, "id"]}` per line; blank lines are ignored."""
  base = os.path.basename(source)
  for item in _decode_lines(stream, source):
    if isinstance(item, BadRecord):
      yield item
      continue
    n, line = item
    if not line.strip():
      continue
    try:
      rec = json.loads(line)
    except json.JSONDecodeError as e:
      yield BadRecord(source, n, "malformed_json", f"column {e.colno}: {e.msg}")
      continue
    if not isinstance(rec, dict) or not isinstance(rec.get("text"), str) or \
        not isinstance(rec.get("title", ""), str):
      yield BadRecord(source, n, "malformed_record",
                      'expected an object with a string "text" (and optional string "title")')
      continue
    doc_id = str(rec["id"]) if rec.get("id") not in (None, "") else f"{base}:{n}"
    yield from _finish(Document(doc_id, rec.get("title", ""), rec["text"], source, n),
                       max_document_bytes)


def _line_of(data: bytes, pos: int) -> int:
  return data.count(b"\n", 0, pos) + 1


def read_squad(stream: BinaryIO, source: str, max_document_bytes: int = MAX_DOCUMENT_BYTES
               ) -> Iterator[Item]:
  """Each paragraph of a SQuAD JSON file is a document titled by its article."""
  data = stream.read()
  try:
    text = data.decode("utf-8")
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
            "text": read_text}


def parse_stream(stream: BinaryIO, source: str, fmt: Optional[str] = None,
                 max_document_bytes: int = MAX_DOCUMENT_BYTES) -> Iterator[Item]:
  """Documents and BadRecords of one (already decompressed) binary stream named `source`."""
  head = stream.read(8192)
  if fmt in (None, "", "auto"):
    fmt = detect_format(source, head)
  stream = io.BufferedReader(_Prefixed(head, stream), buffer_size=1 << 20)
  if fmt not in _READERS:
    raise ValueError(f"Unknown document format {fmt!r} for {source}; expected one of {FORMATS}.")
  return _READERS[fmt](stream, source, max_document_bytes)


def read_documents(path: str, fmt: Optional[str] = None,
                   max_document_bytes: int = MAX_DOCUMENT_BYTES) -> Iterator[Item]:
  """Documents and BadRecords of one file (any tf.io.gfile path; `*.gz` is decompressed)."""
  with open_path(path) as f:
    yield from parse_stream(f, path, fmt, max_document_bytes)


def default_corpus_path() -> str:
  """The shipped SQuAD v1.1 dev set (2,067 paragraphs; CC BY-SA 4.0, see default_corpus/)."""
  from realm_tf.data import default_corpus  # pylint: disable=g-import-not-at-top
  return default_corpus.default_corpus_path()
