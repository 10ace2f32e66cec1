"""Fixtures for the open-QA tests: a small real-text corpus, questions about it, a micro model.

The corpus is written with the real corpus writer (`corpus.write_shard` + `write_manifest`) and
the index bundle with the real publisher, so the tests read the same files the pipeline makes.
"""
import dataclasses
import os
from typing import Callable, List, Optional, Tuple

import numpy as np

from realm_tf.data import corpus as corpus_lib
from realm_tf.modeling.encoder_config import EncoderConfig
from realm_tf.modeling.reader import ReaderConfig
from realm_tf.modeling.retriever import RetrieverConfig
from realm_tf.modeling.openqa_features import OpenQAExample

QUERY_LEN = 16
DOC_LEN = 48
READER_LEN = 64
READER_QUERY_LEN = 16

MICRO = EncoderConfig(vocab_size=30522, hidden_size=32, num_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=128)

FACTS: List[Tuple[str, str, str, str]] = [
    # (title, body, question, answer)
    ("Paris", "Paris is the capital of France and lies on the Seine river.",
     "What is the capital of France?", "Paris"),
    ("Mount Everest", "Mount Everest is the highest mountain on Earth, in the Himalayas.",
     "What is the highest mountain on Earth?", "Mount Everest"),
    ("Water", "Water boils at one hundred degrees Celsius at sea level.",
     "At how many degrees Celsius does water boil?", "one hundred"),
    ("Shakespeare", "Hamlet is a tragedy written by William Shakespeare around 1600.",
     "Who wrote Hamlet?", "William Shakespeare"),
    ("Jupiter", "Jupiter is the largest planet in the Solar System.",
     "Which is the largest planet in the Solar System?", "Jupiter"),
    ("Danube", "The Danube flows through Vienna, Budapest and Belgrade to the Black Sea.",
     "Into which sea does the Danube flow?", "Black Sea"),
    ("Penicillin", "Alexander Fleming discovered penicillin in 1928 in London.",
     "Who discovered penicillin?", "Alexander Fleming"),
    ("Tokyo", "Tokyo hosted the Summer Olympic Games in 1964 and in 2021.",
     "Which city hosted the 1964 Summer Olympics?", "Tokyo"),
    ("Amazon", "The Amazon rainforest covers much of Brazil and Peru.",
     "Which rainforest covers much of Brazil?", "Amazon"),
    ("Mozart", "Wolfgang Amadeus Mozart was born in Salzburg in 1756.",
     "In which city was Mozart born?", "Salzburg"),
    ("Moon", "Neil Armstrong was the first person to walk on the Moon in 1969.",
     "Who was the first person to walk on the Moon?", "Neil Armstrong"),
    ("Nile", "The Nile is a long river in Africa that flows north into the Mediterranean.",
     "Which river flows north into the Mediterranean?", "Nile"),
]


ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")


def distractor_facts(n: int) -> List[Tuple[str, str, str, str]]:
  """`n` ≤ 8 blocks that hold none of the FACTS' answers (their question and answer are unused)."""
  return [(f"Filler {ORDINALS[j]}", f"The {ORDINALS[j]} filler passage talks about nothing in "
           "particular and names no place or person.", "", "") for j in range(n)]


def examples(limit: Optional[int] = None) -> List[OpenQAExample]:
  """One question per fact, answers plain strings; `doc_id` is the fact's corpus document."""
  return [OpenQAExample(f"q{i}", q, (a,), False, f"fact{i}")
          for i, (_, _, q, a) in enumerate(FACTS[:limit])]


def unreachable_answers(fact_block_ids, scale: float = 1.0) -> Callable:
  """`embeddings_fn` for make_bundle: an index whose fact blocks can never be in a top K ≤ D.

  Fact blocks get the zero embedding (score 0 for every query); the j-th other block gets
  ±scale · e_(j // 2) (D = projection size, 2D such blocks). A query with all D coordinates
  non-zero (a LayerNorm'ed projection) scores D of those blocks above 0, so the top K ≤ D are
  all distractors while every fact block stays in the retriever beam.
  """
  facts = {int(b) for b in fact_block_ids}

  def fn(block_ids, emb):
    out = np.zeros_like(emb)
    j = 0
    for r, b in enumerate(block_ids):
      if int(b) in facts:
        continue
      out[r, j // 2] = scale if j % 2 == 0 else -scale
      j += 1
    return out
  return fn


def make_text_corpus(corpus_dir: str, facts=FACTS, num_shards: int = 2,
                     max_block_length: int = DOC_LEN) -> List[int]:
  """Writes one block per fact (real wordpieces); returns the block ids in row order."""
  from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
  tok = RealmTokenizer()
  os.makedirs(corpus_dir, exist_ok=True)
  titles = tok.tokenize([f[0] for f in facts]).to_list()
  bodies = tok.tokenize([f[1] for f in facts]).to_list()
  records = []
  ids = []
  for i, (title, body, _, _) in enumerate(facts):
    block_id = corpus_lib.block_id_for(f"fact{i}", 0)
    records.append(corpus_lib.block_example(block_id, f"fact{i}", title, body, titles[i],
                                            bodies[i]))
    ids.append(block_id)
  per = int(np.ceil(len(records) / num_shards))
  shards = []
  for s in range(num_shards):
    path = os.path.join(corpus_dir, corpus_lib.SHARD_PATTERN.format(s, num_shards))
    shards.append(corpus_lib.write_shard(path, records[s * per:(s + 1) * per]))
  corpus_lib.write_manifest(corpus_dir, shards, tok.fingerprint, max_block_length)
  return ids


def micro_retriever_config(pooling: str = "cls", projection_size: int = 128) -> RetrieverConfig:
  """The micro retriever; `pooling` is RetrieverConfig.pooling (cls | mean)."""
  return RetrieverConfig(encoder=MICRO, query_seq_length=QUERY_LEN, doc_seq_length=DOC_LEN,
                         pooling=pooling, projection_size=projection_size)


def micro_reader_config(span_hidden_size: int = 16) -> ReaderConfig:
  return ReaderConfig(encoder=MICRO, span_hidden_size=span_hidden_size, max_span_width=10,
                      seq_length=READER_LEN, query_length=READER_QUERY_LEN)


def make_bundle(work_dir: str, corpus_dir: str, seed: int = 0, pooling: str = "cls",
                projection_size: int = 128,
                embeddings_fn: Optional[Callable] = None) -> Tuple[str, str]:
  """A micro retriever → embedder export → exact-search index bundle over `corpus_dir`.

  `pooling` / `projection_size` shape the retriever (micro_retriever_config).
  `embeddings_fn(block_ids [N], embeddings [N, D]) → [N, D]` may replace the document
  embeddings the bundle holds (e.g. an index whose answer blocks can never be retrieved).
  Returns (index_dir, export_dir).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top
  from realm_tf.data.block_lookup import BlockLookup  # pylint: disable=g-import-not-at-top
  from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.retriever import Retriever  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import embedder_export  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.brute_force import BruteForceSearcher  # pylint: disable=g-import-not-at-top
  tf_keras.utils.set_random_seed(seed)
  retriever = Retriever(micro_retriever_config(pooling, projection_size)).build_towers()
  export = embedder_export.export_embedder(retriever, os.path.join(work_dir, "embedder"), step=1)
  lookup = BlockLookup.open(corpus_dir)
  tok = RealmTokenizer()
  docs = lookup.documents(tf.range(lookup.size, dtype=tf.int64), DOC_LEN, tok.cls_id, tok.sep_id)
  emb = retriever.embed_documents(docs).numpy()
  block_ids = np.array(lookup.block_ids)
  if embeddings_fn is not None:
    emb = np.asarray(embeddings_fn(block_ids, emb), np.float32)
  index_dir = os.path.join(work_dir, "index")
  bundle_lib.publish(index_dir, export_dir=export, searcher=BruteForceSearcher(emb),
                     embeddings=emb, block_ids=block_ids,
                     manifest={"source_export": export, "step": 1,
                               "corpus_dir": os.path.abspath(corpus_dir),
                               "corpus_fingerprint": corpus_lib.load_manifest(corpus_dir)[
                                   "fingerprint"]})
  return index_dir, export


def replace(config, **kwargs):
  """dataclasses.replace, re-exported for tests."""
  return dataclasses.replace(config, **kwargs)


def random_frozen_index(corpus_dir: str, tokenizer, seed: int):
  """The small text corpus (`make_text_corpus`) written to `corpus_dir`, loaded as a FrozenIndex
  with random 128-d block embeddings: a model over it retrieves arbitrarily, so tests of
  batching, evidence and answer spans do not depend on a trained retriever."""
  from realm_tf.data.block_lookup import BlockLookup  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.openqa_model import FrozenIndex  # pylint: disable=g-import-not-at-top
  del tokenizer  # the corpus holds its wordpieces
  make_text_corpus(corpus_dir)
  lookup = BlockLookup.open(corpus_dir)
  emb = np.random.default_rng(seed).normal(size=[lookup.size, 128]).astype(np.float32)
  return FrozenIndex(emb, np.array(lookup.block_ids), lookup)


def micro_model(corpus_dir: str, tokenizer, seed: int, **config):
  """A built micro OpenQAModel (`micro_retriever_config`, `micro_reader_config`, the OpenQAConfig
  fields in `config`) over `random_frozen_index(corpus_dir, tokenizer, seed)`, its weights drawn
  with `seed`."""
  import tf_keras  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.openqa_model import OpenQAConfig, OpenQAModel  # pylint: disable=g-import-not-at-top
  index = random_frozen_index(corpus_dir, tokenizer, seed)
  tf_keras.utils.set_random_seed(seed)
  cfg = OpenQAConfig(retriever=micro_retriever_config(), reader=micro_reader_config(), **config)
  return OpenQAModel(cfg, index, tokenizer.vocab, tokenizer.cls_id, tokenizer.sep_id).build_all()
