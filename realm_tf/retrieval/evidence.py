"""Reader warm-up examples that read evidence: REALM's masked queries, each paired with a block
that holds the masked span.

Why: REALM's reader starts from BERT, which has read sentence pairs; a reader warmed up with MLM
on single blocks has never had to find its answer in a *retrieved* block. Measured on the main
job's corpus, such a reader predicted held-out salient spans no better with retrieval than without
(6–7% either way), so every candidate looked equally useless, and the retriever's gradient was
noise. These examples teach the missing skill before REALM starts, without retrieval:

- the query is a REALM pre-training query, masked the way pre-training masks it (`masking`), from
  the training blocks only (held-out blocks left out, as in pre-training);
- the evidence is another block whose body contains the masked wordpieces (never the query's own
  block, which REALM's candidates never hold either), the best by BM25 among those of the query's
  `SEARCH_DEPTH` best blocks; where none of them holds the span, it is BM25's best other block,
  as an unhelpful retrieval would be;
- a share of the queries (`distractor_rate`) read a *distractor* instead: BM25's best other block
  that does not hold the span. Retrieval mostly returns such blocks, and a reader that has only
  seen helpful evidence trusts them: it copies a wrong span with confidence and scores worse
  with retrieval than with the null document (negative retrieval utility). Distractors teach it
  to copy only what fits.

The reader input is the knowledge-augmented encoder's own layout, `[CLS] x [SEP] evidence [SEP]`,
with the query's masked positions unchanged. The examples are computed once (deterministic in the
seed) and replayed in order, so a data position is one integer and resuming reproduces them.
"""
import collections
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf

from realm_tf.data import corpus as corpus_lib
from realm_tf.data.block_lookup import BlockLookup
from realm_tf.data.pretrain_pipeline import indexed_masked_examples, query_wordpieces
from realm_tf.retrieval.bm25 import BM25Index
from realm_tf.text import pack_pair
from realm_tf.text.packing import INPUT_KEYS
from realm_tf.utils.progress import ItemProgress


# BM25 candidates searched per query for a block that holds its span. The evidence is the
# BM25-best holder among them; on corpora of at most this many blocks that is the best holder of
# the whole corpus.
SEARCH_DEPTH = 4096


def holds_span(lookup: BlockLookup, rows: np.ndarray, span: Sequence[int]) -> np.ndarray:
  """bool [len(rows)]: whether each row's body holds `span` contiguously (False for an empty
  span); one vectorised window comparison over the rows' bodies."""
  span = np.asarray(span, np.int32)
  rows = np.asarray(rows, np.int64)
  if span.size == 0 or rows.size == 0:
    return np.zeros([rows.size], bool)
  bodies, lengths = lookup.dense_bodies_np(rows, lookup.max_body_length)
  if bodies.shape[1] < span.size:
    return np.zeros([rows.size], bool)
  windows = np.lib.stride_tricks.sliding_window_view(bodies, span.size, axis=1)
  match = (windows == span).all(-1)                                     # [R, L - s + 1]
  fits = np.arange(match.shape[1])[None, :] <= (lengths - span.size)[:, None]
  return (match & fits).any(-1)


def choose_evidence(span: Sequence[int], ranked_rows: np.ndarray, own_row: int,
                    lookup: BlockLookup, distractor: bool = False) -> tuple:
  """(row, holds_span) for one query from its BM25 candidates `ranked_rows` (best first): the
  best candidate other than `own_row` that holds `span`, or the best other candidate when none
  does; with `distractor`, the best other candidate that does not hold `span` (a holder only if
  every other candidate holds it)."""
  ranked = np.asarray(ranked_rows, np.int64)
  ranked = ranked[ranked != own_row]
  if ranked.size == 0:
    return max(own_row, 0), False
  holds = holds_span(lookup, ranked, span)
  if distractor:
    free = np.flatnonzero(~holds)
    return (int(ranked[free[0]]), False) if free.size else (int(ranked[0]), True)
  if holds.any():
    return int(ranked[int(np.argmax(holds))]), True
  return int(ranked[0]), False


def evidence_examples(annotations_dir: str, masker, lookup: BlockLookup, num_examples: int,
                      joint_seq_length: int, seed: int = 0, shuffle_window: int = 16384,
                      heldout_fraction: float = 0.0,
                      realm_query_fraction: float = 0.0,
                      distractor_rate: float = 0.0,
                      search_depth: int = SEARCH_DEPTH) -> Dict[str, np.ndarray]:
  """`num_examples` warm-up examples as arrays: INPUT_KEYS [N, joint_seq_length], the masked
  triple [N, max_predictions], `block_id` (the query's own block), `evidence_block_id`,
  `holds_span` (whether the evidence block contains the masked span) and `distractor` (whether
  the query was drawn to read a distractor, with probability `distractor_rate`).

  Evidence is chosen among each query's `search_depth` best blocks by BM25 over the corpus of
  `lookup` (built once, streaming the corpus shards).
  """
  if not 0.0 <= distractor_rate <= 1.0:
    raise ValueError(f"distractor_rate must be in [0, 1], got {distractor_rate}.")
  tok = masker.tokenizer
  bm25 = BM25Index.from_texts(lookup.joined_texts(), num_docs=lookup.size)
  depth = min(search_depth + 1, bm25.size)  # one more: the own block is dropped
  masked = indexed_masked_examples(annotations_dir, masker, 0, seed, shuffle_window,
                                   heldout_fraction, realm_query_fraction,
                                   role="warmup").take(num_examples).batch(64)
  draws = np.random.RandomState(seed).random_sample(num_examples) < distractor_rate
  progress = ItemProgress(num_examples, "evidence", "queries")
  seen = 0
  parts: Dict[str, List[np.ndarray]] = collections.defaultdict(list)
  for batch in masked:
    x = query_wordpieces(batch["input_word_ids"], batch["input_mask"])
    unmasked = tf.ragged.boolean_mask(x, tf.not_equal(x, tok.mask_id))
    query_texts = [t.decode() for t in tok.detokenize(unmasked).numpy().tolist()]
    own_rows = lookup.rows_np(batch["block_id"].numpy())
    ids, weights = batch["masked_ids"].numpy(), batch["masked_weights"].numpy()
    _, ranked = bm25.search(query_texts, depth)
    rows, holds = [], []
    distract, seen = draws[seen:seen + len(query_texts)], seen + len(query_texts)
    for i in range(len(query_texts)):
      row, held = choose_evidence(ids[i][weights[i] > 0], ranked[i], int(own_rows[i]), lookup,
                                  bool(distract[i]))
      rows.append(row)
      holds.append(held)
    joint = pack_pair(x, lookup.bodies_ragged(tf.constant(rows, tf.int64)), joint_seq_length,
                      tok.cls_id, tok.sep_id)
    for k in INPUT_KEYS:
      parts[k].append(joint[k].numpy().astype(np.int32))
    for k in ("masked_positions", "masked_ids", "masked_weights", "block_id"):
      parts[k].append(batch[k].numpy())
    parts["evidence_block_id"].append(np.asarray(lookup.block_ids[rows]))
    parts["holds_span"].append(np.asarray(holds, bool))
    parts["distractor"].append(distract.copy())
    progress.add(len(rows))
  if not parts:
    raise ValueError(f"No masked training queries in {annotations_dir} (held-out fraction "
                     f"{heldout_fraction}).")
  return {k: np.concatenate(v) for k, v in parts.items()}


def evidence_dataset(examples: Dict[str, np.ndarray], batch_size: int,
                     start_position: int = 0, num_shards: int = 1,
                     shard_index: int = 0) -> tf.data.Dataset:
  """The examples repeated in order from `start_position`, batched, each batch carrying
  `data_position` (one past its last example's stream position) for exact resume. With several
  input pipelines (one per worker), pipeline `shard_index` reads the stream positions equal to
  it modulo `num_shards`: every host holds the same examples and reads its own share."""
  keys = list(INPUT_KEYS) + ["masked_positions", "masked_ids", "masked_weights"]
  ds = tf.data.Dataset.from_tensor_slices({k: examples[k] for k in keys}).repeat()
  ds = tf.data.Dataset.zip(tf.data.Dataset.counter(), ds).skip(start_position)
  if num_shards > 1:
    ds = ds.filter(lambda i, e: i % num_shards == shard_index)
  return corpus_lib.batch_with_data_position(ds.map(lambda i, e: dict(e, index=i)), batch_size)
