"""Tests of the evidence warm-up examples: span lookup, the evidence choice, the joint layout, resume."""
import numpy as np
import pytest

from realm_tf.data import evidence
from realm_tf.data import masking
from realm_tf.data.block_store import BlockStore
from realm_tf.data.pretrain_pipeline_service_test import _write_corpus_and_annotations
from realm_tf.retrieval.bm25 import BM25Index
from realm_tf.text import RealmTokenizer

TOK = RealmTokenizer()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  return _write_corpus_and_annotations(str(tmp_path_factory.mktemp("evidence")), TOK)


def test_span_index_needs_the_pieces_in_order_and_contiguous():
  spans = evidence.SpanIndex([[1, 2, 3, 4], [3, 2, 1], [9, 1, 2], []])
  assert spans.rows_containing([1, 2]) == [0, 2]
  assert spans.rows_containing([2, 1]) == [1]
  assert spans.rows_containing([1, 3]) == []
  assert spans.rows_containing([7]) == []
  assert spans.rows_containing([]) == []


def test_evidence_is_the_bm25_best_holder_other_than_the_own_block():
  texts = ["paris is in france", "the louvre is in paris , paris museums",
           "rome is in italy", "paris paris paris museums"]
  bodies = [TOK.tokenize([t])[0].numpy().tolist() for t in texts]
  spans, bm25 = evidence.SpanIndex(bodies), BM25Index(texts)
  paris = TOK.tokenize(["paris"])[0].numpy().tolist()
  best = int(np.argmax([bm25.scores("museums in paris")[r] for r in (0, 1, 3)]))
  assert evidence.choose_evidence(paris, "museums in paris", -1, spans, bm25) == \
      ([0, 1, 3][best], True)
  # The own block is never the evidence, even when it is BM25's best holder.
  row, held = evidence.choose_evidence(paris, "museums in paris", [0, 1, 3][best], spans, bm25)
  assert held and row != [0, 1, 3][best]
  # No other block holds "italy": BM25's best other block, flagged as not holding the span.
  italy = TOK.tokenize(["italy"])[0].numpy().tolist()
  assert evidence.choose_evidence(italy, "where is rome", 2, spans, bm25) == (0, False)
  # A distractor is BM25's best other block without the span, even where holders score higher.
  assert bm25.scores("museums in paris")[2] < min(bm25.scores("museums in paris")[[0, 1, 3]])
  assert evidence.choose_evidence(paris, "museums in paris", 1, spans, bm25,
                                  distractor=True) == (2, False)
  # When every other block holds the span, the distractor can only be a holder (and says so).
  assert evidence.choose_evidence(paris, "museums in paris", 2, evidence.SpanIndex(
      [bodies[0], bodies[1], bodies[0], bodies[3]]), bm25, distractor=True)[1]


def test_examples_put_the_masked_query_before_a_block_that_holds_its_span(data):
  corpus_dir, ann_dir = data
  store = BlockStore([corpus_dir], TOK, keep_text=True)
  masker = masking.Masker(masking.MaskingConfig(query_length=24, max_predictions=6), TOK)
  ex = evidence.evidence_examples(ann_dir, masker, store, 12, 64, seed=3)
  assert len(ex["block_id"]) == 12
  assert 0 < ex["holds_span"].mean() < 1  # places recur across the documents, years do not
  rows = store.rows(ex["evidence_block_id"]).numpy()
  for i in range(12):
    assert ex["evidence_block_id"][i] != ex["block_id"][i]
    ids, mask = ex["input_word_ids"][i], ex["input_mask"][i]
    n = int(ex["masked_weights"][i].sum())
    positions = ex["masked_positions"][i][:n]
    assert (ids[positions] == TOK.mask_id).all()
    span = ex["masked_ids"][i][:n]
    seps = np.flatnonzero(ids == TOK.sep_id)
    assert ids[0] == TOK.cls_id and len(seps) == 2 and seps[1] == mask.sum() - 1
    body = store.body_ids[rows[i]].numpy()
    second = ids[seps[0] + 1:seps[1]]
    np.testing.assert_array_equal(second, body[:len(second)])
    assert (ex["input_type_ids"][i][seps[0] + 1:seps[1] + 1] == 1).all()
    holds = any((body[j:j + n] == span).all() for j in range(len(body) - n + 1))
    assert holds == ex["holds_span"][i]


def test_the_distractor_rate_draws_queries_that_read_a_block_without_their_span(data):
  corpus_dir, ann_dir = data
  store = BlockStore([corpus_dir], TOK, keep_text=True)
  masker = masking.Masker(masking.MaskingConfig(query_length=24, max_predictions=6), TOK)
  plain = evidence.evidence_examples(ann_dir, masker, store, 32, 64, seed=3)
  mixed = evidence.evidence_examples(ann_dir, masker, store, 32, 64, seed=3,
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
    evidence.evidence_examples(ann_dir, masker, store, 4, 64, distractor_rate=1.5)


def test_dataset_resumes_at_a_data_position(data):
  corpus_dir, ann_dir = data
  store = BlockStore([corpus_dir], TOK, keep_text=True)
  masker = masking.Masker(masking.MaskingConfig(query_length=24, max_predictions=6), TOK)
  ex = evidence.evidence_examples(ann_dir, masker, store, 8, 64)
  full = list(evidence.evidence_dataset(ex, 2).take(6).as_numpy_iterator())
  assert [int(b["data_position"][0]) for b in full] == [2, 4, 6, 8, 10, 12]
  resumed = list(evidence.evidence_dataset(ex, 2, start_position=6).take(3).as_numpy_iterator())
  for a, b in zip(full[3:], resumed):
    np.testing.assert_array_equal(a["input_word_ids"], b["input_word_ids"])
    np.testing.assert_array_equal(a["data_position"], b["data_position"])
  # Past the end the examples repeat in the same order.
  np.testing.assert_array_equal(full[4]["input_word_ids"], full[0]["input_word_ids"])


def test_queries_leave_out_the_blocks_reserved_for_realm(data):
  corpus_dir, ann_dir = data
  store = BlockStore([corpus_dir], TOK, keep_text=True)
  masker = masking.Masker(masking.MaskingConfig(query_length=24, max_predictions=6), TOK)
  ids = sorted(set(store.block_ids.tolist()), key=lambda b: b % 10000)
  realm = (ids[2] % 10000 + 1) / 10000  # the three lowest buckets are REALM's queries alone
  ex = evidence.evidence_examples(ann_dir, masker, store, 16, 64, realm_query_fraction=realm)
  assert set(ex["block_id"].tolist()) == set(ids[3:])
  # The evidence may be any block: reading a block is not answering its sentences.
  assert set(ex["evidence_block_id"].tolist()) <= set(ids)
