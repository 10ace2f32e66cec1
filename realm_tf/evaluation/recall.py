"""Zero-shot retrieval recall@k of an index bundle (exact MIPS over its document embeddings).

- SQuAD-open questions against the corpus: a hit when a block of the question's gold paragraph
  is in the top k (`squad_recall`). The held-out evaluation (`heldout.py`) uses the dev split.
- Own-block recall: masked sentences against the block they were cut from (`own_block_recall`).
  This is what ICT trains for; it is *not* a measure of REALM's progress, because REALM removes
  a query's own block from its candidates by design.
"""
import collections
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from realm_tf.data import corpus
from realm_tf.data.squad_open import SquadQuestion
from realm_tf.openqa.metrics import recall_at_k
from realm_tf.retrieval.topk import exact_top_k
from realm_tf.text import RealmTokenizer, pack_query, packing
from realm_tf.text.packing import INPUT_KEYS
EVAL_SEED = 20_200_210  # masking seed of evaluation queries (differs from any training seed)


def gold_hits(retrieved_block_ids: np.ndarray, gold: Sequence[set]) -> np.ndarray:
  """bool [Q, K]: whether each retrieved id (best first) is one of its query's gold blocks;
  recall@k is `metrics.recall_at_k` of it."""
  rows = np.asarray(retrieved_block_ids)
  hits = np.zeros(rows.shape, bool)
  for i, (row, g) in enumerate(zip(rows, gold)):
    hits[i] = [int(b) in g for b in row.tolist()]
  return hits


def gold_recall(retrieved_block_ids: np.ndarray, gold: Sequence[set]) -> float:
  """Share of queries with at least one gold block among their retrieved ids (all K of them)."""
  rows = np.asarray(retrieved_block_ids)
  return recall_at_k(gold_hits(rows, gold), [rows.shape[-1]])[rows.shape[-1]]


def hub_share(retrieved_block_ids: np.ndarray) -> float:
  """The largest share of queries that have one same block among their retrieved ids.

  A healthy retriever spreads its queries over many blocks (a few percent at most share one);
  one that has collapsed onto a few "hub" blocks returns the same block for most queries, which
  recall alone shows only once it has fallen. The REALM retriever's gradient can do this when
  its reader is harmed less by near-empty blocks than by real ones (docs/LEARNING.md,
  "Hub blocks").
  """
  rows = np.asarray(retrieved_block_ids)
  if rows.size == 0:
    return 0.0
  counts = collections.Counter(bid for row in rows for bid in set(row.tolist()))
  return max(counts.values()) / len(rows)


def embed_texts(embed_queries: Callable, texts: List[str], seq_length: int = packing.QUERY_LENGTH,
                tokenizer: RealmTokenizer = None, batch_size: int = 128) -> np.ndarray:
  """Embeds raw query strings with `embed_queries(packed features) → [B, D]`."""
  tokenizer = tokenizer or RealmTokenizer()
  out = []
  for i in range(0, len(texts), batch_size):
    ids = tokenizer.tokenize(tf.constant(texts[i:i + batch_size]))
    feats = pack_query(ids, seq_length, tokenizer.cls_id, tokenizer.sep_id)
    out.append(np.asarray(embed_queries(feats)))
  return np.concatenate(out) if out else np.zeros([0, 128], np.float32)


def embed_packed(embed_queries: Callable, features: Dict[str, np.ndarray],
                 batch_size: int = 128) -> np.ndarray:
  """Embeds already-packed queries (e.g. masked sentences)."""
  n = len(features["input_word_ids"])
  out = [np.asarray(embed_queries({k: tf.constant(features[k][i:i + batch_size])
                                   for k in INPUT_KEYS}))
         for i in range(0, n, batch_size)]
  return np.concatenate(out)


def squad_recall(embed_queries: Callable, doc_embeddings: np.ndarray, row_block_ids: np.ndarray,
                 questions: Sequence[SquadQuestion], blocks_of_doc: Dict[str, set],
                 k: int = 5) -> float:
  """Recall@k of SQuAD questions against their gold paragraphs' blocks."""
  q = embed_texts(embed_queries, [x.question for x in questions])
  rows = exact_top_k(q, doc_embeddings, k)[0]
  gold = [blocks_of_doc.get(x.doc_id, set()) for x in questions]
  return gold_recall(row_block_ids[rows], gold)


def own_block_recall(embed_queries: Callable, doc_embeddings: np.ndarray,
                     row_block_ids: np.ndarray, features: Dict[str, np.ndarray],
                     k: int = 5) -> float:
  """Recall@k of masked sentences against their own source block (`features["block_id"]`):
  ICT's task, not REALM's progress (see the module docstring)."""
  q = embed_packed(embed_queries, features)
  rows = exact_top_k(q, doc_embeddings, k)[0]
  return gold_recall(row_block_ids[rows], [{int(b)} for b in features["block_id"]])


def measure_bundle_recall(bundle, annotations_dir: str, corpus_dir: str, num_queries: int,
                          with_squad: bool, squad_path: Optional[str] = None) -> Dict[str, float]:
  """A bundle's retrieval figures that need no reader: own-block recall@5 of masked sentences
  (evaluation seed) and, with `with_squad`, SQuAD-open dev question recall@5 and @20."""
  from realm_tf.data import masking as masking_lib  # pylint: disable=g-import-not-at-top
  tokenizer = RealmTokenizer()
  length = bundle.query_embedder.query_seq_length
  emb = bundle.embeddings  # read a tile at a time by exact_top_k
  ids = np.asarray(bundle.block_ids)
  embed = bundle.query_embedder.embed_queries
  masked = masking_lib.masked_dataset(
      annotations_dir, masking_lib.MaskingConfig(seed=EVAL_SEED, query_length=length), tokenizer)
  feats = {k: v.numpy() for k, v in next(iter(masked.take(num_queries).batch(num_queries))).items()}
  out = {"own_block_recall@5": own_block_recall(embed, emb, ids, feats)}
  if with_squad:
    from realm_tf.data.squad_open import load_squad_questions  # pylint: disable=g-import-not-at-top
    questions = load_squad_questions(squad_path, split="dev")
    rng = np.random.RandomState(0)
    pick = sorted(rng.choice(len(questions), size=min(num_queries, len(questions)),
                             replace=False))
    questions = [questions[i] for i in pick]
    q = embed_texts(embed, [x.question for x in questions], seq_length=length,
                    tokenizer=tokenizer)
    rows = exact_top_k(q, emb, min(20, len(ids)))[0]
    blocks = corpus.doc_blocks(corpus_dir, [x.doc_id for x in questions])
    gold = [blocks.get(x.doc_id, set()) for x in questions]
    out["question_recall@5"] = gold_recall(ids[rows[:, :5]], gold)
    out["question_recall@20"] = gold_recall(ids[rows], gold)
  out["index_version"] = bundle.version
  return out
