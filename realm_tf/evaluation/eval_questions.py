"""Your own held-out questions for pre-training's question recall, and their gold blocks.

`python -m realm_tf.launch.pretrain --eval_questions=jsonl:my_questions.jsonl` measures, at every
held-out evaluation, the recall@5 and @20 of these questions over the live index (and BM25's
beside it), as the main job does with SQuAD-open dev questions on the shipped corpus. The file is
one of fine-tuning's question files (`realm_tf.openqa.datasets`): `jsonl:<path>` (one JSON object
a line, "question", "answers", optional "doc_id"), `dpr_qa:<path>` (DPR's `*.qa.csv`) or
`beir:<dir>[:<split>]` (BEIR queries; split `test` unless named). A question's gold blocks are

* the blocks of its "doc_id" document (the `id` of a JSONL document; SQuAD's
  `<title>#<paragraph>`), when it names one: the passage the question was written from; or of
  its relevant documents (BEIR's qrels, score > 0), when it has them;
* else every block that holds one of its answers, wordpiece for wordpiece (the uncased
  tokenizer's word boundaries, so "Black Sea" matches "the black sea." but not "blacks seas").

Both are found in one pass over the corpus shards, vectorized per batch of blocks (no Python
object per block or token): doc ids by a set test on each batch's ids, answers by a rolling hash
of every wordpiece n-gram of the answers' lengths, checked exactly where the hash matches.
"""
from typing import Dict, List, Sequence, Set, Tuple

import numpy as np
from absl import logging

from realm_tf.data import corpus as corpus_lib
from realm_tf.openqa import datasets
from realm_tf.modeling.openqa_features import OpenQAExample

_HASH_BASE = np.uint64(1_000_003)
_BATCH = 4096


def load(spec: str, corpus_dir: str, limit: int = 0, seed: int = 0
         ) -> Tuple[List[OpenQAExample], List[Set[int]]]:
  """(questions, gold block ids of each) for `spec`, a question file (`jsonl:<path>`,
  `dpr_qa:<path>`, `beir:<dir>[:<split>]`), over `corpus_dir`.

  With `limit` > 0 and more questions than that, a fixed random sample of `limit` (by `seed`),
  kept in file order. Raises DatasetError for a spec that is not a question file, a missing file
  or one without a usable line.
  """
  if datasets.check_dataset(spec) not in datasets.FILE_PREFIXES:
    raise datasets.DatasetError(
        f"--eval_questions={spec!r}: give {', '.join(datasets.FILE_CHOICES)}: questions about "
        "your documents, with \"answers\" and optionally \"doc_id\", or BEIR's qrels.")
  questions = datasets.load_examples(spec, "test")  # a file is its own split; BEIR's default
  if limit and len(questions) > limit:
    pick = np.random.RandomState(seed).choice(len(questions), size=limit, replace=False)
    questions = [questions[i] for i in sorted(pick)]
  gold = gold_blocks(questions, corpus_dir)
  missing = sum(not g for g in gold)
  by_doc = sum(bool(q.doc_id or q.relevant_doc_ids) for q in questions)
  logging.info("Held-out questions: %d from %s (%d by their doc_id or qrels, %d by their "
               "answers); %d have no gold block in %s and count as misses.", len(questions), spec,
               by_doc, len(questions) - by_doc, missing, corpus_dir)
  return questions, gold


def gold_blocks(questions: Sequence[OpenQAExample], corpus_dir: str) -> List[Set[int]]:
  """Each question's gold block ids in `corpus_dir`: its doc_id's (or relevant documents') blocks,
  or else the blocks that hold one of its (non-regex) answers; one streaming pass over the
  corpus."""
  from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
  gold: List[Set[int]] = [set() for _ in questions]
  by_doc: Dict[bytes, List[int]] = {}
  answer_questions = []
  for i, q in enumerate(questions):
    if q.doc_id or q.relevant_doc_ids:
      for doc_id in {q.doc_id, *q.relevant_doc_ids} - {None}:
        by_doc.setdefault(doc_id.encode("utf-8"), []).append(i)
    elif not q.is_regex:
      answer_questions.append(i)
  matcher = _AnswerMatcher(
      [(i, a) for i in answer_questions for a in questions[i].answers], RealmTokenizer())
  wanted_docs = np.array(list(by_doc), dtype=object)
  for batch in corpus_lib.read_blocks(corpus_dir).ragged_batch(_BATCH):
    block_ids = batch["block_id"].numpy()
    if len(wanted_docs):
      doc_ids = batch["doc_id"].numpy()
      for row in np.flatnonzero(np.isin(doc_ids, wanted_docs)):
        for i in by_doc[doc_ids[row]]:
          gold[i].add(int(block_ids[row]))
    for field in ("title_ids", "body_ids"):
      ids = batch[field]
      for row, i in matcher.matches(ids.flat_values.numpy(), ids.row_splits.numpy()):
        gold[i].add(int(block_ids[row]))
  return gold


class _AnswerMatcher:
  """Finds answers' wordpiece sequences in batches of ragged wordpiece rows.

  Each answer is hashed (a polynomial hash over its ids, mod 2^64); a batch's flat ids are hashed
  at every position for each answer length at once (numpy), and positions whose hash is an
  answer's are checked exactly and kept when the n-gram lies inside one row.
  """

  def __init__(self, answers: Sequence[Tuple[int, str]], tokenizer):
    self.by_length: Dict[int, Dict[int, List[Tuple[int, np.ndarray]]]] = {}
    if not answers:
      return
    pieces = tokenizer.tokenize([a for _, a in answers]).to_list()
    for (question, _), ids in zip(answers, pieces):
      if not ids:
        continue
      ids = np.asarray(ids, np.int64)
      key = int(_hash_windows(ids, len(ids))[0])
      self.by_length.setdefault(len(ids), {}).setdefault(key, []).append((question, ids))

  def matches(self, flat: np.ndarray, splits: np.ndarray) -> List[Tuple[int, int]]:
    """(row, question) for every answer found in the rows `flat`/`splits` describe."""
    out = set()
    flat = flat.astype(np.int64)
    for length, table in self.by_length.items():
      if flat.size < length:
        continue
      hashes = _hash_windows(flat, length)
      keys = np.fromiter(table, dtype=np.uint64, count=len(table))
      for pos in np.flatnonzero(np.isin(hashes, keys)):
        row = int(np.searchsorted(splits, pos, side="right")) - 1
        if pos + length > splits[row + 1]:
          continue  # the n-gram runs into the next row
        for question, ids in table[int(hashes[pos])]:
          if np.array_equal(flat[pos:pos + length], ids):
            out.add((row, question))
    return sorted(out)


def _hash_windows(ids: np.ndarray, length: int) -> np.ndarray:
  """The polynomial hash (mod 2^64) of every window of `length` ids: uint64 [len(ids)-length+1]."""
  n = ids.size - length + 1
  values = ids.astype(np.uint64)
  out = np.zeros(n, np.uint64)
  power = np.uint64(1)
  with np.errstate(over="ignore"):
    for j in range(length):
      out += values[j:j + n] * power
      power *= _HASH_BASE
  return out
