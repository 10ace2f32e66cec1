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
  block, which REALM's candidates never hold either), the best by BM25 among those; where no
  other block holds the span, it is BM25's best other block, as an unhelpful retrieval would be;
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
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from realm_tf.data import corpus as corpus_lib
from realm_tf.data.block_store import BlockStore
from realm_tf.data.pretrain_pipeline import indexed_masked_examples, query_wordpieces
from realm_tf.retrieval.bm25 import BM25Index
from realm_tf.text import pack_pair
from realm_tf.text.packing import INPUT_KEYS
from realm_tf.training.progress import ItemProgress


class SpanIndex:
  """Which blocks hold a given run of wordpieces: a posting set per wordpiece narrows the blocks,
  an exact window comparison confirms them."""

  def __init__(self, bodies: Sequence[Sequence[int]]):
    self.bodies = [np.asarray(b, np.int32) for b in bodies]
    postings = collections.defaultdict(set)
    for row, body in enumerate(self.bodies):
      for piece in set(body.tolist()):
        postings[piece].add(row)
    self._postings = postings

  def rows_containing(self, span: Sequence[int]) -> List[int]:
    """Rows whose body contains `span` contiguously, in row order (empty for an empty span)."""
    span = np.asarray(span, np.int32)
    if span.size == 0:
      return []
    sets = sorted((self._postings.get(int(p), set()) for p in set(span.tolist())), key=len)
    rows = set.intersection(*sets)
    found = []
    for row in sorted(rows):
      body = self.bodies[row]
      if len(body) >= len(span) and \
          (np.lib.stride_tricks.sliding_window_view(body, len(span)) == span).all(1).any():
        found.append(row)
    return found


def choose_evidence(span: Sequence[int], query_text: str, own_row: int, spans: SpanIndex,
                    bm25: BM25Index, distractor: bool = False) -> tuple:
  """(row, holds_span): the BM25-best block other than `own_row` among those holding `span`, or
  the BM25-best other block when none holds it; with `distractor`, the BM25-best other block
  that does not hold `span` (a holder only if every other block holds it)."""
  holders = [r for r in spans.rows_containing(span) if r != own_row]
  if holders and not distractor:  # only the holders need scoring
    return holders[int(np.argmax(bm25.scores(query_text, holders)))], True
  scores = bm25.scores(query_text)
  if own_row >= 0:
    scores[own_row] = -np.inf
  if distractor and len(holders) < len(scores) - (own_row >= 0):
    scores[holders] = -np.inf
  row = int(np.argmax(scores))
  return row, row in holders


def evidence_examples(annotations_dir: str, masker, store: BlockStore, num_examples: int,
                      joint_seq_length: int, seed: int = 0, shuffle_window: int = 16384,
                      heldout_fraction: float = 0.0,
                      realm_query_fraction: float = 0.0,
                      distractor_rate: float = 0.0) -> Dict[str, np.ndarray]:
  """`num_examples` warm-up examples as arrays: INPUT_KEYS [N, joint_seq_length], the masked
  triple [N, max_predictions], `block_id` (the query's own block), `evidence_block_id`,
  `holds_span` (whether the evidence block contains the masked span) and `distractor` (whether
  the query was drawn to read a distractor, with probability `distractor_rate`).

  `store` must keep its text (`BlockStore(..., keep_text=True)`) for BM25.
  """
  if store.bodies is None:
    raise ValueError("evidence_examples needs a BlockStore built with keep_text=True.")
  tok = masker.tokenizer
  texts = [f"{t.decode()} {b.decode()}" for t, b in zip(store.titles.numpy().tolist(),
                                                         store.bodies.numpy().tolist())]
  bm25 = BM25Index(texts)
  spans = SpanIndex(store.body_ids.to_list())
  masked = indexed_masked_examples(annotations_dir, masker, 0, seed, shuffle_window,
                                   heldout_fraction, realm_query_fraction,
                                   role="warmup").take(num_examples).batch(64)
  if not 0.0 <= distractor_rate <= 1.0:
    raise ValueError(f"distractor_rate must be in [0, 1], got {distractor_rate}.")
  draws = np.random.RandomState(seed).random_sample(num_examples) < distractor_rate
  progress = ItemProgress(num_examples, "evidence", "queries")
  seen = 0
  parts: Dict[str, List[np.ndarray]] = collections.defaultdict(list)
  for batch in masked:
    x = query_wordpieces(batch["input_word_ids"], batch["input_mask"])
    unmasked = tf.ragged.boolean_mask(x, tf.not_equal(x, tok.mask_id))
    query_texts = [t.decode() for t in tok.detokenize(unmasked).numpy().tolist()]
    own_rows = store.rows(batch["block_id"]).numpy()
    ids, weights = batch["masked_ids"].numpy(), batch["masked_weights"].numpy()
    rows, holds = [], []
    distract, seen = draws[seen:seen + len(query_texts)], seen + len(query_texts)
    for i, text in enumerate(query_texts):
      row, held = choose_evidence(ids[i][weights[i] > 0], text, int(own_rows[i]), spans, bm25,
                                  bool(distract[i]))
      rows.append(row)
      holds.append(held)
    joint = pack_pair(x, store.bodies_ragged(tf.constant(rows, tf.int64)), joint_seq_length,
                      tok.cls_id, tok.sep_id)
    for k in INPUT_KEYS:
      parts[k].append(joint[k].numpy().astype(np.int32))
    for k in ("masked_positions", "masked_ids", "masked_weights", "block_id"):
      parts[k].append(batch[k].numpy())
    parts["evidence_block_id"].append(store.block_ids[rows])
    parts["holds_span"].append(np.asarray(holds, bool))
    parts["distractor"].append(distract.copy())
    progress.add(len(rows))
  if not parts:
    raise ValueError(f"No masked training queries in {annotations_dir} (held-out fraction "
                     f"{heldout_fraction}).")
  return {k: np.concatenate(v) for k, v in parts.items()}


def evidence_dataset(examples: Dict[str, np.ndarray], batch_size: int,
                     start_position: int = 0) -> tf.data.Dataset:
  """The examples repeated in order from `start_position`, batched, each batch carrying
  `data_position` (one past its last example's stream position) for exact resume."""
  keys = list(INPUT_KEYS) + ["masked_positions", "masked_ids", "masked_weights"]
  ds = tf.data.Dataset.from_tensor_slices({k: examples[k] for k in keys}).repeat()
  ds = tf.data.Dataset.zip(tf.data.Dataset.counter(), ds).skip(start_position)
  return corpus_lib.batch_with_data_position(ds.map(lambda i, e: dict(e, index=i)), batch_size)
