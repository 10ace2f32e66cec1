"""The vectors `mips_bench` searches: synthetic clustered ones, MiniLM embeddings of the shipped
SQuAD dev set, or an index bundle's own document and question embeddings."""
import gzip
import json
import os
import time

import numpy as np


def synthetic(n, dim, nq, clusters, noise, seed=0):
  """Clustered vectors (Gaussian around random centres) and held-out queries from the same
  centres."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(clusters, dim)).astype(np.float32)
  x = np.empty([n, dim], np.float32)
  for start in range(0, n, 100_000):
    m = min(100_000, n - start)
    x[start:start + m] = centres[rng.integers(0, clusters, m)] + noise * rng.normal(
        size=(m, dim)).astype(np.float32)
  q = (centres[rng.integers(0, clusters, nq)]
       + noise * rng.normal(size=(nq, dim))).astype(np.float32)
  return x, q


def squad_embeddings(nq):
  """MiniLM (both towers) embeddings of SQuAD dev paragraphs and the first `nq` questions."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realm_tf.checkpoints.hf_bert import default_minilm_dir, load_hf_bert_into_encoder  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.retriever import Retriever, RetrieverConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.text import RealmTokenizer, pack_document, pack_query  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "realm_tf",
                      "data", "default_corpus", "squad-dev-v1.1.json.gz")
  with gzip.open(path, "rt") as f:
    data = json.load(f)["data"]
  titles, contexts, questions = [], [], []
  for article in data:
    for para in article["paragraphs"]:
      titles.append(article["title"].replace("_", " "))
      contexts.append(para["context"])
      questions.extend(qa["question"] for qa in para["qas"])
  questions = questions[:nq]
  tok = RealmTokenizer()
  retriever = Retriever(RetrieverConfig(encoder="minilm")).build_towers()
  load_hf_bert_into_encoder(default_minilm_dir(), retriever.query_encoder)
  load_hf_bert_into_encoder(default_minilm_dir(), retriever.doc_encoder)
  embed_d = tf.function(lambda f: retriever.embed_documents(f))
  embed_q = tf.function(lambda f: retriever.embed_queries(f))
  docs, qs = [], []
  t = time.time()
  for i in range(0, len(contexts), 64):
    packed = pack_document(tok.tokenize(titles[i:i + 64]), tok.tokenize(contexts[i:i + 64]),
                           288, tok.cls_id, tok.sep_id)
    docs.append(embed_d(packed).numpy())
  doc_seconds = time.time() - t
  for i in range(0, len(questions), 128):
    packed = pack_query(tok.tokenize(questions[i:i + 128]), 96, tok.cls_id, tok.sep_id)
    qs.append(embed_q(packed).numpy())
  return np.concatenate(docs), np.concatenate(qs), {
      "corpus": "SQuAD v1.1 dev paragraphs (documents) and questions (queries)",
      "encoder": "all-MiniLM-L6-v2 weights in both towers, random 128-d projection",
      "num_documents": len(contexts), "doc_embedding_seconds": doc_seconds}


def bundle_embeddings(index_dir, nq):
  """The latest bundle's document embeddings and its query embedder's SQuAD-question embeddings."""
  from realm_tf.data.squad_open import load_squad_questions  # pylint: disable=g-import-not-at-top
  from realm_tf.evaluation.recall import embed_texts  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  bundle = bundle_lib.latest(index_dir)
  x = np.asarray(bundle.embeddings, np.float32)
  questions = [s.question for s in load_squad_questions(limit=nq)]
  meta = bundle.query_embedder.metadata
  # The bundle's query tower takes the query length it was exported with (the main job's is 32).
  q = np.asarray(embed_texts(bundle.query_embedder.embed_queries, questions,
                             seq_length=bundle.query_embedder.query_seq_length),
                 np.float32)
  return x, q, {"corpus": "shipped SQuAD v1.1 dev paragraphs (index bundle) and questions",
                "encoder": f"bundle {bundle.path} (step {bundle.step}), retriever "
                           f"{meta.get('retriever_config', {}).get('pooling', 'cls')}-pooled, "
                           f"encoder hidden {meta['encoder_config']['hidden_size']}",
                "num_documents": int(x.shape[0])}
