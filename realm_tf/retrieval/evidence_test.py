"""Tests of the evidence warm-up examples: span lookup, the evidence choice, the joint layout, resume."""
import numpy as np
import pytest

from realm_tf.retrieval import evidence
from realm_tf.data import masking
from realm_tf.data.block_lookup import BlockLookup
from realm_tf.testing.retrieval_fixtures import write_corpus_and_annotations
from realm_tf.retrieval.bm25 import BM25Index
from realm_tf.text import RealmTokenizer

TOK = RealmTokenizer()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  return write_corpus_and_annotations(str(tmp_path_factory.mktemp("evidence")), TOK)


def _text_lookup(tmp_path, texts):
  """A corpus of one block per text (title = "t<i>"), and its lookup."""
  from realm_tf.testing.synthetic import write_corpus  # pylint: disable=g-import-not-at-top
  corpus_dir = str(tmp_path / "texts")
  write_corpus(corpus_dir, [(f"d{i}", f"t{i}", t) for i, t in enumerate(texts)], TOK, 64)
  return BlockLookup.open(corpus_dir)


def test_holds_span_needs_the_pieces_in_order_and_contiguous(tmp_path):
  lookup = _text_lookup(tmp_path, ["paris is in france", "france is in paris", "paris", ""])
  def ids(text):
    return TOK.tokenize([text])[0].numpy().tolist()

  rows = np.arange(4)
  np.testing.assert_array_equal(evidence.holds_span(lookup, rows, ids("paris is")),
                                [True, False, False, False])
  np.testing.assert_array_equal(evidence.holds_span(lookup, rows, ids("paris")),
                                [True, True, True, False])
  np.testing.assert_array_equal(evidence.holds_span(lookup, rows, ids("is paris")),
                                [False, False, False, False])
  assert not evidence.holds_span(lookup, rows, []).any()
  np.testing.assert_array_equal(evidence.holds_span(lookup, [2, 0], ids("paris")), [True, True])


def test_evidence_is_the_bm25_best_holder_other_than_the_own_block(tmp_path):
  texts = ["paris is in france", "the louvre is in paris , paris museums",
           "rome is in italy", "paris paris paris museums"]
  lookup = _text_lookup(tmp_path, texts)
  bm25 = BM25Index.from_texts(lookup.joined_texts(), num_docs=4)
  query = "museums in paris"
  _, ranked = bm25.search([query], 4)
  ranked = ranked[0]
  paris = TOK.tokenize(["paris"])[0].numpy().tolist()
  holders = [r for r in ranked if r != 2]  # every block but Rome's holds "paris"
  assert evidence.choose_evidence(paris, ranked, -1, lookup) == (holders[0], True)
  # The own block is never the evidence, even when it is BM25's best holder.
  assert evidence.choose_evidence(paris, ranked, holders[0], lookup) == (holders[1], True)
  # No other block holds "italy": BM25's best other block, flagged as not holding the span.
  italy = TOK.tokenize(["italy"])[0].numpy().tolist()
  _, rome = bm25.search(["where is rome"], 4)
  best_other = [r for r in rome[0] if r != 2][0]
  assert evidence.choose_evidence(italy, rome[0], 2, lookup) == (best_other, False)
  # A distractor is BM25's best other block without the span, even where holders score higher.
  assert list(ranked).index(2) == 3
  assert evidence.choose_evidence(paris, ranked, 1, lookup, distractor=True) == (2, False)
  # When every other candidate holds the span, the distractor can only be a holder (and says so).
  assert evidence.choose_evidence(paris, [r for r in ranked if r != 2], 1, lookup,
                                  distractor=True)[1]


def test_examples_put_the_masked_query_before_a_block_that_holds_its_span(data):
  corpus_dir, ann_dir = data
  lookup = BlockLookup.open(corpus_dir)
  masker = masking.Masker(masking.MaskingConfig(query_length=24, max_predictions=6), TOK)
  ex = evidence.evidence_examples(ann_dir, masker, lookup, 12, 64, seed=3)
  assert len(ex["block_id"]) == 12
  assert 0 < ex["holds_span"].mean() < 1  # places recur across the documents, years do not
  rows = lookup.rows_np(ex["evidence_block_id"])
  for i in range(12):
    assert ex["evidence_block_id"][i] != ex["block_id"][i]
    ids, mask = ex["input_word_ids"][i], ex["input_mask"][i]
    n = int(ex["masked_weights"][i].sum())
    positions = ex["masked_positions"][i][:n]
    assert (ids[positions] == TOK.mask_id).all()
    span = ex["masked_ids"][i][:n]
    seps = np.flatnonzero(ids == TOK.sep_id)
    assert ids[0] == TOK.cls_id and len(seps) == 2 and seps[1] == mask.sum() - 1
    body = lookup.body_ids_np(rows[i])
    second = ids[seps[0] + 1:seps[1]]
    np.testing.assert_array_equal(second, body[:len(second)])
    assert (ex["input_type_ids"][i][seps[0] + 1:seps[1] + 1] == 1).all()
    holds = any((body[j:j + n] == span).all() for j in range(len(body) - n + 1))
    assert holds == ex["holds_span"][i]


def test_the_distractor_rate_draws_queries_that_read_a_block_without_their_span(data):
  corpus_dir, ann_dir = data
  lookup = BlockLookup.open(corpus_dir)
  masker = masking.Masker(masking.MaskingConfig(query_length=24, max_predictions=6), TOK)
  plain = evidence.evidence_examples(ann_dir, masker, lookup, 32, 64, seed=3)
  mixed = evidence.evidence_examples(ann_dir, masker, lookup, 32, 64, seed=3,
                                     distractor_rate=0.5)
  assert not plain["distractor"].any() and 0 < mixed["distractor"].mean() < 1
  # The same queries in the same order; only the drawn ones change their evidence.
  np.testing.assert_array_equal(plain["masked_ids"], mixed["masked_ids"])
  kept = ~mixed["distractor"]
  np.testing.assert_array_equal(plain["evidence_block_id"][kept],
                                mixed["evidence_block_id"][kept])
  assert not mixed["holds_span"][mixed["distractor"]].any()
  assert plain["holds_span"][mixed["distractor"]].any()  # some had a holder to lose
  with pytest.raises(ValueError, match="distractor_rate"):
    evidence.evidence_examples(ann_dir, masker, lookup, 4, 64, distractor_rate=1.5)


def test_dataset_resumes_at_a_data_position(data):
  corpus_dir, ann_dir = data
  lookup = BlockLookup.open(corpus_dir)
  masker = masking.Masker(masking.MaskingConfig(query_length=24, max_predictions=6), TOK)
  ex = evidence.evidence_examples(ann_dir, masker, lookup, 8, 64)
  full = list(evidence.evidence_dataset(ex, 2).take(6).as_numpy_iterator())
  assert [int(b["data_position"][0]) for b in full] == [2, 4, 6, 8, 10, 12]
  resumed = list(evidence.evidence_dataset(ex, 2, start_position=6).take(3).as_numpy_iterator())
  for a, b in zip(full[3:], resumed):
    np.testing.assert_array_equal(a["input_word_ids"], b["input_word_ids"])
    np.testing.assert_array_equal(a["data_position"], b["data_position"])
  # Past the end the examples repeat in the same order.
  np.testing.assert_array_equal(full[4]["input_word_ids"], full[0]["input_word_ids"])


def test_two_hosts_read_disjoint_shares_that_together_are_the_stream(data):
  corpus_dir, ann_dir = data
  lookup = BlockLookup.open(corpus_dir)
  masker = masking.Masker(masking.MaskingConfig(query_length=24, max_predictions=6), TOK)
  ex = evidence.evidence_examples(ann_dir, masker, lookup, 8, 64)
  one = list(evidence.evidence_dataset(ex, 1).take(8).as_numpy_iterator())
  for i in range(2):
    host = list(evidence.evidence_dataset(ex, 1, 0, num_shards=2, shard_index=i)
                .take(4).as_numpy_iterator())
    for a, b in zip(one[i::2], host):
      np.testing.assert_array_equal(a["input_word_ids"], b["input_word_ids"])
      np.testing.assert_array_equal(a["data_position"], b["data_position"])
  resumed = next(evidence.evidence_dataset(ex, 1, start_position=4, num_shards=2, shard_index=1)
                 .as_numpy_iterator())
  np.testing.assert_array_equal(resumed["input_word_ids"], one[5]["input_word_ids"])


def test_queries_leave_out_the_blocks_reserved_for_realm(data):
  corpus_dir, ann_dir = data
  lookup = BlockLookup.open(corpus_dir)
  masker = masking.Masker(masking.MaskingConfig(query_length=24, max_predictions=6), TOK)
  ids = sorted(set(lookup.block_ids.tolist()), key=lambda b: b % 10000)
  realm = (ids[2] % 10000 + 1) / 10000  # the three lowest buckets are REALM's queries alone
  ex = evidence.evidence_examples(ann_dir, masker, lookup, 16, 64, realm_query_fraction=realm)
  assert set(ex["block_id"].tolist()) == set(ids[3:])
  # The evidence may be any block: reading a block is not answering its sentences.
  assert set(ex["evidence_block_id"].tolist()) <= set(ids)
