"""Open-QA fine-tuning's training data: the featurized questions, with concrete answers for
regex answer sets, the gold document's rows for `reader_positives=gold` and, for a reader
fine-tuned behind BM25, BM25's rows of each question; and the resumable batch stream the Trainer
reads. The question sets themselves come from realm_tf.openqa.datasets.

CuratedTREC's answers are regular expressions, which cannot be looked for as wordpieces: before
training, each pattern is searched (`re.search`) in the blocks the initial query tower (or BM25,
behind BM25) retrieves for its question, and the matched strings become the answers whose
wordpieces mark answer-bearing blocks and gold spans.

Behind BM25 (`retriever="bm25"`) each question's BM25 top rows over the index's blocks are
computed once, on the host, before training: `bm25_rows` int32 [N, M], a feature the stream
carries like any other (BM25 is deterministic and not trained, so a resumed run computes the
same rows). M is the retriever beam (capped at the index size) when a reader positive may be
looked for in it, else the blocks read per question.
"""
import json
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.io import atomic
from realm_tf.io import chief
from realm_tf.modeling.openqa_features import OpenQAExample, QuestionFeaturizer, clean_text
from realm_tf.modeling.openqa_model import FrozenIndex, OpenQAModel

MAX_GOLD_BLOCKS = 8  # blocks of one gold document the `gold` reader positive may pick from


def training_features(examples: Sequence[OpenQAExample], model: OpenQAModel,
                      featurizer: QuestionFeaturizer, corpus_dir: str, model_dir: str,
                      reader_positives: str, regex_search_blocks: int,
                      retriever: str = "dense"
                      ) -> Tuple[List[OpenQAExample], Dict[str, np.ndarray]]:
  """(usable examples, their features): examples with an empty question are skipped (with a
  warning); regex answers are expanded with the warm-started query tower (BM25 behind BM25)
  once and kept in `<model_dir>/regex_answers.json`, so that a resumed run trains on the same
  answers; with `reader_positives="gold"`, `gold_rows` from the examples' `doc_id`s; with
  `retriever="bm25"`, `bm25_rows` (see the module docstring)."""
  usable = [e for e in examples if e.question.strip()]
  if len(usable) < len(examples):
    logging.warning("Skipping %d training examples with an empty question.",
                    len(examples) - len(usable))
  bm25_search = None
  if retriever == "bm25":
    from realm_tf.openqa import bm25_retriever  # pylint: disable=g-import-not-at-top
    beam = model.train_reader_beam_size if reader_positives == "none" else \
        model.retriever_beam_size
    searcher = bm25_retriever.BM25Retriever(model.index, beam, reader_logits="zero")
    bm25_search = lambda batch, k: searcher.search([e.question for e in batch], k)[1]
  answers = None
  if any(e.is_regex for e in usable):
    cache = os.path.join(model_dir, "regex_answers.json")
    if tf.io.gfile.exists(cache):
      with tf.io.gfile.GFile(cache) as f:
        answers = json.load(f)
      if len(answers) != len(usable):
        raise ValueError(f"{cache} holds {len(answers)} answer lists but the run has "
                         f"{len(usable)} questions; use a new --model_dir.")
    else:
      answers = expand_regex_answers(usable, model, featurizer, regex_search_blocks,
                                     retrieve_rows=bm25_search)
      if chief.is_chief_process():  # every worker expands the same answers; the chief keeps them
        atomic.write_json(cache, answers, indent=None, sort_keys=False)
  feats = featurizer.featurize(usable)
  if answers is not None:
    feats.update(featurizer.answer_features(usable, answers))
  if reader_positives == "gold":
    if any(e.doc_id for e in usable):
      feats["gold_rows"] = gold_row_features(usable, model.index, corpus_dir)
    else:
      logging.warning("reader_positives=gold, but no question names its gold document "
                      "(doc_id): the beam's answer-bearing blocks are used instead.")
  if bm25_search is not None:
    feats["bm25_rows"] = bm25_search(usable, searcher.k)
    logging.info("BM25: the top %d rows of %d questions (the blocks the reader reads in "
                 "training).", searcher.k, len(usable))
  return usable, feats



def expand_regex_answers(examples: Sequence[OpenQAExample], model: OpenQAModel,
                         featurizer: QuestionFeaturizer, num_blocks: int = 100,
                         batch_size: int = 64, max_strings: int = 8,
                         retrieve_rows: Optional[Callable] = None) -> List[List[str]]:
  """Concrete answer strings for each example: its answers, or for regex examples the texts the
  patterns match in the `num_blocks` blocks retrieved for the question (by the model's query
  tower, or `retrieve_rows(examples, k)` → index rows [B, k], e.g. BM25's). Bad patterns are
  skipped with a warning naming the example."""
  from realm_tf.openqa import metrics  # pylint: disable=g-import-not-at-top
  out = [list(e.answers) if not e.is_regex else [] for e in examples]
  regex_ids = [i for i, e in enumerate(examples) if e.is_regex]
  if not regex_ids:
    return out
  k = min(num_blocks, model.index.size)
  found_any = 0
  for s in range(0, len(regex_ids), batch_size):
    ids = regex_ids[s:s + batch_size]
    if retrieve_rows is not None:
      rows = np.asarray(retrieve_rows([examples[i] for i in ids], k))
    else:
      feats = featurizer.featurize([examples[i] for i in ids])
      q = model.embed_questions({key: tf.constant(v) for key, v in feats.items()
                                 if key.startswith("query/")})
      rows = model.retrieve(q, k)[1].numpy()
    for i, row in zip(ids, rows):
      bodies = dict(zip(row.tolist(), model.index.texts(row)[1]))
      strings = []
      for pattern in examples[i].answers:
        compiled = metrics.compile_answer_pattern(clean_text(pattern, "answer pattern",
                                                             examples[i].qid))
        if compiled is None:
          logging.warning("Example %r: answer pattern %r does not compile; ignored.",
                          examples[i].qid, pattern)
          continue
        for r in row:
          for m in compiled.finditer(bodies[r]):
            text = m.group(0).strip()
            if text and text not in strings:
              strings.append(text)
          if len(strings) >= max_strings:
            break
      out[i] = strings[:max_strings]
      found_any += bool(strings)
  logging.info("Regex answers: %d of %d questions matched a string in their top %d blocks.",
               found_any, len(regex_ids), k)
  return out


def gold_row_features(examples: Sequence[OpenQAExample], index: FrozenIndex, corpus_dir: str,
                      max_blocks: int = MAX_GOLD_BLOCKS) -> np.ndarray:
  """gold_rows int32 [B, max_blocks]: index rows of each example's gold document (`doc_id`),
  in corpus order, -1 padded (all -1 without a doc_id, or one the corpus does not have).

  The `gold` reader positive picks the first of them that bears an answer.
  """
  from realm_tf.data.corpus import doc_blocks  # pylint: disable=g-import-not-at-top
  blocks_of = doc_blocks(corpus_dir, [e.doc_id for e in examples])
  out = np.full([len(examples), max_blocks], -1, np.int32)
  found = unknown = 0
  for i, e in enumerate(examples):
    if not e.doc_id:
      continue
    rows = index.rows_of(sorted(blocks_of.get(e.doc_id, ())))
    rows = sorted(int(r) for r in rows if r >= 0)[:max_blocks]
    if not rows:
      unknown += 1
      continue
    out[i, :len(rows)] = rows
    found += 1
  logging.info("Gold documents: %d of %d questions have one in the index (%d name a doc_id the "
               "corpus or index lacks); the others fall back to the beam.", found,
               len(examples), unknown)
  return out


def make_dataset_fn(features: Dict[str, np.ndarray], batch_size: int, seed: int = 0):
  """`make_dataset(position, shard)` for the Trainer: an endless, per-epoch shuffled stream of
  batches from example position `position` on, each element carrying `data_position` (exact
  resume). With several input pipelines (one per worker), the stream is cut into runs of one
  pipeline's batch and pipeline `shard.index` reads the runs equal to it modulo `shard.count`:
  every host holds the (few) examples and reads its own share, and each replica gets the
  examples it would get from one host's pipeline."""
  n = len(features["question_length"])
  if n == 0:
    raise ValueError("No training examples.")

  def order(epoch):
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int64)

  def make_dataset(position: int, shard=None) -> tf.data.Dataset:
    size = shard.batch_size if shard is not None else batch_size
    count, index = (shard.count, shard.index) if shard is not None else (1, 0)

    def gen():
      p = int(position)
      while True:
        epoch, offset = divmod(p, n)
        perm = order(epoch)
        for i in perm[offset:]:
          p += 1
          if count == 1 or (p - 1) // size % count == index:
            yield i, p
    idx = tf.data.Dataset.from_generator(
        gen, output_signature=(tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int64)))
    tensors = {k: tf.constant(v) for k, v in features.items()}

    def lookup(i, p):
      ex = {k: tf.gather(v, i) for k, v in tensors.items()}
      ex["data_position"] = p
      return ex
    return idx.map(lookup).batch(size, drop_remainder=True).prefetch(2)
  return make_dataset
