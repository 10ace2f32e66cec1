"""Retrieval run files in the formats open-QA and IR tools read: DPR retriever results, TREC runs.

Both are written as evaluation streams, one question at a time, to a temporary file that is
renamed into place only when the whole evaluation succeeded (`realm_tf.io.atomic`): memory holds
one question's list, never the run.

**DPR retriever results** (the input of DPR's and FiD's readers, and of Pyserini's
`evaluate_dpr_retrieval`): one JSON list, one object per question, in question order:

    [{"question": "...", "answers": ["..."],
      "ctxs": [{"id": "...", "title": "...", "text": "...", "score": 12.5,
                "has_answer": true}, ...]}, ...]

`ctxs` are the retrieved blocks, best first; `text` is the block's body, `title` its title,
`score` the retrieval score, `has_answer` whether an answer string occurs in `text` (DPR's rule,
`openqa.metrics.has_answer`). `id` is the block's context id (`data.doc_ids`): the corpus
document id when the document is one block (e.g. a DPR Wikipedia passage), else
`<doc_id>#<part>`.

**TREC runs** (trec_eval, pytrec_eval, Pyserini, BEIR): one line per retrieved *document*,

    <qid> Q0 <docid> <rank> <score> <tag>

whitespace-separated, ranks from 1. docid is the corpus document id; when several blocks of one
document were retrieved, the document appears once, with its best block's score (trec_eval
refuses a docid twice in a query). Lines are in trec_eval's own evaluation order: score
descending, ties by docid descending (trec_eval ignores the rank column and sorts so), so the
rank column is the rank trec_eval scores. Scores are float32 written with 9 significant digits,
which reads back as the same float32: ties in the file are ties in the retrieval. A field with
white space or `%` in it (SQuAD's `<title>#<paragraph>` ids have spaces) has those characters
percent-encoded (`Super Bowl 50#0` → `Super%20Bowl%2050#0`), which `trec_field` does for qrels
too.
"""
import json
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from realm_tf.io import atomic
from realm_tf.io import paths

_ESCAPE = re.compile(r"[\s%]")


class RunFileError(ValueError):
  """A run file that does not parse (the message names the file and line)."""


def trec_field(text: str) -> str:
  """`text` as one TREC field: white space and `%` percent-encoded (UTF-8), nothing else."""
  if not text:
    raise ValueError("A TREC run field (query id, document id, tag) cannot be empty.")
  return _ESCAPE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8")), text)


def trec_score(score) -> str:
  """A retrieval score as written in a TREC run: float32, 9 significant digits."""
  return f"{float(np.float32(score)):.9g}"


def trec_ranking(doc_ids: Sequence[str], scores: Sequence[float]) -> List[Tuple[str, float]]:
  """(docid field, score as written) of each document, best block kept, in trec_eval's order.

  `doc_ids` / `scores` are one question's retrieved blocks, best first. A document's first
  (best) block is kept; the list is sorted by the written score descending, ties by docid
  descending, which is how trec_eval orders a query's documents before it scores them.
  """
  best: Dict[str, float] = {}
  for doc, score in zip(doc_ids, scores):
    field = trec_field(doc)
    if field not in best:
      best[field] = float(trec_score(score))
  return sorted(best.items(), key=lambda item: (item[1], item[0]), reverse=True)


class _Stream:
  """An atomically published text file, opened on enter, published on a clean exit."""

  def __init__(self, path: str):
    self.path = path
    self._context = None
    self._file = None

  def __enter__(self):
    tf.io.gfile.makedirs(os.path.dirname(paths.absolute(self.path)))
    self._context = atomic.atomic_open(self.path, "wb")
    self._file = self._context.__enter__()
    return self

  def __exit__(self, *exc):
    if exc[0] is None:
      self._finish()
    return self._context.__exit__(*exc)

  def _write(self, text: str) -> None:
    # backslashreplace: a lone surrogate in a question or answer stays valid UTF-8.
    self._file.write(text.encode("utf-8", "backslashreplace"))

  def _finish(self) -> None:
    pass


class DprResultsWriter(_Stream):
  """Streams DPR's retriever-results JSON (module docstring): `add` one question at a time.

    with DprResultsWriter(path) as out:
      out.add(question, answers, [dpr_context(...), ...])
  """

  def __init__(self, path: str):
    super().__init__(path)
    self.num_questions = 0

  def add(self, question: str, answers: Sequence[str], ctxs: Sequence[Dict]) -> None:
    """Appends one question's entry; `ctxs` best first (`dpr_context` builds one)."""
    item = json.dumps({"question": question, "answers": list(answers), "ctxs": list(ctxs)},
                      ensure_ascii=False)
    self._write(("[\n" if self.num_questions == 0 else ",\n") + item)
    self.num_questions += 1

  def _finish(self) -> None:
    self._write("[]\n" if self.num_questions == 0 else "\n]\n")


def dpr_context(context_id: str, title: str, text: str, score: float, has_answer: bool) -> Dict:
  """One entry of a question's `ctxs` list."""
  return {"id": context_id, "title": title, "text": text, "score": float(score),
          "has_answer": bool(has_answer)}


class TrecRunWriter(_Stream):
  """Streams a TREC run (module docstring): `add` one question's ranked blocks at a time.

    with TrecRunWriter(path, tag="my_run") as out:
      ranking = out.add(qid, doc_ids_of_blocks, scores_of_blocks)
  """

  def __init__(self, path: str, tag: str):
    super().__init__(path)
    self.tag = trec_field(tag)
    self.num_lines = 0
    self._qids = set()

  def add(self, qid: str, doc_ids: Sequence[str], scores: Sequence[float]
          ) -> List[Tuple[str, float]]:
    """Writes one question's documents; returns them as written (`trec_ranking`). A question
    with nothing retrieved writes no line (trec_eval then leaves it out)."""
    field = trec_field(qid)
    if field in self._qids:
      raise ValueError(f"Query id {qid!r} occurs twice; TREC runs need unique query ids.")
    self._qids.add(field)
    ranking = trec_ranking(doc_ids, scores)
    self._write("".join(f"{field} Q0 {doc} {rank} {trec_score(score)} {self.tag}\n"
                        for rank, (doc, score) in enumerate(ranking, 1)))
    self.num_lines += len(ranking)
    return ranking


def read_trec_run(path: str) -> Dict[str, Dict[str, float]]:
  """{qid: {docid: score}} of a TREC run file (the shape pytrec_eval takes).

  Raises RunFileError naming the line for a line without 6 fields, a non-Q0 second field, a
  score that is not a number, or a docid twice in one query.
  """
  run: Dict[str, Dict[str, float]] = {}
  with tf.io.gfile.GFile(path, "r") as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      fields = line.split()
      if len(fields) != 6 or fields[1] != "Q0":
        raise RunFileError(f"{path}:{number}: expected `qid Q0 docid rank score tag`, got "
                           f"{line.strip()[:80]!r}.")
      try:
        score = float(fields[4])
      except ValueError:
        raise RunFileError(f"{path}:{number}: score {fields[4]!r} is not a number.") from None
      docs = run.setdefault(fields[0], {})
      if fields[2] in docs:
        raise RunFileError(f"{path}:{number}: document {fields[2]!r} occurs twice in query "
                           f"{fields[0]!r}.")
      docs[fields[2]] = score
  return run


def read_dpr_results(path: str) -> List[Dict]:
  """The question entries of a DPR retriever-results JSON file (RunFileError if not one)."""
  with tf.io.gfile.GFile(path, "r") as f:
    try:
      data = json.load(f)
    except json.JSONDecodeError as e:
      raise RunFileError(f"{path}: not JSON ({e}).") from None
  if not isinstance(data, list) or not all(
      isinstance(x, dict) and isinstance(x.get("ctxs"), list) for x in data):
    raise RunFileError(f"{path}: expected a JSON list of {{question, answers, ctxs}} objects.")
  return data


def run_tag(prefix: str, tag: Optional[str] = None) -> str:
  """A TREC run's tag: `tag`, or the output prefix's file name (e.g. `nq_open_orqa-test-bm25`)."""
  return trec_field(tag or os.path.basename(prefix.rstrip("/")) or "realm_tf")
