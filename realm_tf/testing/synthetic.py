"""Generated corpora in which each masked target can be predicted only from one other block.

The *code book*: for every entity (a name) the knowledge corpus holds a fact block, "the code of
<name> is <value> ." stated twice, and the pre-training corpus the sentence "the code of <name>
is <value> .", whose
value is annotated as its salient span. A REALM query is that sentence with the value masked; the
only block that tells the value is the fact block of the same name. Values are drawn so that none is predictable from the name or the prior: a
model can fill the mask only by retrieving the right fact block and reading it. This is what the
retrieval-needed fidelity test trains on: recall@1 of the fact block starts near chance and must
climb, and only the retriever's REALM gradient can make it climb.

Corpus and annotations are written in the project's on-disk formats (`realm_tf.data.corpus`)
directly, without Beam or spaCy, so the fixture costs well under a second.
"""
import dataclasses
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np

from realm_tf.data import corpus as corpus_lib
from realm_tf.io import atomic


def _whole_words(tokenizer, count: int, rng: np.random.RandomState, exclude=()) -> List[str]:
  """`count` distinct lower-case alphabetic vocabulary words that stay one wordpiece each."""
  pool = [w for w in tokenizer.vocab[2000:12000]
          if w.isalpha() and w.isascii() and 4 <= len(w) <= 9 and w not in exclude]
  return list(rng.choice(pool, size=count, replace=False))


def write_corpus(corpus_dir: str, docs: Sequence[Tuple[str, str, str]], tokenizer,
                 max_block_length: int) -> Dict:
  """Writes (doc_id, title, body) documents as one block each; returns the manifest."""
  os.makedirs(corpus_dir, exist_ok=True)
  titles = tokenizer.tokenize([d[1] for d in docs]).to_list()
  bodies = tokenizer.tokenize([d[2] for d in docs]).to_list()
  records = []
  for (doc_id, title, body), t_ids, b_ids in zip(docs, titles, bodies):
    if len(t_ids) + len(b_ids) + 3 > max_block_length:
      raise ValueError(f"Document {doc_id} does not fit one block of {max_block_length}.")
    records.append(corpus_lib.block_example(corpus_lib.block_id_for(doc_id, 0), doc_id, title,
                                            body, t_ids, b_ids))
  shard = corpus_lib.write_shard(os.path.join(corpus_dir, corpus_lib.SHARD_PATTERN.format(0, 1)),
                                 records)
  return corpus_lib.write_manifest(corpus_dir, [shard], tokenizer.fingerprint, max_block_length,
                                   extra={"builder": "realm_tf.testing.synthetic"})


def write_annotations(annotations_dir: str, records: Sequence[Dict]) -> Dict:
  """Writes annotation records ({title, text, sentences, spans, types, block_id}, byte offsets)."""
  os.makedirs(annotations_dir, exist_ok=True)
  serialized = [corpus_lib.annotation_example(r["title"], r["text"], r["sentences"], r["spans"],
                                              r["types"], r["block_id"]) for r in records]
  shard = corpus_lib.write_shard(
      os.path.join(annotations_dir, corpus_lib.ANNOTATION_SHARD_PATTERN.format(0, 1)), serialized)
  shard["num_records"] = shard.pop("num_blocks")
  manifest = {"num_records": shard["num_records"], "shards": [shard],
              "builder": "realm_tf.testing.synthetic"}
  atomic.write_json(os.path.join(annotations_dir, corpus_lib.ANNOTATION_MANIFEST),
                               manifest)
  return manifest


@dataclasses.dataclass
class CodeBook:
  """Where the code book was written and what retrieval must find."""
  corpus_dir: str
  annotations_dir: str
  names: List[str]
  values: List[str]
  fact_block_ids: List[int]    # entity i's fact block: the only block that tells its value
  max_block_length: int


def code_words(tokenizer, num_values: int = 16, seed: int = 0) -> List[str]:
  """The vocabulary of codes (values) a code book draws from."""
  return _whole_words(tokenizer, num_values, np.random.RandomState(seed + 7919),
                      exclude=("code", "ledger"))


def code_book(work_dir: str, tokenizer, num_entities: int = 256, num_values: int = 16,
              seed: int = 0, max_block_length: int = 24, title: str = "ledger",
              codes: Sequence[str] = (), distinct: bool = False,
              code_length: int = 1) -> CodeBook:
  """Writes the code book under `work_dir` (see module docstring).

  The knowledge corpus Z holds the fact blocks only; the query sentences form a separate
  pre-training corpus X (annotation records with block id -1, as REALM's CC-News X beside its
  Wikipedia Z), so every candidate is a fact block and chance recall@1 is 1 / num_entities.
  Annotation record i is entity i's query.
  """
  rng = np.random.RandomState(seed)
  codes = list(codes) or code_words(tokenizer, num_values, seed)
  names = _whole_words(tokenizer, num_entities, rng, exclude={"code", "ledger", *codes})
  # A value is `code_length` code words; `distinct` values are drawn without replacement from
  # all len(codes) ** code_length of them.
  combos = len(codes) ** code_length
  picks = rng.choice(combos, size=num_entities, replace=False) if distinct else \
      rng.randint(0, combos, size=num_entities)
  values = [" ".join(codes[(p // len(codes) ** j) % len(codes)] for j in range(code_length))
            for p in picks]
  docs, annotations, fact_ids = [], [], []
  for i, (name, value) in enumerate(zip(names, values)):
    fact_doc = f"fact/{i}"
    # The fact is stated twice, so MLM on the corpus alone (the reader warm-up, no retrieval)
    # can teach a reader to fill one statement from the other: the skill reading a retrieved
    # fact block needs. In every reader input ([CLS] query [SEP] fact [SEP]) the value then sits
    # a fixed distance after the mask.
    docs.append((fact_doc, title, f"the code of {name} is {value} . "
                                  f"the code of {name} is {value} ."))
    text = f"the code of {name} is {value} ."
    start = len(text.encode("utf-8")) - len(f"{value} .".encode("utf-8"))
    annotations.append({"title": title, "text": text, "sentences": [(0, len(text.encode()))],
                        "spans": [(start, start + len(value.encode()))], "types": ["CODE"],
                        "block_id": -1})
    fact_ids.append(corpus_lib.block_id_for(fact_doc, 0))
  corpus_dir = os.path.join(work_dir, "corpus")
  annotations_dir = os.path.join(work_dir, "annotations")
  write_corpus(corpus_dir, docs, tokenizer, max_block_length)
  write_annotations(annotations_dir, annotations)
  return CodeBook(corpus_dir, annotations_dir, names, values, fact_ids, max_block_length)


def helpful_recall_at_1(bundle, masked_features: Dict[str, np.ndarray],
                        helpful_block_ids: Sequence[int]) -> float:
  """Share of masked queries whose top block under `bundle` (its query embedder and index) is
  the one block holding their answer (`helpful_block_ids[i]` for query i)."""
  emb = np.asarray(bundle.embeddings, np.float32)
  ids = np.asarray(bundle.block_ids)
  q = np.asarray(bundle.query_embedder.embed_queries(
      {k: masked_features[k] for k in ("input_word_ids", "input_mask", "input_type_ids")}))
  top = ids[np.argmax(q @ emb.T, axis=1)]
  return float(np.mean(top == np.asarray(helpful_block_ids))) if len(top) else 0.0


def masked_features(annotations_dir: str, masking_config, tokenizer) -> Dict[str, np.ndarray]:
  """Every masked query of the annotations, in record order (`index` = record number)."""
  from realm_tf.data import corpus  # pylint: disable=g-import-not-at-top
  from realm_tf.data import masking as masking_lib  # pylint: disable=g-import-not-at-top
  ds = masking_lib.Masker(masking_config, tokenizer).dataset(
      corpus.read_annotations(annotations_dir), keep_index=True)
  return {k: v.numpy() for k, v in next(iter(ds.batch(100000))).items()}
