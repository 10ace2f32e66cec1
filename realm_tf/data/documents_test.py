"""Tests of the document readers and their bad-input reports."""
import gzip
import json
import os

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
