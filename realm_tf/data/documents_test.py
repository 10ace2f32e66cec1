"""Tests of the document readers and their bad-input reports."""
import gzip
import json
import os
import tempfile

from absl.testing import absltest

from realm_tf.data import default_corpus
from realm_tf.data import documents


def _write(path, data: bytes):
  with open(path, "wb") as f:
    f.write(data)
  return path


def _split(items):
  items = list(items)
  docs = [i for i in items if isinstance(i, documents.Document)]
  bad = [i for i in items if isinstance(i, documents.BadRecord)]
  return docs, bad


class DocumentsTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    tmp = tempfile.TemporaryDirectory()
    self.addCleanup(tmp.cleanup)
    self.dir = tmp.name

  def test_jsonl_with_every_bad_input(self):
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
    path = _write(os.path.join(self.dir, "docs.jsonl"), b"\n".join(lines) + b"\n")
    docs, bad = _split(documents.read_documents(path))
    self.assertEqual([d.title for d in docs], ["Good", "Tab and newline", "With id"])
    self.assertEqual([d.doc_id for d in docs], ["docs.jsonl:1", "docs.jsonl:6", "7"])
    self.assertEqual([(b.line, b.kind) for b in bad], [
        (2, "malformed_json"), (3, "non_utf8"), (4, "empty_document"),
        (5, "oversized_document"), (6, "bad_title"), (8, "malformed_record")])
    self.assertTrue(all(b.source == path for b in bad))
    self.assertIn("docs.jsonl:5: oversized_document", str(bad[3]))

  def test_max_document_bytes_is_configurable(self):
    path = _write(os.path.join(self.dir, "d.jsonl"),
                  json.dumps({"title": "t", "text": "x" * 100}).encode())
    self.assertLen(_split(documents.read_documents(path, max_document_bytes=101))[0], 1)
    self.assertEqual(_split(documents.read_documents(path, max_document_bytes=100))[1][0].kind,
                     "oversized_document")

  def test_squad_paragraphs_and_gzip(self):
    squad = {"version": "1.1", "data": [
        {"title": "Super_Bowl_50", "paragraphs": [{"context": "First paragraph.", "qas": []},
                                                  {"context": "Second one.", "qas": []}]},
        {"title": "Other", "paragraphs": [{"context": "", "qas": []}]}]}
    raw = json.dumps(squad, indent=1).encode()
    path = _write(os.path.join(self.dir, "dev.json.gz"), gzip.compress(raw))
    docs, bad = _split(documents.read_documents(path))
    self.assertEqual([(d.doc_id, d.title) for d in docs],
                     [("Super_Bowl_50#0", "Super Bowl 50"), ("Super_Bowl_50#1", "Super Bowl 50")])
    self.assertEqual([b.kind for b in bad], ["empty_document"])
    # Line numbers point at each paragraph's "context" in the raw file.
    raw_lines = raw.decode().split("\n")
    self.assertIn('"context": "Second one."', raw_lines[docs[1].line - 1])

  def test_malformed_and_non_utf8_squad_file(self):
    path = _write(os.path.join(self.dir, "bad.json"), b'{"data": [\n{"title": 1,\n')
    bad = list(documents.read_documents(path, "squad"))
    self.assertEqual([(b.kind, b.line) for b in bad], [("malformed_json", 3)])
    path = _write(os.path.join(self.dir, "bad2.json"), b'{"data": [\n"\xff"]}')
    bad = list(documents.read_documents(path, "squad"))
    self.assertEqual([(b.kind, b.line) for b in bad], [("non_utf8", 2)])

  def test_wikitext(self):
    raw = (" = Robert Boulter = \r\n \r\n Robert Boulter is an English actor . He had a guest "
           "@-@ starring role in 2000 . \r\n \r\n = = Career = = \r\n \r\n He won 1 @,@ 000 "
           "prizes . \r\n = Second = \r\n Text here . \r\n")
    path = _write(os.path.join(self.dir, "wiki.test.raw"), raw.encode())
    self.assertEqual(documents.detect_format(path, raw.encode()), "wikitext")
    docs, bad = _split(documents.read_documents(path))
    self.assertEmpty(bad)
    self.assertEqual([d.title for d in docs], ["Robert Boulter", "Second"])
    self.assertEqual(docs[0].text, "Robert Boulter is an English actor . He had a guest-starring "
                     "role in 2000 .\nHe won 1,000 prizes .")
    self.assertEqual((docs[0].line, docs[1].line), (1, 8))

  def test_plain_text_keeps_good_lines_of_a_file_with_bad_bytes(self):
    path = _write(os.path.join(self.dir, "Ada_Lovelace.txt"),
                  b"Ada wrote notes.\nBad \xc3\x28 line.\nShe died in 1852.\n")
    docs, bad = _split(documents.read_documents(path))
    self.assertEqual([(b.kind, b.line) for b in bad], [("non_utf8", 2)])
    self.assertEqual((docs[0].doc_id, docs[0].title), ("Ada_Lovelace.txt", "Ada Lovelace"))
    self.assertEqual(docs[0].text, "Ada wrote notes.\nShe died in 1852.")

  def test_detect_format(self):
    self.assertEqual(documents.detect_format("x.jsonl.gz"), "jsonl")
    self.assertEqual(documents.detect_format("x.json", b'{"title": "a", "text": "b"}\n{'),
                     "jsonl")
    self.assertEqual(documents.detect_format("x.json", b'{"data": [{"title": "a", "parag'),
                     "squad")
    self.assertEqual(documents.detect_format("notes.txt", b"Just text.\n"), "text")

  def test_shipped_default_corpus(self):
    path = documents.default_corpus_path()
    self.assertTrue(os.path.exists(path))
    self.assertTrue(os.path.exists(os.path.join(os.path.dirname(path), "ATTRIBUTION.md")))
    docs, bad = _split(documents.read_documents(path))
    self.assertLen(docs, 2067)
    self.assertEmpty(bad)
    self.assertLen({d.doc_id for d in docs}, 2067)
    wiki, bad = _split(documents.read_documents(default_corpus.wikitext2_test_path()))
    self.assertEmpty(bad)
    self.assertGreater(len(wiki), 50)


if __name__ == "__main__":
  absltest.main()
