"""Zero-shot retrieval recall@k, the pre-training job's before/after yardstick.

Two measurements, both exact MIPS over an index's document embeddings:
- masked sentences whose source block is known: a hit when the source block is in the top k;
- SQuAD-open: SQuAD dev questions against the corpus; a hit when a block of the question's gold
  paragraph is in the top k.
"""
from typing import Callable, Dict, List, Sequence

import numpy as np
import tensorflow as tf

from realm_tf.data import corpus
from realm_tf.data.squad_open import SquadQuestion
from realm_tf.text import RealmTokenizer, pack_query

INPUT_KEYS = ("input_word_ids", "input_mask", "input_type_ids")


def top_k_rows(query_embeddings: np.ndarray, doc_embeddings: np.ndarray, k: int) -> np.ndarray:
  """Exact top-k rows by inner product, best first: int64 [Q, k]."""
  scores = query_embeddings @ doc_embeddings.T
  part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
  order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
  return np.take_along_axis(part, order, axis=1)


def recall_at_k(retrieved_block_ids: np.ndarray, gold: Sequence[set]) -> float:
  """Share of queries with at least one gold block among their retrieved ids."""
  hits = [bool(set(row.tolist()) & g) for row, g in zip(retrieved_block_ids, gold)]
  return float(np.mean(hits)) if hits else 0.0


def embed_texts(embed_queries: Callable, texts: List[str], seq_length: int = 96,
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


def doc_blocks(corpus_dir: str) -> Dict[str, set]:
  """doc_id → set of its block ids, from the corpus shards."""
  out: Dict[str, set] = {}
  for b in corpus.read_blocks(corpus_dir).ragged_batch(4096):
    for doc, bid in zip(b["doc_id"].numpy(), b["block_id"].numpy()):
      out.setdefault(doc.decode("utf-8"), set()).add(int(bid))
  return out


def squad_recall(embed_queries: Callable, doc_embeddings: np.ndarray, row_block_ids: np.ndarray,
                 questions: Sequence[SquadQuestion], blocks_of_doc: Dict[str, set],
                 k: int = 5) -> float:
  """Recall@k of SQuAD questions against their gold paragraphs' blocks."""
  q = embed_texts(embed_queries, [x.question for x in questions])
  rows = top_k_rows(q, doc_embeddings, k)
  gold = [blocks_of_doc.get(x.doc_id, set()) for x in questions]
  return recall_at_k(row_block_ids[rows], gold)


def masked_sentence_recall(embed_queries: Callable, doc_embeddings: np.ndarray,
                           row_block_ids: np.ndarray, features: Dict[str, np.ndarray],
                           k: int = 5) -> float:
  """Recall@k of masked sentences against their own source block (`features["block_id"]`)."""
  q = embed_packed(embed_queries, features)
  rows = top_k_rows(q, doc_embeddings, k)
  return recall_at_k(row_block_ids[rows], [{int(b)} for b in features["block_id"]])
