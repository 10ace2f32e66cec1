"""Tests for the streaming BM25 index: rank_bm25's scores, deterministic ties, one-pass building,
6-byte postings split in segments of 2**16 rows."""
import json
import math
import os

import numpy as np
import pytest

from realm_tf.retrieval import bm25
from realm_tf.retrieval.bm25 import BM25Index, bm25_tokens


def _arrays(index):
  return [np.asarray(getattr(index, k)) for k in (  # pylint: disable=protected-access
      "_data", "_low", "_term_segments", "_segment_ids", "_segment_starts")]


def test_scores_equal_a_hand_computation():
  index = BM25Index.from_texts(["a b a", "b c", "D."])
  # N = 3, lengths 3, 2, 1 (avgdl 2); df: a 1, b 2, c 1, d 1.
  idf_a = math.log(3 - 1 + 0.5) - math.log(1 + 0.5)          # also c and d
  idf_b = math.log(3 - 2 + 0.5) - math.log(2 + 0.5)          # negative: floored
  eps = 0.25 * (3 * idf_a + idf_b) / 4                       # 0.25 x the mean idf
  tfc = lambda tf, dl: tf * 2.5 / (tf + 1.5 * (0.25 + 0.75 * dl / 2))  # pylint: disable=unnecessary-lambda-assignment
  want = [idf_a * tfc(2, 3) + eps * tfc(1, 3), eps * tfc(1, 2), 0.0]
  np.testing.assert_allclose(index.scores("A, b?"), want, rtol=1e-6)
  # A repeated query word counts twice, as in rank_bm25; unknown words add nothing.
  np.testing.assert_allclose(index.scores("c c zebra"), [0, 2 * idf_a * tfc(1, 2), 0], rtol=1e-6)
  assert index.size == 3 and index.meta["avgdl"] == 2.0


def test_scores_and_rankings_equal_rank_bm25():
  rank_bm25 = pytest.importorskip("rank_bm25")
  rng = np.random.RandomState(0)
  words = [f"w{i}" for i in range(40)] + ["the"] * 30 + ["Éclair", "naïve", "x_y"]
  texts = [" ".join(rng.choice(words, rng.randint(0, 25))) + ", and." for _ in range(300)]
  texts[7] = ""
  index = BM25Index.from_texts(iter(texts))
  ref = rank_bm25.BM25Okapi([bm25_tokens(t) or [""] for t in texts])
  queries = ["the w1 w2", "éclair naive naïve", "w3 w3 and", "x_y w39 w0 the the", "nothing"]
  for q in queries:
    np.testing.assert_allclose(index.scores(q), ref.get_scores(bm25_tokens(q)), rtol=2e-6,
                               atol=1e-7)
  _, rows = index.search(queries, 10)
  for q, got in zip(queries, rows):
    s = ref.get_scores(bm25_tokens(q)).astype(np.float32)
    np.testing.assert_array_equal(got, np.lexsort((np.arange(len(s)), -s))[:10])


def test_ties_are_broken_by_row_order():
  texts = ["red fox", "blue sky", "red fox", "grey sky", "red fox", "blue sky", "sea", "sea"]
  index = BM25Index.from_texts(texts)
  scores, rows = index.search(["red fox", "sky", "unknown words"], 4)
  np.testing.assert_array_equal(rows, [[0, 2, 4, 1], [1, 3, 5, 0], [0, 1, 2, 3]])
  assert scores[0, 0] == scores[0, 1] == scores[0, 2] > scores[0, 3] == 0
  assert (scores[2] == 0).all()
  assert index.search(["sky"], 100)[1].shape == (1, 8)  # k is capped at the index size


def test_scores_of_given_rows_equal_the_full_scores():
  rng = np.random.RandomState(1)
  texts = [" ".join(rng.choice(["a", "b", "c", "d", "e", "f"], 8)) for _ in range(50)]
  index = BM25Index.from_texts(texts)
  rows = [49, 0, 7, 7, 13]
  for q in ["a b", "f f c", "zzz"]:
    np.testing.assert_array_equal(index.scores(q, rows), index.scores(q)[rows])
  with pytest.raises(ValueError, match="row 50 is outside 0..49"):
    index.scores("a", [3, 50])


def test_streaming_build_reads_a_generator_once_and_runs_and_merges_in_pieces(monkeypatch,
                                                                               tmp_path):
  """Many small runs, merge ranges and worker processes give the same index as one of each."""
  rng = np.random.RandomState(2)
  texts = [" ".join(rng.choice([f"t{i}" for i in range(60)] + ["common"] * 40, 12))
           for _ in range(700)]
  whole = BM25Index.from_texts(texts, workers=0)
  monkeypatch.setattr(bm25, "CHUNK_DOCS", 16)
  monkeypatch.setattr(bm25, "RUN_DOCS", 100)
  monkeypatch.setattr(bm25, "MERGE_POSTINGS", 50)
  monkeypatch.setattr(bm25, "SCORE_POSTINGS", 7)
  read = []

  def once():
    assert not read, "the texts were read twice"
    for t in texts:
      read.append(t)
      yield t

  pieces = BM25Index.from_texts(once(), num_docs=700, directory=str(tmp_path / "i"), workers=2)
  assert len(read) == 700 and pieces.size == 700
  for a, b in zip(_arrays(whole), _arrays(pieces)):
    np.testing.assert_array_equal(a, b)
  assert not os.path.exists(os.path.join(pieces.directory, "postings.spill"))
  with pytest.raises(ValueError, match="read 700 texts, expected num_docs=701"):
    BM25Index.from_texts(texts, num_docs=701, workers=0)
  with pytest.raises(ValueError, match="at least one document"):
    BM25Index.from_texts([])


def test_rows_in_many_segments_score_as_in_one(monkeypatch):
  """Segments of 8 rows (a posting's row split into segment and low bits) give the same scores,
  top rows and row subsets as one segment, with rank_bm25's scores; a posting is 6 bytes."""
  rank_bm25 = pytest.importorskip("rank_bm25")
  rng = np.random.RandomState(3)
  words = [f"w{i}" for i in range(30)] + ["the"] * 20
  texts = [" ".join(rng.choice(words, rng.randint(0, 20))) for _ in range(203)]
  one = BM25Index.from_texts(texts, workers=0)
  monkeypatch.setattr(bm25, "SEGMENT_BITS", 3)
  monkeypatch.setattr(bm25, "MERGE_POSTINGS", 40)  # a term's pairs come from several merge steps
  many = BM25Index.from_texts(texts, workers=0)
  assert one.meta["num_segment_pairs"] == one.meta["vocab_size"]
  assert many.meta["segment_bits"] == 3 and many.meta["num_segment_pairs"] > 20 * 26
  assert int(np.max(many._low)) == 7  # pylint: disable=protected-access
  ref = rank_bm25.BM25Okapi([bm25_tokens(t) or [""] for t in texts])
  rows = [202, 0, 7, 8, 9, 64, 64, 130]
  for q in ["the w1 w2", "w3 w3 the", "w29", "nothing here"]:
    np.testing.assert_array_equal(many.scores(q), one.scores(q))
    np.testing.assert_allclose(many.scores(q), ref.get_scores(bm25_tokens(q)), rtol=2e-6,
                               atol=1e-7)
    np.testing.assert_array_equal(many.scores(q, rows), one.scores(q)[rows])
  np.testing.assert_array_equal(many.search(["the w1 w2"], 30)[1], one.search(["the w1 w2"], 30)[1])
  postings = many.meta["num_postings"]
  data = np.load(os.path.join(many.directory, bm25.DATA), mmap_mode="r")
  low = np.load(os.path.join(many.directory, bm25.LOW_ROWS), mmap_mode="r")
  assert data.dtype == np.float32 and low.dtype == np.uint16 and len(data) == len(low) == postings


def test_save_and_load_the_index(tmp_path):
  index = BM25Index.from_texts(["one fish", "two fish", "red fish blue fish"])
  private = index.directory
  index.save(str(tmp_path / "saved"))
  loaded = BM25Index.load(str(tmp_path / "saved"))
  np.testing.assert_array_equal(loaded.scores("blue fish"), index.scores("blue fish"))
  assert loaded.size == 3 and sorted(os.listdir(tmp_path / "saved")) == sorted(bm25.FILES)
  index.close()
  assert not os.path.exists(private)
  with pytest.raises(ValueError, match="not a BM25 index"):
    BM25Index.load(str(tmp_path))


def test_from_corpus_rows_are_blocks_in_manifest_order_and_a_built_index_is_reused(tmp_path):
  from realm_tf.testing.synthetic import write_corpus  # pylint: disable=g-import-not-at-top
  from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
  corpus_dir = str(tmp_path / "corpus")
  docs = [("d0", "Paris", "capital of france"), ("d1", "Rome", "the capital of italy, by the Tiber"),
          ("d2", "Oslo", "norway")]
  write_corpus(corpus_dir, docs, RealmTokenizer(), 64)
  target = str(tmp_path / "bm25")
  index = BM25Index.from_corpus(corpus_dir, directory=target)
  assert index.size == 3
  assert index.search(["rome italy", "norway", "paris"], 1)[1].ravel().tolist() == [1, 2, 0]
  stamp = os.path.getmtime(os.path.join(target, bm25.DATA))
  again = BM25Index.from_corpus(corpus_dir, directory=target)
  assert os.path.getmtime(os.path.join(target, bm25.DATA)) == stamp
  assert again.meta["corpus_fingerprint"] == index.meta["corpus_fingerprint"]
  # An index of an older format in the directory is rebuilt, not opened.
  with open(os.path.join(target, bm25.META)) as f:
    meta = json.load(f)
  with open(os.path.join(target, bm25.META), "w") as f:
    json.dump(dict(meta, format=1), f)
  rebuilt = BM25Index.from_corpus(corpus_dir, directory=target)
  assert rebuilt.meta["format"] == bm25.FORMAT and rebuilt.size == 3


@pytest.fixture(scope="module")
def demo():
  """The shipped corpus blocked as the main job blocks it (its default block length), the
  SQuAD-open dev questions, this module's index and rank_bm25's over the same tokens."""
  rank_bm25 = pytest.importorskip("rank_bm25")
  from realm_tf.data import documents  # pylint: disable=g-import-not-at-top
  from realm_tf.data import squad_open  # pylint: disable=g-import-not-at-top
  from realm_tf.data.blocking import Blocker  # pylint: disable=g-import-not-at-top
  from realm_tf.io import work_dir  # pylint: disable=g-import-not-at-top
  docs = [d for d in documents.read_documents(documents.default_corpus_path())
          if isinstance(d, documents.Document)]
  blocker = Blocker(max_block_length=work_dir.DEFAULT_BLOCK_LENGTH)
  texts = [f"{block.title} {block.body}"
           for i in range(0, len(docs), 512)
           for blocks in blocker.split_batch([(d.title, d.text) for d in docs[i:i + 512]])
           for block in blocks]
  questions = [q.question for q in squad_open.load_squad_questions(split="dev")]
  index = BM25Index.from_texts(texts, workers=0)
  reference = rank_bm25.BM25Okapi([bm25_tokens(t) or [""] for t in texts])
  yield {"texts": texts, "questions": questions, "index": index, "reference": reference}
  index.close()


def _assert_same_top_20(demo, questions):
  """This module's top 20 of each question equals rank_bm25's (scores in float32, as the index
  keeps them; equal scores in row order), and so do the scores."""
  scores, rows = demo["index"].search(questions, 20)
  for q, got, got_scores in zip(questions, rows, scores):
    want = demo["reference"].get_scores(bm25_tokens(q))
    order = np.lexsort((np.arange(len(want)), -want.astype(np.float32)))[:20]
    np.testing.assert_array_equal(got, order, err_msg=q)
    np.testing.assert_allclose(got_scores, want[order], rtol=2e-6, atol=1e-6, err_msg=q)


def test_demo_corpus_top_20_equals_rank_bm25_on_a_sample_of_squad_open_dev(demo):
  assert len(demo["texts"]) > 3000 and len(demo["questions"]) > 2000  # the real demo set
  _assert_same_top_20(demo, demo["questions"][::25])  # ~100 questions: rank_bm25 is ~70 ms each


@pytest.mark.slow
def test_demo_corpus_top_20_equals_rank_bm25_on_every_squad_open_dev_question(demo):
  _assert_same_top_20(demo, demo["questions"])  # ~2,500 questions, about 3 minutes


@pytest.mark.parametrize("texts", [
    ["Plain ASCII, with punctuation: a_b-c d.e (f) 12,345!", "", "  \t\n ", "x\x1fy\x7fz"],
    ["Ünïcödé wörds beside ASCII", "İstanbul’s “quotes” — and ß", "ascii only here"],
    ["日本語のテキスト and words", "", "ok", "—", "a—b—c x—y a—b"],
    ["The \u212a sign lowers to ASCII", "ΟΔΟΣ.Α and ΟΔΟΣ", "ok"],
    ["surrogate \udc80 escaped", "x"]])
def test_word_ids_are_the_regex_tokens_of_the_lower_cased_chunk(texts):
  joined = "\x00".join(texts)
  want = bm25._WORD_OR_SEP.findall(joined.lower())
  words, ids = bm25._word_ids(joined)
  assert [words[i] for i in ids] == want
  assert words[0] == "\x00" and sorted(words) == sorted(set(want) | {"\x00"})  # each once


_PARENT = os.getpid()
_REAL_TOKENIZE = bm25._tokenize  # pylint: disable=protected-access


def _dies_in_a_worker(chunk):
  """`bm25._tokenize` that kills any process but the test's own."""
  if os.getpid() != _PARENT:
    os._exit(1)  # pylint: disable=protected-access
  return _REAL_TOKENIZE(chunk)


def test_a_tokenizer_process_that_dies_neither_hangs_nor_changes_the_index(monkeypatch):
  texts = [f"block {i} about topic {i % 7} and word{i % 13}" for i in range(3 * bm25.CHUNK_DOCS)]
  want = BM25Index.from_texts(texts, workers=0)
  monkeypatch.setattr(bm25, "_tokenize", _dies_in_a_worker)
  got = BM25Index.from_texts(texts, workers=2)  # multiprocessing.Pool waited here forever
  for a, b in zip(_arrays(got), _arrays(want)):
    np.testing.assert_array_equal(a, b)
