"""Tests of the document readers and their bad-input reports."""
import csv
import gzip
import io
import json
import os

import pytest

from realm_tf.data import default_corpus
from realm_tf.data import documents


def _write(path, data: bytes):
  with open(path, "wb") as f:
    f.write(data)
  return str(path)


def _split(items):
  items = list(items)
  docs = [i for i in items if isinstance(i, documents.Document)]
  bad = [i for i in items if isinstance(i, documents.BadRecord)]
  return docs, bad


def test_jsonl_with_every_bad_input(tmp_path):
  lines = [
      json.dumps({"title": "Good", "text": "Fine text."}).encode(),
      b'{"title": "Broken", "text": "no closing brace"',
      json.dumps({"title": "Latin1", "text": "x"}).encode()[:-2] + b"caf\xe9\"}",
      json.dumps({"title": "Empty", "text": "   "}).encode(),
      json.dumps({"title": "Huge", "text": "a" * 1_000_000}).encode(),
      json.dumps({"title": "Tab\tand\nnewline", "text": "Kept anyway."}).encode(),
      json.dumps({"id": 7, "title": "With id", "text": "Has an id."}).encode(),
      json.dumps({"title": "No text"}).encode(),
      b"",
  ]
  path = _write(tmp_path / "docs.jsonl", b"\n".join(lines) + b"\n")
  docs, bad = _split(documents.read_documents(path))
  assert [d.title for d in docs] == ["Good", "Tab and newline", "With id"]
  assert [d.doc_id for d in docs] == ["docs.jsonl:1", "docs.jsonl:6", "7"]
  assert [(b.line, b.kind) for b in bad] == [
      (2, "malformed_json"), (3, "non_utf8"), (4, "empty_document"),
      (5, "oversized_document"), (6, "bad_title"), (8, "malformed_record")]
  assert all(b.source == path for b in bad)
  assert "docs.jsonl:5: oversized_document" in str(bad[3])


def test_max_document_bytes_is_configurable(tmp_path):
  path = _write(tmp_path / "d.jsonl", json.dumps({"title": "t", "text": "x" * 100}).encode())
  assert len(_split(documents.read_documents(path, max_document_bytes=101))[0]) == 1
  assert (_split(documents.read_documents(path, max_document_bytes=100))[1][0].kind
          == "oversized_document")


def test_squad_paragraphs_and_gzip(tmp_path):
  squad = {"version": "1.1", "data": [
      {"title": "Super_Bowl_50", "paragraphs": [{"context": "First paragraph.", "qas": []},
                                                {"context": "Second one.", "qas": []}]},
      {"title": "Other", "paragraphs": [{"context": "", "qas": []}]}]}
  raw = json.dumps(squad, indent=1).encode()
  path = _write(tmp_path / "dev.json.gz", gzip.compress(raw))
  docs, bad = _split(documents.read_documents(path))
  assert [(d.doc_id, d.title) for d in docs] == [("Super_Bowl_50#0", "Super Bowl 50"),
                                                 ("Super_Bowl_50#1", "Super Bowl 50")]
  assert [b.kind for b in bad] == ["empty_document"]
  # Line numbers point at each paragraph's "context" in the raw file.
  raw_lines = raw.decode().split("\n")
  assert '"context": "Second one."' in raw_lines[docs[1].line - 1]


def test_malformed_and_non_utf8_squad_file(tmp_path):
  path = _write(tmp_path / "bad.json", b'{"data": [\n{"title": 1,\n')
  bad = list(documents.read_documents(path, "squad"))
  assert [(b.kind, b.line) for b in bad] == [("malformed_json", 3)]
  path = _write(tmp_path / "bad2.json", b'{"data": [\n"\xff"]}')
  bad = list(documents.read_documents(path, "squad"))
  assert [(b.kind, b.line) for b in bad] == [("non_utf8", 2)]


def test_wikitext(tmp_path):
  raw = (" = Robert Boulter = \r\n \r\n Robert Boulter is an English actor . He had a guest "
         "@-@ starring role in 2000 . \r\n \r\n = = Career = = \r\n \r\n He won 1 @,@ 000 "
         "prizes . \r\n = Second = \r\n Text here . \r\n")
  path = _write(tmp_path / "wiki.test.raw", raw.encode())
  assert documents.detect_format(path, raw.encode()) == "wikitext"
  docs, bad = _split(documents.read_documents(path))
  assert not bad
  assert [d.title for d in docs] == ["Robert Boulter", "Second"]
  assert docs[0].text == ("Robert Boulter is an English actor . He had a guest-starring "
                          "role in 2000 .\nHe won 1,000 prizes .")
  assert (docs[0].line, docs[1].line) == (1, 8)


def test_plain_text_keeps_good_lines_of_a_file_with_bad_bytes(tmp_path):
  path = _write(tmp_path / "Ada_Lovelace.txt",
                b"Ada wrote notes.\nBad \xc3\x28 line.\nShe died in 1852.\n")
  docs, bad = _split(documents.read_documents(path))
  assert [(b.kind, b.line) for b in bad] == [("non_utf8", 2)]
  assert (docs[0].doc_id, docs[0].title) == ("Ada_Lovelace.txt", "Ada Lovelace")
  assert docs[0].text == "Ada wrote notes.\nShe died in 1852."


def test_detect_format():
  assert documents.detect_format("x.jsonl.gz") == "jsonl"
  assert documents.detect_format("x.json", b'{"title": "a", "text": "b"}\n{') == "jsonl"
  assert documents.detect_format("x.json", b'{"data": [{"title": "a", "parag') == "squad"
  assert documents.detect_format("notes.txt", b"Just text.\n") == "text"


def test_dpr_tsv_rows_as_dpr_reads_them(tmp_path):
  """psgs_w100.tsv: header skipped, quoted text un-doubled and unquoted, the id column kept."""
  rows = [
      b"id\ttext\ttitle",
      b'1\t"Aaron Aaron ( or ; ""Ah\xc3\xa4r\xc3\xb4n"") is a prophet"\tAaron',
      b"2\tPlain text, \"quotes\" inside kept.\tThe \"Title\"",
      b"3\tonly two cells",
      b"4\ttoo\tmany\tcells",
      b"\tno id\tT",
      b"6\t\"\"\tEmpty",
      b"7\tcaf\xe9\tLatin-1",
      b"",
      b"8\tLast passage.\tEnd",
      b'9\t"""Quoted"" start"\tQ',
  ]
  path = _write(tmp_path / "psgs_w100.tsv.gz", gzip.compress(b"\n".join(rows) + b"\n"))
  docs, bad = _split(documents.read_documents(path))
  assert [(d.doc_id, d.title, d.text, d.line) for d in docs] == [
      ("1", "Aaron", 'Aaron Aaron ( or ; "Ah\u00e4r\u00f4n") is a prophet', 2),
      ("2", 'The "Title"', 'Plain text, "quotes" inside kept.', 3),
      ("8", "End", "Last passage.", 10),
      ("9", "Q", 'Quoted" start', 11)]  # DPR's strip('"') after csv's unquoting
  assert [(b.line, b.kind) for b in bad] == [
      (4, "malformed_record"), (5, "malformed_record"), (6, "malformed_record"),
      (7, "empty_document"), (8, "non_utf8")]
  assert str(bad[0]) == (f"{path}:4: malformed_record: expected 3 tab-separated cells (id, "
                         "text, title) with an id, got 2 cells")
  # Without the header row the format is named, not guessed.
  plain = _write(tmp_path / "mine.tsv", b"10\tA passage.\tA title\n")
  assert [d.doc_id for d in _split(documents.read_documents(plain))[0]] == ["mine.tsv"]
  docs, _ = _split(documents.read_documents(plain, "dpr_tsv"))
  assert [(d.doc_id, d.title, d.text) for d in docs] == [("10", "A title", "A passage.")]


def _dpr_sample(n: int, multi_line: dict) -> str:
  """A psgs_w100.tsv as csv.writer writes it (text quoted when it holds quotes or line breaks)."""
  out = io.StringIO()
  writer = csv.writer(out, delimiter="\t", lineterminator="\n")
  writer.writerow(["id", "text", "title"])
  for i in range(1, n + 1):
    writer.writerow([str(i), multi_line.get(i, f'Passage {i} says "hi".'), f"Title {i}"])
  return out.getvalue()


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_dpr_tsv_quoted_text_spanning_lines_reads_as_csv_reader_reads_it(tmp_path, ending):
  """300 passages, one whose quoted text holds a line break: 300 documents, each as DPR's
  csv.reader(delimiter='\t') + strip('"') reads it, at the line its row starts on."""
  data = _dpr_sample(300, {236: 'Line one of "236".\nLine two.'}).replace("\n", ending).encode()
  path = _write(tmp_path / "psgs_w100.tsv", data)
  with open(path, encoding="utf-8") as f:  # DPR's reading (text mode: CRLF read as LF)
    expected = [(r[0], r[2], r[1].strip('"')) for r in csv.reader(f, delimiter="\t")
                if r[0] != "id"]
  docs, bad = _split(documents.read_documents(path))
  assert not bad, [str(b) for b in bad]
  assert len(docs) == 300
  assert [(d.doc_id, d.title, d.text) for d in docs] == expected
  assert docs[235].text == 'Line one of "236".\nLine two.'
  assert [(d.doc_id, d.line) for d in docs[234:237]] == [("235", 236), ("236", 237), ("237", 239)]


def test_dpr_tsv_bad_rows_after_a_multi_line_row_name_the_line_they_start_on(tmp_path):
  data = (b'id\ttext\ttitle\n1\t"two\nlines"\tT1\n2\tonly two\n3\t"a\nb"\tx\ty\tz\n'
          b"4\tcaf\xe9\tLatin-1\n5\tLast.\tT5\n")
  path = _write(tmp_path / "psgs.tsv", data)
  docs, bad = _split(documents.read_documents(path))
  assert [(d.doc_id, d.text, d.line) for d in docs] == [("1", "two\nlines", 2), ("5", "Last.", 8)]
  # Row 3's quoted cell spans lines but the row has 5 cells: its lines are read one by one, so a
  # broken row never swallows the rows after it.
  assert [(b.line, b.kind) for b in bad] == [(4, "malformed_record"), (5, "malformed_record"),
                                             (6, "malformed_record"), (7, "non_utf8")]
  assert str(bad[0]) == (f"{path}:4: malformed_record: expected 3 tab-separated cells (id, "
                         "text, title) with an id, got 2 cells")


_PLAIN = {  # (file name, content, format, [(doc id, title, text)])
    "jsonl": ("mine.jsonl", '{"id": "a", "title": "A", "text": "First."}\n'
              '{"id": "b", "title": "B", "text": "Second."}\n',
              [("a", "A", "First."), ("b", "B", "Second.")]),
    "beir": ("corpus.jsonl", '{"_id": "a", "title": "A", "text": "First."}\n',
             [("a", "A", "First.")]),
    "pyserini": ("p.jsonl", '{"id": "a", "contents": "First."}\n', [("a", "", "First.")]),
    "squad": ("dev.json", '{"data": [{"title": "A_b", "paragraphs": [{"context": "First."}]}]}\n',
              [("A_b#0", "A b", "First.")]),
    "wikitext": ("wiki.txt", " = Alpha = \n\n First line . \n = = Sec = = \n Second . \n",
                 [("Alpha", "Alpha", "First line .\nSecond .")]),
    "text": ("note.txt", "Line one.\nLine two.\n", [("note.txt", "note", "Line one.\nLine two.")]),
    "dpr_tsv": ("psgs.tsv", 'id\ttext\ttitle\n1\t"First\nsecond."\tA\n2\tThird.\tB\n',
                [("1", "A", "First\nsecond."), ("2", "B", "Third.")]),
}


@pytest.mark.parametrize("fmt", sorted(_PLAIN))
def test_every_format_reads_a_byte_order_mark_and_crlf_line_ends(tmp_path, fmt):
  """A file saved by a Windows editor (UTF-8 with BOM, CRLF) reads as the plain one: same
  format detected, same documents, no bad record."""
  name, content, want = _PLAIN[fmt]
  for variant, data in (("plain", content.encode()),
                        ("bom_crlf", b"\xef\xbb\xbf" + content.replace("\n", "\r\n").encode())):
    (tmp_path / variant).mkdir()
    path = _write(tmp_path / variant / name, data)
    assert documents.detect_format(path, data[:8192]) == fmt, variant
    docs, bad = _split(documents.read_documents(path))
    assert not bad, (variant, [str(b) for b in bad])
    assert [(d.doc_id, d.title, d.text) for d in docs] == want, variant


def test_beir_corpus(tmp_path):
  lines = [
      json.dumps({"_id": "doc0", "title": "Title", "text": "Text.", "metadata": {}}),
      json.dumps({"_id": 7, "title": None, "text": "No title."}),
      json.dumps({"title": "No id", "text": "x"}),
      json.dumps({"_id": "d3", "title": 3, "text": "x"}),
      '{"_id": "d4", "text": ',
  ]
  path = _write(tmp_path / "corpus.jsonl", "\n".join(lines).encode() + b"\n")
  docs, bad = _split(documents.read_documents(path))
  assert [(d.doc_id, d.title, d.text) for d in docs] == [("doc0", "Title", "Text."),
                                                        ("7", "", "No title.")]
  assert [(b.line, b.kind) for b in bad] == [(3, "malformed_record"), (4, "malformed_record"),
                                             (5, "malformed_json")]
  assert '"_id"' in bad[0].message


def test_pyserini_contents_with_and_without_a_title_line(tmp_path):
  dpr_wiki = [{"id": "1", "contents": '"Aaron"\nAaron Aaron ( or ; "Ah") is a prophet'},
              {"id": 2, "contents": '"A ""quoted"" title"\n"Quoted text"'},
              {"id": "3", "contents": "No title line"},
              {"contents": "no id"}]
  path = _write(tmp_path / "wiki.jsonl",
                "\n".join(json.dumps(r) for r in dpr_wiki).encode() + b"\n")
  docs, bad = _split(documents.read_documents(path))  # detected: the first record's quoted title
  assert [(d.doc_id, d.title, d.text) for d in docs] == [
      ("1", "Aaron", 'Aaron Aaron ( or ; "Ah") is a prophet'),
      ("2", 'A "quoted" title', "Quoted text"), ("3", "", "No title line")]
  assert [(b.line, b.kind) for b in bad] == [(4, "malformed_record")]
  # Contents that do not show the convention are the text; naming the format splits them.
  own = [{"id": "a", "contents": "First line\nsecond line"}]
  path = _write(tmp_path / "own.jsonl", json.dumps(own[0]).encode() + b"\n")
  docs, _ = _split(documents.read_documents(path))
  assert [(d.title, d.text) for d in docs] == [("", "First line\nsecond line")]
  docs, _ = _split(documents.read_documents(path, "pyserini_title"))
  assert [(d.title, d.text) for d in docs] == [("First line", "second line")]


def test_detect_format_of_the_field_formats():
  detect = documents.detect_format
  assert detect("psgs_w100.tsv.gz", b"id\ttext\ttitle\n1\t\"x\"\tT\n") == "dpr_tsv"
  assert detect("anything", b"\xef\xbb\xbfid\ttext\ttitle\r\n") == "dpr_tsv"
  assert detect("corpus.jsonl", b'{"_id": "1", "title": "", "text": "x"}\n') == "beir"
  assert detect("c", b'{"_id": "1", "title": "", "text": "x"}\n{') == "beir"
  assert detect("c.jsonl", b'{"id": "1", "contents": "x"}\n') == "pyserini"
  assert detect("c.jsonl", b'{"id": "1", "contents": "\\"T\\"\\nx"}\n') == "pyserini_title"
  # Our own JSONL and plain text stay ours.
  assert detect("d.jsonl", b'{"id": "1", "title": "t", "text": "x"}\n') == "jsonl"
  assert detect("d.jsonl", b'{"id": "1", "_id": "2", "text": "x"}\n') == "jsonl"
  assert detect("d.jsonl", b'{"id": "1", "contents": "c", "text": "x"}\n') == "jsonl"
  assert detect("d.jsonl", b'{"text": "a long first line') == "jsonl"
  assert detect("notes.txt", b"id text title\nA note.\n") == "text"
  assert detect("table.tsv", b"1\tA passage.\tTitle\n") == "text"
  assert detect("notes.txt", b"id\ttext\ttitle and more\n") == "text"


def test_shipped_default_corpus():
  path = documents.default_corpus_path()
  assert os.path.exists(path)
  assert os.path.exists(os.path.join(os.path.dirname(path), "ATTRIBUTION.md"))
  docs, bad = _split(documents.read_documents(path))
  assert len(docs) == 2067
  assert not bad
  assert len({d.doc_id for d in docs}) == 2067
  wiki, bad = _split(documents.read_documents(default_corpus.wikitext2_test_path()))
  assert not bad
  assert len(wiki) > 50


def test_deeply_nested_json_is_a_malformed_record_not_a_crash(tmp_path):
  """json.loads raises RecursionError (not JSONDecodeError) on deep nesting: a skipped record,
  in the JSON-lines readers, format detection and SQuAD."""
  deep = '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}"
  path = tmp_path / "deep.jsonl"
  path.write_text(deep + "\n" + json.dumps({"id": "ok", "text": "kept"}) + "\n")
  items = list(documents.read_documents(str(path)))
  bad = [i for i in items if isinstance(i, documents.BadRecord)]
  assert [b.kind for b in bad] == ["malformed_json"] and bad[0].line == 1
  assert "nested too deeply" in str(bad[0]) and "\n" not in str(bad[0])
  assert [d.doc_id for d in items if isinstance(d, documents.Document)] == ["ok"]
  squad = tmp_path / "deep.json"
  squad.write_text('{"data": ' + "[" * 100_000 + "]" * 100_000 + "}")
  items = list(documents.read_documents(str(squad), "squad"))
  assert [(i.kind, i.line) for i in items] == [("malformed_json", 1)]


def test_damaged_gzip_keeps_the_records_before_the_damage(tmp_path):
  """A truncated or corrupted .gz ends with one unreadable_file record naming the file, after
  the documents read before the damage (zlib / EOF errors escaped as tracebacks before)."""
  import random  # pylint: disable=g-import-not-at-top
  rng = random.Random(0)
  lines = [json.dumps({"id": f"d{i}", "text": " ".join(f"{rng.random():.12f}" for _ in range(40))})
           for i in range(2000)]
  data = gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)
  path = tmp_path / "docs.jsonl.gz"
  path.write_bytes(data[:len(data) // 2])  # truncated
  items = list(documents.read_documents(str(path)))
  docs = [i for i in items if isinstance(i, documents.Document)]
  assert 0 < len(docs) < 2000
  assert [d.doc_id for d in docs] == [f"d{i}" for i in range(len(docs))]
  last = items[-1]
  assert isinstance(last, documents.BadRecord) and last.kind == "unreadable_file"
  assert last.line == len(docs) + 1 and str(path) in str(last) and "\n" not in str(last)
  corrupt = bytearray(data)
  corrupt[len(data) // 2] ^= 0xFF
  path.write_bytes(bytes(corrupt))
  items = list(documents.read_documents(str(path)))
  assert items[-1].kind == "unreadable_file"
  # The damage sits half way through the stream: the records before it read back unchanged.
  assert [d.doc_id for d in items if isinstance(d, documents.Document)][:900] == \
      [f"d{i}" for i in range(900)]
